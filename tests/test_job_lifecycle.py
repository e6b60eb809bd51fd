"""The one job lifecycle (`engine.job.run_job`), driven directly: real instances (worker
processes) and real handlers, some of which kill their own process on cue.

The same lifecycle runs `conveyor transform` (a `MemoryLedger`) and the server's jobs (a
`StoreLedger`); both are driven here, so the attempt policy is seen to hold for both.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest

from conveyor.engine.job import JobListener, plan_work_items, run_job
from conveyor.engine.ledger import SKIPPED_SHARD, MemoryLedger
from conveyor.engine.store_link import StoreLedger, add_planned_items
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.sagemaker import ModelSpec, TransformJobSpec, parse_model, parse_transform_job
from conveyor.settings import Settings
from conveyor.store import Store
from tests.models import BRACKET, sleepy, write_model

# Dies (os._exit) on a record holding "die", the first `times` times the marker file allows.
DIE_ON_MARKER = """
import os
from pathlib import Path

MARKS = Path({marks!r})

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    if b"die" in body:
        deaths = len(MARKS.read_text()) if MARKS.exists() else 0
        if deaths < {times}:
            with MARKS.open("a") as marks:
                marks.write("x")
            os._exit(7)
    return b"<" + body + b">"
"""


class Recorder(JobListener):
    """Keeps what the lifecycle tells its listener."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.done: list[str] = []
        self.failed: list[str] = []

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        self.done.extend(Path(item.input_uri).name for item, _ in done)

    def on_item_failed(self, item: WorkItem, reason: str) -> None:
        self.failed.append(reason)

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        self.lines.append(message)


def job_and_model(tmp_path: Path, handler: str, *, files: dict[str, str], **extra: Any) -> tuple[TransformJobSpec, ModelSpec]:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, text in files.items():
        (inputs / name).write_text(text)
    model_dir = write_model(tmp_path, handler)
    request: dict[str, Any] = {
        "TransformJobName": "lifecycle",
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{inputs}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"file://{tmp_path}/out/", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "BatchStrategy": "SingleRecord",
        **extra,
    }
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"}})
    return parse_transform_job(request), model


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", retry_backoff_seconds=0.01, capacity=2)


def test_an_instance_that_dies_mid_item_is_replaced_and_the_item_runs_again(tmp_path: Path, settings: Settings) -> None:
    handler = DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=1)
    job, model = job_and_model(tmp_path, handler, files={"a.csv": "1\ndie\n3\n", "b.csv": "4\n"})
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder)
    assert (outcome.status, outcome.objects_done, outcome.failure_reason) == ("Completed", 2, None)
    assert (tmp_path / "out" / "a.csv.out").read_text() == "<1>\n<die>\n<3>\n"
    assert (tmp_path / "out" / "b.csv.out").read_text() == "<4>\n"
    assert f"Instance 1 exited with code 7 while transforming file://{tmp_path}/in/a.csv" in recorder.lines
    assert sorted(recorder.done) == ["a.csv", "b.csv"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.csv.out", "b.csv.out"]  # the dead writer's temporary swept


def test_an_item_whose_instance_always_dies_fails_alone(tmp_path: Path, settings: Settings) -> None:
    handler = DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=99)
    job, model = job_and_model(tmp_path, handler, files={"a.csv": "die\n", "b.csv": "2\n"})
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder)
    assert outcome.status == "Failed"
    assert outcome.failure_reason == (
        f"1 of 2 input objects failed. First: file://{tmp_path}/in/a.csv: Unable to get response from the model: "
        "its instance exited with code 7 3 times"
    )
    assert len((tmp_path / "marks").read_text()) == 3
    assert not (tmp_path / "out" / "a.csv.out").exists()
    assert (tmp_path / "out" / "b.csv.out").read_text() == "<2>\n"


def test_a_hanging_handler_is_tried_exactly_once_more_than_its_retries(tmp_path: Path, settings: Settings) -> None:
    job, model = job_and_model(
        tmp_path, sleepy(3600), files={"a.csv": "1\n"},
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 2},
    )
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder)
    assert outcome.status == "Failed"
    assert "did not answer within InvocationsTimeoutInSeconds=1 in 3 attempts (InvocationsMaxRetries=2)" in (outcome.failure_reason or "")
    assert sum("took longer than InvocationsTimeoutInSeconds=1" in line for line in recorder.lines) == 3


def test_attempts_survive_every_hand_back_through_the_store(tmp_path: Path, settings: Settings) -> None:
    """The server's ledger: what a timed-out run spent is in the store, so the next claim,
    by this run or by a server that resumes the job, starts from it."""
    job, model = job_and_model(
        tmp_path, sleepy(3600), files={"a.csv": "1\n"},
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 1},
    )
    with Store(tmp_path / "state.db") as store:
        store.jobs.create(job.name, "arn", "m", {}, datetime.now(timezone.utc))
        add_planned_items(store, job.name, plan_work_items(job, settings))
        outcome = run_job(job, model, settings, ledger=StoreLedger(store, job.name, "owner-1", 60))
        [item] = store.work_items.list(job.name)
    assert outcome.status == "Failed" and "in 2 attempts (InvocationsMaxRetries=1)" in (outcome.failure_reason or "")
    assert (item.state, item.attempts) == ("Failed", 2)  # claimed twice, each run timed out; no third run
    assert item.payload_attempts == {0: 1}  # what the first run spent, kept when it was handed back


