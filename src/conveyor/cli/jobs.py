"""`conveyor jobs list|describe|stop|wait`: transform jobs on a Conveyor server."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from conveyor.cli import client
from conveyor.cli.client import Connection
from conveyor.engine.figures import rate_text, records_text
from conveyor.service import JOB_STATUSES as STATUSES
from conveyor.service import TERMINAL_STATUSES
from conveyor.service.objects_text import objects_text

SORT_KEYS = ("CreationTime", "Name", "Status")
SORT_ORDERS = ("Descending", "Ascending")

EXAMPLES = """examples:
  conveyor jobs list --status InProgress
  conveyor jobs describe my-job
  conveyor jobs wait my-job            # a progress bar until the job ends; exit 1 if it failed
  conveyor jobs stop my-job --wait

The server is $CONVEYOR_ENDPOINT or http://127.0.0.1:8765 unless --endpoint says otherwise.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "jobs",
        help="list, describe, wait for and stop transform jobs on a server",
        description="Transform jobs on a Conveyor server (`conveyor server`), as SageMaker's API reports them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = client.add_action(actions, "jobs", "list", "list transform jobs, newest first", _list, "conveyor jobs list --status Failed --name-contains nightly")
    listing.add_argument("--status", type=client.case_insensitive(STATUSES), metavar="STATUS", help=f"only jobs in this status ({', '.join(STATUSES)})")
    listing.add_argument("--name-contains", metavar="TEXT", help="only jobs whose name contains TEXT")
    listing.add_argument("--sort-by", type=client.case_insensitive(SORT_KEYS), default="CreationTime", metavar="KEY", help="CreationTime (default), Name or Status")
    listing.add_argument("--sort-order", type=client.case_insensitive(SORT_ORDERS), default="Descending", metavar="ORDER", help="Descending (default) or Ascending")
    listing.add_argument("--max", type=client.positive_int, default=50, metavar="N", help="show at most N jobs (default 50)")

    describe = client.add_action(actions, "jobs", "describe", "show one job: its definition, status and progress", _describe, "conveyor jobs describe my-job --json")
    describe.add_argument("name", metavar="NAME", help="TransformJobName")
    describe.add_argument("--json", action="store_true", help="print DescribeTransformJob's response as JSON instead")

    stop = client.add_action(actions, "jobs", "stop", "stop a running job (objects already written are kept)", _stop, "conveyor jobs stop my-job --wait")
    stop.add_argument("name", metavar="NAME", help="TransformJobName")
    stop.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    stop.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS)

    wait = client.add_action(actions, "jobs", "wait", "show a job's progress until it ends; exit 1 if it failed", _wait, "conveyor jobs wait my-job --timeout 3600")
    wait.add_argument("name", metavar="NAME", help="TransformJobName")
    wait.add_argument("--timeout", type=float, metavar="SECONDS", help="give up (exit 1) after this long; the job keeps running")
    wait.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="seconds between polls (default 1)")
    wait.add_argument("--quiet", action="store_true", help="no progress bar; print only the outcome")


# list


def _list(connection: Connection, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"SortBy": args.sort_by, "SortOrder": args.sort_order}
    if args.status:
        request["StatusEquals"] = args.status
    if args.name_contains:
        request["NameContains"] = args.name_contains
    jobs, more = client.first_items(connection.sagemaker.list_transform_jobs, "TransformJobSummaries", args.max, **request)
    if not jobs:
        print("No transform jobs" + (" match." if args.status or args.name_contains else "."), file=sys.stderr)
        return 0
    rows = [
        (
            job["TransformJobName"],
            job["TransformJobStatus"],
            client.local_time(job["CreationTime"]),
            client.duration(client.since(job["CreationTime"], job.get("TransformEndTime"))),
            _shorten(job.get("FailureReason") or "", 60),
        )
        for job in jobs
    ]
    client.print_table(("NAME", "STATUS", "CREATED", "DURATION", "FAILURE REASON"), rows)
    if more:
        print(f"(more jobs than --max {args.max}; raise it to see them)", file=sys.stderr)
    return 0


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# describe


def _describe(connection: Connection, args: argparse.Namespace) -> int:
    job = connection.sagemaker.describe_transform_job(TransformJobName=args.name)
    if args.json:
        print(client.json_text(job))
        return 0
    progress = connection.get(client.job_route(args.name, "progress"))
    for label, value in _job_fields(job, progress):
        print(f"{label + ':':<16}{value}")
    return 0


