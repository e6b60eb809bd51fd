"""Many small objects: the short path for an object sent whole, the reports an instance sends in
groups, with a crash still charged to the object that caused it, and how much work an instance
is given at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.engine.instance_pool import QUEUED_BYTES, QUEUED_ITEMS, QUEUED_SECONDS, PooledInstance
from conveyor.engine.job import plan_work_items, run_job
from conveyor.engine.ledger import MemoryLedger
from conveyor.pipeline.work_item import ItemProgress, PipelineConfig, WorkItem, WorkItemFailed, process_work_item
from conveyor.runtimes.python_handler import PythonHandlerRuntime
from conveyor.settings import Settings
from conveyor.storage import storage_for
from tests.models import write_model
from tests.test_job_lifecycle import DIE_ON_MARKER, Recorder, job_and_model

IDENTITY = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body
"""


@pytest.fixture
def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    started = PythonHandlerRuntime(str(write_model(tmp_path, IDENTITY)), {})
    started.start()
    yield started
    started.close()


def transform(runtime: PythonHandlerRuntime, tmp_path: Path, data: bytes, listed_size: int | None = None, **config: object) -> ItemProgress:
    (tmp_path / "x.csv").write_bytes(data)
    item = WorkItem(1, f"file://{tmp_path}/x.csv", f"file://{tmp_path}/out/x.csv.out", len(data) if listed_size is None else listed_size)
    return process_work_item(item, PipelineConfig(split_type="None", content_type="text/csv", **config), runtime, storage_for, lambda _: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("assemble_with", "data", "written"), [("None", b"1,2", b"1,2"), ("Line", b"1,2", b"1,2\n"), ("Line", b"1,2\n", b"1,2\n")])
def test_a_whole_object_is_sent_as_one_payload(runtime: PythonHandlerRuntime, tmp_path: Path, assemble_with: str, data: bytes, written: bytes) -> None:
    progress = transform(runtime, tmp_path, data, assemble_with=assemble_with)
    assert (tmp_path / "out" / "x.csv.out").read_bytes() == written
    assert (progress.records, progress.payloads, progress.bytes_in, progress.bytes_out, progress.done) == (1, 1, len(data), len(written), True)


def test_an_object_emptied_since_it_was_listed_gives_an_empty_output(runtime: PythonHandlerRuntime, tmp_path: Path) -> None:
    progress = transform(runtime, tmp_path, b"", listed_size=3)
    assert (tmp_path / "out" / "x.csv.out").read_bytes() == b""
    assert (progress.records, progress.payloads, progress.bytes_in) == (0, 0, 0)


def test_an_object_grown_past_the_payload_limit_since_it_was_listed_fails_whole(runtime: PythonHandlerRuntime, tmp_path: Path) -> None:
    with pytest.raises(WorkItemFailed) as failed:
        transform(runtime, tmp_path, b"x" * 2048, listed_size=10, max_payload_bytes=1024)
    assert str(failed.value) == (
        f"record 1 of file://{tmp_path}/x.csv (the whole object, as SplitType is None) is at least 2048 bytes, more than "
        "MaxPayloadInMB allows (1024 bytes); raise MaxPayloadInMB (0 sends the object whatever its size) or set a SplitType"
    )
    assert not (tmp_path / "out").exists()  # nothing written, no folder left behind


