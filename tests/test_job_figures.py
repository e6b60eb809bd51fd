"""Figures while a job runs (issue #17): records per second, and the fraction of an instance's
wall time in which a model call was in progress, counted once however many calls overlap."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

from conveyor.engine.figures import LOG_INTERVAL_SECONDS, InstanceMeter, InstanceTotals, JobFigures, records_text
from conveyor.pipeline.busy import BusyMeter
from conveyor.pipeline.work_item import ItemProgress
from tests.models import sleepy, write_model
from tests.server import ServerProcess, wait_for_status
from tests.test_transform_cli import conveyor

LOG_GROUP = "/aws/sagemaker/TransformJobs"
WHOLE_RUN = re.compile(r"Instance 1, whole run: ([\d,]+) records in [\d.]+ s, ([\d.,]+) records/s, model busy (\d+)%")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_busy_time_is_the_union_of_overlapping_and_disjoint_calls() -> None:
    clock = FakeClock()
    meter = BusyMeter(clock)
    meter.begin()  # call A: 0 → 3
    clock.now += 1
    meter.begin()  # call B: 1 → 5, overlapping A
    clock.now += 2
    meter.end()  # A ends at 3
    assert meter.seconds() == 3  # the open interval counts while B runs
    clock.now += 2
    meter.end()  # B ends at 5: busy 0 → 5 once, not 3 + 4
    clock.now += 10  # idle
    meter.begin()  # call C: 15 → 16, disjoint
    clock.now += 1
    meter.end()
    clock.now += 7
    assert meter.seconds() == 6


def test_calls_in_threads_count_once_while_they_overlap() -> None:
    meter = BusyMeter()

    def call() -> None:
        meter.begin()
        time.sleep(0.3)
        meter.end()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0.25 < meter.seconds() < 1.0  # four overlapping calls of 0.3 s: about 0.3, never their sum of 1.2


def test_an_instance_reports_its_totals_at_most_every_second_and_when_it_runs_out_of_items() -> None:
    clock = FakeClock()
    busy = BusyMeter(clock)
    meter = InstanceMeter(busy, clock)
    busy.begin()
    clock.now += 0.5
    busy.end()
    first = ItemProgress(0, records=10)
    clock.now += 0.5
    assert meter.seen(first) == InstanceTotals(10, 0.5, 1.0)
    busy.begin()
    clock.now += 0.5
    busy.end()
    first.records = 20
    assert meter.seen(first) is None  # within a second of the last report
    assert meter.item_ended(0, idle=False) is None
    second = ItemProgress(1, records=5)
    busy.begin()
    clock.now += 0.25
    busy.end()
    assert meter.seen(second) is None
    clock.now += 0.25
    assert meter.item_ended(1, idle=True) == InstanceTotals(25, 1.25, 2.0)  # nothing else to do: its final totals


def test_items_transformed_at_once_add_their_records_and_share_the_busy_time() -> None:
    clock = FakeClock()
    busy = BusyMeter(clock)
    meter = InstanceMeter(busy, clock)
    busy.begin()
    busy.begin()  # two items' calls at once, in one batch
    clock.now += 1
    busy.end()
    busy.end()
    assert meter.seen(ItemProgress(0, records=3)) == InstanceTotals(3, 1.0, 1.0)
    meter.seen(ItemProgress(1, records=4))
    meter.item_ended(0, idle=False)
    clock.now += 1
    assert meter.item_ended(1, idle=True) == InstanceTotals(7, 1.0, 2.0)


def test_the_job_log_gets_a_line_per_instance_every_30_seconds_and_whole_run_figures_at_the_end() -> None:
    clock = FakeClock()
    figures = JobFigures(clock)
    figures.started(0)
    figures.started(1)
    lines = []
    for second in range(1, 61):
        clock.now += 1
        lines.append(figures.report(0, InstanceTotals(records=100 * second, busy_seconds=0.9 * second, wall_seconds=second)))
        lines.append(figures.report(1, InstanceTotals(records=50 * second, busy_seconds=0.5 * second, wall_seconds=second)))
    logged = [line for line in lines if line]
    assert LOG_INTERVAL_SECONDS == 30
    assert logged == [
        "Instance 1: 100 records/s, model busy 90% of the last 30 s",
        "Instance 2: 50.0 records/s, model busy 50% of the last 30 s",
    ] * 2
    live = figures.live()
    assert live is not None and round(live.records_per_second) == 150 and round(live.busy_fraction, 2) == 0.7
    assert figures.final_lines() == [
        (0, "Instance 1, whole run: 6,000 records in 60.0 s, 100 records/s, model busy 90%"),
        (1, "Instance 2, whole run: 3,000 records in 60.0 s, 50.0 records/s, model busy 50%"),
    ]
    whole = figures.whole()
    assert whole is not None and round(whole.records_per_second) == 150 and round(whole.busy_fraction, 2) == 0.7


def test_a_replaced_instance_keeps_the_totals_of_the_process_it_replaces() -> None:
    clock = FakeClock()
    figures = JobFigures(clock)
    figures.started(0)
    clock.now += 10
    figures.report(0, InstanceTotals(records=100, busy_seconds=5, wall_seconds=10))
    figures.started(0)  # the process died; its replacement counts from zero
    clock.now += 10
    figures.report(0, InstanceTotals(records=300, busy_seconds=10, wall_seconds=10))
    live = figures.live()
    assert live is not None and (live.records_per_second, live.busy_fraction) == (30, 1.0)
    assert figures.final_lines() == [(0, "Instance 1, whole run: 400 records in 20.0 s, 20.0 records/s, model busy 75%")]


def test_one_record_is_written_in_the_singular() -> None:
    clock = FakeClock()
    figures = JobFigures(clock)
    figures.started(0)
    clock.now += 2
    figures.report(0, InstanceTotals(records=1, busy_seconds=1, wall_seconds=2))
    assert figures.final_lines() == [(0, "Instance 1, whole run: 1 record in 2.0 s, 0.50 records/s, model busy 50%")]
    assert [records_text(count) for count in (0, 1, 2, 1234)] == ["0 records", "1 record", "2 records", "1,234 records"]


def _inputs(folder: Path, objects: int, records: int) -> None:
    folder.mkdir(parents=True)
    for index in range(objects):
        (folder / f"{index}.csv").write_text("".join(f"{index},{record}\n" for record in range(records)))


def test_conveyor_transform_prints_plausible_figures_for_a_model_that_sleeps_per_call(tmp_path: Path) -> None:
    """Each call sleeps 20 ms, one at a time: at most 50 records/s, and the model is busy most of
    the time (the bounds are broad, for a loaded machine)."""
    model = write_model(tmp_path, sleepy(0.02))
    _inputs(tmp_path / "data", objects=3, records=20)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord", "--retries", "0",
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    instance = WHOLE_RUN.search(result.stderr)
    assert instance, result.stderr
    assert instance.group(1) == "60"
    summary = next(line for line in result.stderr.splitlines() if line.startswith("Completed "))
    figures = re.search(r"\(.+/s, ([\d.,]+) records/s, model busy (\d+)%\)$", summary)
    assert figures, summary
    records_per_second, busy = float(figures.group(1).replace(",", "")), int(figures.group(2))
    assert 2 <= records_per_second <= 55, summary
    assert 50 < busy <= 100, summary


def test_a_server_job_logs_its_whole_run_figures_and_its_progress_shows_them(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm, logs = conveyor_server.client("sagemaker"), conveyor_server.client("logs")
    name, model = f"figures-{uuid.uuid4().hex[:8]}", f"figures-model-{uuid.uuid4().hex[:8]}"
    model_dir = write_model(tmp_path, sleepy(0.02))
    sm.create_model(ModelName=model, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"})
    _inputs(tmp_path / "in", objects=2, records=10)
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        BatchStrategy="SingleRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}},
            "ContentType": "text/csv", "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )  # fmt: skip
    assert wait_for_status(sm, name, timeout=90)["TransformJobStatus"] == "Completed"
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=f"{name}/instance-1", startFromHead=True)["events"]
    lines = [event["message"] for event in events if WHOLE_RUN.search(event["message"])]
    assert len(lines) == 1, [event["message"] for event in events]
    assert WHOLE_RUN.search(lines[0]).group(1) == "20"  # type: ignore[union-attr]
    progress = conveyor_server.progress(name)
    assert 2 <= progress["RecordsPerSecond"] <= 55, progress
    assert 0.5 < progress["ModelBusyFraction"] <= 1, progress