def _job_fields(job: dict[str, Any], progress: dict[str, Any]) -> list[tuple[str, str]]:
    source = job.get("TransformInput", {})
    data = source.get("DataSource", {}).get("S3DataSource", {})
    output = job.get("TransformOutput", {})
    resources = job.get("TransformResources", {})
    fields = [
        ("Name", job["TransformJobName"]),
        ("Status", job["TransformJobStatus"]),
    ]
    if job.get("FailureReason"):
        fields.append(("FailureReason", job["FailureReason"]))
    fields += [
        ("Progress", progress_summary(progress)),
        ("Model", job.get("ModelName", "-")),
        ("Input", f"{data.get('S3Uri', '-')} ({_details(data.get('S3DataType'), source.get('ContentType'), _named('split', source.get('SplitType')), _named('compression', source.get('CompressionType')))})"),
        ("Output", f"{output.get('S3OutputPath', '-')} ({_details(_named('accept', output.get('Accept')), _named('assemble', output.get('AssembleWith')))})"),
        ("Batching", _details(job.get("BatchStrategy"), _named("MaxPayloadInMB", job.get("MaxPayloadInMB"), "="), _named("MaxConcurrentTransforms", job.get("MaxConcurrentTransforms"), "="))),
        ("Instances", f"{resources.get('InstanceCount', 1)} × {resources.get('InstanceType', '-')}"),
    ]
    processing = job.get("DataProcessing") or {}
    if processing:
        fields.append(("DataProcessing", _details(*(f"{key}={value}" for key, value in processing.items()))))
    if job.get("Environment"):
        fields.append(("Environment", " ".join(f"{key}={value}" for key, value in job["Environment"].items())))
    fields += [
        ("Created", client.local_time(job.get("CreationTime"))),
        ("Started", client.local_time(job.get("TransformStartTime"))),
        ("Ended", client.local_time(job.get("TransformEndTime"))),
        ("Arn", job["TransformJobArn"]),
    ]
    return fields


def _named(name: str, value: Any, separator: str = " ") -> str | None:
    return None if value is None else f"{name}{separator}{value}"


def _details(*parts: Any) -> str:
    return ", ".join(str(part) for part in parts if part) or "-"


def progress_summary(progress: dict[str, Any]) -> str:
    """`3/10 objects (1 failed), 1,234 records, 1.2 MB of 5.0 MB, 2.3 MB/s, 1,234 records/s, model busy 87%, ETA 12s`."""
    parts = [
        objects_text(progress),
        records_text(progress.get("Records") or 0),
        f"{client.size(progress.get('BytesIn') or 0)} of {client.size(progress.get('BytesTotal') or 0)}",
    ]
    if progress.get("FailedRecords"):
        parts.append(f"{records_text(progress['FailedRecords'])} failed (listed in {progress['ErrorsManifest']})")
    rate = progress.get("MegabytesPerSecond")
    if rate is not None:
        parts.append(f"{rate:,.1f} MB/s")
    if progress.get("RecordsPerSecond") is not None and progress.get("ModelBusyFraction") is not None:
        parts.append(f"{rate_text(progress['RecordsPerSecond'])} records/s, model busy {progress['ModelBusyFraction']:.0%}")
    elapsed = progress.get("ElapsedSeconds")
    if progress.get("TransformJobStatus") in TERMINAL_STATUSES:
        if elapsed is not None:
            parts.append(f"in {client.duration(elapsed)}")
    elif progress.get("EtaSeconds") is not None:
        parts.append(f"ETA {client.duration(progress['EtaSeconds'])}")
    elif elapsed is not None:
        parts.append(f"{client.duration(elapsed)} elapsed")
    return ", ".join(parts)


# stop and wait


def _stop(connection: Connection, args: argparse.Namespace) -> int:
    connection.sagemaker.stop_transform_job(TransformJobName=args.name)
    if not args.wait:
        print(f"Stopping {args.name}")
        return 0
    return wait_for_job(connection, args.name, command="jobs stop", interval=args.interval, quiet=True)


def _wait(connection: Connection, args: argparse.Namespace) -> int:
    return wait_for_job(connection, args.name, command="jobs wait", interval=args.interval, timeout=args.timeout, quiet=args.quiet)


def wait_for_job(
    connection: Connection, name: str, *, command: str, interval: float = 1.0, timeout: float | None = None, quiet: bool = False
) -> int:
    """Poll the progress route until the job ends, drawing a bar on stderr; print the outcome.

    Exit status 0 when the job completed or was stopped (as SageMaker's
    `transform-job-completed-or-stopped` waiter), 1 when it failed or `timeout` passed.
    """
    console = Console(stderr=True, soft_wrap=True)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("[cyan]{task.fields[summary]}"),
        console=console,
        disable=quiet,
    )
    connection.sagemaker.describe_transform_job(TransformJobName=name)  # an unknown job fails before any bar
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = connection.get(client.job_route(name, "progress"))
    with bar:
        task = bar.add_task(name, total=None, summary="")
        while True:
            total = progress.get("BytesTotal") or None
            bar.update(
                task,
                total=total,
                completed=total if progress["TransformJobStatus"] == "Completed" else progress.get("BytesIn") or 0,
                summary=progress_summary(progress),
            )
            if progress["TransformJobStatus"] in TERMINAL_STATUSES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                bar.stop()
                return client.fail(command, f"{name} is still {progress['TransformJobStatus']} after {timeout:g}s")
            time.sleep(interval)
            progress = connection.get(client.job_route(name, "progress"))
    job = connection.sagemaker.describe_transform_job(TransformJobName=name)
    status = job["TransformJobStatus"]
    print(f"{status} {name}: {progress_summary(progress)}")
    if status == "Failed":
        return client.fail(command, f"{name} failed: {job.get('FailureReason', 'no reason given')}")
    return 0