def test_a_crash_among_small_objects_is_charged_to_the_object_that_caused_it(tmp_path: Path) -> None:
    """The instance holds the reports of the objects it finished before the one that kills it;
    those objects go back untouched (their outputs are written again), and only the culprit is
    charged, three times, and fails."""
    handler = DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=99)
    files = {f"o-{number:02d}.csv": ("die" if number == 30 else str(number)) for number in range(40)}
    job, model = job_and_model(
        tmp_path, handler, files=files,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}}, "ContentType": "text/csv"},
    )
    recorder = Recorder()
    settings = Settings(home=tmp_path / "home", retry_backoff_seconds=0.01, capacity=1)
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder)
    culprit = f"file://{tmp_path}/in/o-30.csv"
    assert (outcome.status, outcome.objects_done, outcome.objects_failed) == ("Failed", 39, 1)
    charged = [line for line in recorder.lines if "exited with code 7" in line]
    assert charged == [f"Instance 1 exited with code 7 while transforming {culprit}"] * 3
    assert recorder.failed == [f"{culprit}: Unable to get response from the model: its instance exited with code 7 3 times"]
    assert sorted(recorder.done) == sorted(name for name in files if name != "o-30.csv")
    for name, text in files.items():
        if name != "o-30.csv":
            assert (tmp_path / "out" / f"{name}.out").read_text() == f"<{text}>\n"


PID_AFTER_A_WHILE = """
import os, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep(0.25)
    return str(os.getpid()).encode()
"""


def test_slow_objects_are_spread_over_the_instances(tmp_path: Path) -> None:
    """An instance holds about QUEUED_SECONDS of work: the first one ready does not take every
    object of a slow model, and the second transforms its share."""
    job, model = job_and_model(
        tmp_path, PID_AFTER_A_WHILE, files={f"{n:02d}.csv": "1\n" for n in range(12)},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2},
    )
    settings = Settings(home=tmp_path / "home", retry_backoff_seconds=0.01, capacity=2)
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=Recorder())
    assert (outcome.status, outcome.objects_done) == ("Completed", 12)
    by_instance: dict[str, int] = {}
    for output in (tmp_path / "out").iterdir():
        pid = output.read_text().strip()
        by_instance[pid] = by_instance.get(pid, 0) + 1
    assert sorted(by_instance.values()) and min(by_instance.values()) >= 3 and len(by_instance) == 2, by_instance


@pytest.mark.parametrize(
    ("item_seconds", "at_once", "held"),
    [
        (None, 1, 2),  # no item ended yet: enough to cover one round trip
        (None, 4, 8),
        (0.00001, 1, QUEUED_ITEMS),  # fast items: as many as allowed
        (0.001, 1, int(QUEUED_SECONDS / 0.001)),
        (0.5, 1, 2),  # slow items: never fewer than 2 × at_once
        (0.01, 4, int(QUEUED_SECONDS * 4 / 0.01)),
    ],
)
def test_an_instance_holds_about_queued_seconds_of_work(item_seconds: float | None, at_once: int, held: int) -> None:
    instance = PooledInstance(0, at_once=at_once, item_seconds=item_seconds)
    while instance.wants_more():
        instance.hold(WorkItem(len(instance.items), "file:///in", "file:///out", 10))
    assert len(instance.items) == held


def test_large_objects_are_held_up_to_queued_bytes() -> None:
    instance = PooledInstance(0, item_seconds=0.00001)
    while instance.wants_more():
        instance.hold(WorkItem(len(instance.items), "file:///in", "file:///out", QUEUED_BYTES // 4))
    assert len(instance.items) == 4


def test_the_moving_average_follows_the_items() -> None:
    instance = PooledInstance(0)
    instance.timed(1.0)
    assert instance.item_seconds == 1.0
    for _ in range(100):
        instance.timed(0.001)
    assert instance.item_seconds is not None and instance.item_seconds < 0.002


def test_the_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    """benchmarks/small_objects.py end to end, so that it cannot rot; its figures are in
    docs/benchmarks.md, measured at the issue's size."""
    benchmark = Path(__file__).resolve().parent.parent / "benchmarks" / "small_objects.py"
    result = subprocess.run(
        [sys.executable, str(benchmark), "--objects", "200", "--rounds", "1", "--server-ledger", "--work-ms", "0.1", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for run in ("hand loop", "conveyor-1", "conveyor-2", "server-1", "target >= 1.6", "server-1 / conveyor-1", "the command's own process", "cores busy on average", "ceiling:"):
        assert run in result.stdout
