"""`conveyor preview`: what the model receives and what the job writes, for the first records.

It runs the real pipeline (the same `process_work_item` a job runs) in this process on the
first N records of the first input object. Nothing is written to the output path, so `--output`
may be left out, and a failed payload is not retried unless `--retries` asks for it: a preview
is for seeing a mistake at once.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

from conveyor.cli.job_request import UsageError, add_job_arguments, job_and_model
from conveyor.engine.backend import JobStartFailed
from conveyor.engine.job import instance_config, plan_work_items
from conveyor.errors import ConveyorError
from conveyor.pipeline.work_item import Preview, PreviewRow, WorkItem, WorkItemFailed
from conveyor.runtimes.base import RuntimeStartError
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings
from conveyor.storage.inputs import InputError
from conveyor.storage.local import file_uri

DESCRIPTION = (
    "Run the job's real pipeline in this process on the first records of the first input object, and show "
    "each record's filtered model input, the model's output, and the joined, filtered output line. Nothing "
    "is written; --output may be left out, and failed payloads are not retried unless --retries says so."
)

EXAMPLES = """example:
  conveyor preview --model ./model --input data.csv --content-type text/csv --split-type Line \\
      --accept text/csv --assemble-with Line --input-filter '$[1:]' --join-source Input --output-filter '$[0,-1]' --records 3
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "preview",
        help="show what the model receives and what the job writes, for the first records",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(parser)
    parser.add_argument("--records", type=int, default=5, metavar="N", help="how many records to show (default 5)")
    parser.set_defaults(handler=run)


def _shown(data: bytes, limit: int = 120) -> str:
    text = data.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run(args: argparse.Namespace) -> int:
    console = Console(soft_wrap=True)
    errors = Console(stderr=True, soft_wrap=True)
    if args.records < 1:
        errors.print("conveyor preview: --records must be at least 1", markup=False)
        return 2
    settings = Settings.from_environ(s3_endpoint_url=args.s3_endpoint)
    if args.retries is None:
        args.retries = 0
    with tempfile.TemporaryDirectory(prefix="conveyor-preview-") as scratch:
        if args.output is None:
            args.output = scratch
        try:
            job, model = job_and_model(args)
            first = plan_work_items(job, settings)[0]
        except (UsageError, ConveyorError, InputError) as exc:
            errors.print(f"conveyor preview: {exc}", markup=False, highlight=False)
            return 2
        return _show(job, model, first, settings, scratch, args.records, console, errors)


def _show(
    job: TransformJobSpec, model: ModelSpec, first: WorkItem, settings: Settings, scratch: str, records: int, console: Console, errors: Console
) -> int:
    """Run the first records through the pipeline and print them as a table."""
    rows: list[PreviewRow] = []
    item = replace(first, output_uri=file_uri(str(Path(scratch) / "preview.out")))
    try:
        instance = instance_config(job, model, settings, started_at=datetime.now(timezone.utc)).start()
    except (RuntimeStartError, JobStartFailed, ConveyorError) as exc:
        errors.print(f"conveyor preview: the model did not start: {exc}", markup=False, highlight=False)
        return 1
    try:
        instance.process(item, lambda progress: None, preview=Preview(records, rows.append))
    except WorkItemFailed as exc:
        errors.print(f"conveyor preview: {exc}", markup=False, highlight=False)
        return 1
    finally:
        instance.close()
    table = Table(title=f"{first.input_uri}: first {len(rows)} record{'' if len(rows) == 1 else 's'} ({instance.resolved.log_line()})", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("model input")
    table.add_column("model output")
    table.add_column("output line")
    for row in rows:
        table.add_row(str(row.record_number), _shown(row.model_input), _shown(row.model_output), _shown(row.output))
    console.print(table, markup=False, highlight=False)
    return 0