def test_data_capture_is_written_by_the_lifecycle(tmp_path: Path, settings: Settings) -> None:
    job, model = job_and_model(tmp_path, BRACKET, files={"a.csv": "1\n"}, DataCaptureConfig={"DestinationS3Uri": f"file://{tmp_path}/capture/"})
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder)
    assert outcome.status == "Completed"
    manifests = sorted(path.relative_to(tmp_path / "capture").parts[0] for path in (tmp_path / "capture").rglob("*.manifest"))
    assert manifests == ["input", "output"]
    assert any(line.startswith("Data capture manifests: ") for line in recorder.lines)


def test_data_capture_that_cannot_be_written_fails_the_job(tmp_path: Path, settings: Settings) -> None:
    blocked = tmp_path / "capture-is-a-file"
    blocked.write_text("not a folder")
    job, model = job_and_model(
        tmp_path, BRACKET, files={"a.csv": "1\n"}, DataCaptureConfig={"DestinationS3Uri": f"file://{blocked}/"}
    )
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)))
    assert outcome.status == "Failed" and outcome.objects_done == 1
    assert (outcome.failure_reason or "").startswith(f"ClientError: Could not write the data capture manifest file://{blocked}/input/")


def test_a_model_that_cannot_load_fails_the_job_with_a_client_error(tmp_path: Path, settings: Settings) -> None:
    job, model = job_and_model(tmp_path, "raise RuntimeError('no weights here')\n", files={"a.csv": "1\n"})
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)))
    assert outcome.status == "Failed"
    assert (outcome.failure_reason or "").startswith("ClientError: ") and "no weights here" in (outcome.failure_reason or "")


def test_a_stopped_job_ends_stopped_without_capture(tmp_path: Path, settings: Settings) -> None:
    job, model = job_and_model(
        tmp_path, sleepy(0.5), files={f"{n}.csv": "1\n" for n in range(6)}, DataCaptureConfig={"DestinationS3Uri": f"file://{tmp_path}/capture/"}
    )
    stop = threading.Event()

    class StopAfterFirst(JobListener):
        def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
            stop.set()

    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=StopAfterFirst(), stop=stop)
    assert outcome.status == "Stopped" and outcome.failure_reason is None
    assert 1 <= outcome.objects_done < 6
    assert not (tmp_path / "capture").exists()


def test_items_queued_behind_a_dying_one_are_handed_back_untouched(tmp_path: Path, settings: Settings) -> None:
    """Small objects are sent to an instance several at a time: when one kills its instance
    every time, only that one is charged with the deaths, and every object queued behind it
    is transformed once, by a fresh instance."""
    handler = DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=99)
    files = {f"{n:02d}.csv": ("die\n" if n == 3 else f"{n}\n") for n in range(12)}
    job, model = job_and_model(tmp_path, handler, files=files)
    recorder = Recorder()
    ledger = MemoryLedger(plan_work_items(job, settings))
    outcome = run_job(job, model, replace(settings, capacity=1), ledger=ledger, listener=recorder)
    assert (outcome.objects_done, outcome.objects_failed) == (11, 1)
    assert (outcome.failure_reason or "").endswith("03.csv: Unable to get response from the model: its instance exited with code 7 3 times")
    assert sorted(recorder.done) == sorted(name for name in files if name != "03.csv")
    assert len(recorder.done) == len(set(recorder.done))
    assert sum(" while transforming " in line for line in recorder.lines) == 3
    assert all(line.endswith("/in/03.csv") for line in recorder.lines if " while transforming " in line)
    for name in files:
        output = tmp_path / "out" / f"{name}.out"
        assert output.exists() == (name != "03.csv")


def test_a_finished_job_leaves_no_process_behind(tmp_path: Path, settings: Settings) -> None:
    job, model = job_and_model(tmp_path, BRACKET, files={f"{n}.csv": "1\n" for n in range(4)}, TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2})
    before = set(psutil.Process().children(recursive=True))
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)))
    assert outcome.status == "Completed"
    assert set(psutil.Process().children(recursive=True)) - before == set()


@pytest.mark.parametrize("kept", ["memory", "store"])
def test_an_objects_first_failure_is_a_shards_own_not_a_shard_skipped_for_it(tmp_path: Path, kept: str) -> None:
    """Shard 1 was handed back (its instance died) and skipped once shard 2 had failed: the
    job's "First:" is shard 2's reason, which says what went wrong."""
    shards = [
        WorkItem(item_id=number, input_uri="file:///in/a.csv", output_uri="file:///out/a.csv.out", size=300, shard=number, shards=3, range_start=number * 100, range_end=(number + 1) * 100)
        for number in range(3)
    ]
    with Store(tmp_path / "state.db") as store:
        if kept == "memory":
            ledger: MemoryLedger | StoreLedger = MemoryLedger(shards)
        else:
            store.jobs.create("job", "arn", "m", {}, datetime.now(timezone.utc))
            add_planned_items(store, "job", shards)
            ledger = StoreLedger(store, "job", "owner-1", 60)
        taken = [item for item in (ledger.take() for _ in shards) if item is not None]
        assert [item.shard for item in taken] == [0, 1, 2]
        ledger.fail(taken[1], "file:///in/a.csv: ValueError: cannot score a bad record", [])
        ledger.fail(taken[0], f"file:///in/a.csv: shard 1 of 3 {SKIPPED_SHARD}", [])
        ledger.complete([(taken[2], ItemProgress(taken[2].item_id, records=4, done=True))])
        summary = ledger.summary()
    assert (summary.total, summary.failed, summary.done) == (1, 1, 0)
    assert summary.first_failure == "file:///in/a.csv: ValueError: cannot score a bad record"
