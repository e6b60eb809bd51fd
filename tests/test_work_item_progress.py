"""Progress of one work item counts input only as far as answered payloads reach."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conveyor.pipeline.work_item import ItemProgress, PipelineConfig, WorkItem, process_work_item
from conveyor.runtimes.python_handler import PythonHandlerRuntime
from conveyor.storage import storage_for
from tests.numbered_lines import LINE, numbered_lines

MiB = 1 << 20
SLOW_IDENTITY = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep(0.3)  # longer than the progress interval, so every answer is reported
    return body
"""


def test_progress_does_not_run_ahead_of_the_answers(tmp_path: Path) -> None:
    (tmp_path / "model" / "code").mkdir(parents=True)
    (tmp_path / "model" / "code" / "inference.py").write_text(textwrap.dedent(SLOW_IDENTITY))
    data = b"".join(numbered_lines(5 * MiB))
    (tmp_path / "input.csv").write_bytes(data)
    item = WorkItem(item_id=1, input_uri=str(tmp_path / "input.csv"), output_uri=str(tmp_path / "input.csv.out"), size=len(data))
    config = PipelineConfig(split_type="Line", content_type="application/octet-stream", max_payload_bytes=MiB // 2, max_concurrent=4)
    reports: list[tuple[int, int]] = []

    def on_progress(progress: ItemProgress) -> None:
        reports.append((progress.records, progress.bytes_in))

    runtime = PythonHandlerRuntime(str(tmp_path / "model"), {})
    runtime.start()
    try:
        final = process_work_item(item, config, runtime, storage_for, on_progress)
    finally:
        runtime.close()

    assert (tmp_path / "input.csv.out").read_bytes() == data
    assert (final.bytes_in, final.records) == (len(data), data.count(b"\n"))
    during = reports[:-1]  # the last report is the finished item's
    assert len(during) >= 3
    line = len(LINE % 0)
    for records, bytes_in in during:
        # The answered records, plus at most the rest of the chunk that completed their last payload;
        # not the payloads in flight (4 × 512 KiB) nor what was read for them.
        assert records * line <= bytes_in < records * line + MiB + line
    assert during[0][1] < len(data)  # the read position of the first answered payload, not the end
    assert [bytes_in for _, bytes_in in during] == sorted(bytes_in for _, bytes_in in during)
