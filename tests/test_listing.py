"""A job's inputs are listed while it runs: in key order, the first objects transformed before
the listing ends, and a listing that fails once the job has begun stops it cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.engine import listing as listing_module
from conveyor.engine.job import JobListener, ListedSoFar, iter_work_items, plan_work_items, run_job
from conveyor.engine.ledger import MemoryLedger
from conveyor.engine.listing import Listing
from conveyor.pipeline.work_item import WorkItem
from conveyor.sagemaker.model import parse_model
from conveyor.sagemaker.transform_job import parse_transform_job
from conveyor.settings import Settings
from conveyor.storage import register_storage
from conveyor.storage.base import ObjectInfo
from conveyor.storage.local import LocalStorage
from tests.models import BRACKET, write_model

NAMES = ["a", "a-b", "a0", "a.b", "a b", "ab", "b", "Z", "_", "~"]  # around "/" in code-point order: " -." below it, "0Z_ab~" above


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), min_size=1, max_size=25))
def test_a_local_listing_is_in_key_order_as_it_walks(tmp_path_factory: pytest.TempPathFactory, paths: list[list[str]]) -> None:
    root = tmp_path_factory.mktemp("tree")
    for parts in paths:
        target = root.joinpath(*parts)
        if any(parent.is_file() for parent in target.parents if root in parent.parents) or target.is_dir():
            continue  # a name already taken by a file (or a folder) on this path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
    every = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
    for prefix in [str(root), f"{root}/", f"{root}/a", f"{root}/a-", f"{root}/a/"]:
        folder = prefix.endswith("/") or os.path.isdir(prefix)
        under = prefix.rstrip("/") + "/" if folder else prefix
        expected = [path for path in every if path.startswith(under) or (not folder and path == prefix)]
        assert [info.key for info in LocalStorage().list(f"file://{prefix}")] == expected


class _ListsSlowly(LocalStorage):
    """A local store whose listing gives the first object, then waits for its output before it
    gives the rest: a job that waits for the whole listing before it starts never ends it."""

    def __init__(self, first_output: Path) -> None:
        self.first_output = first_output
        self.saw_output = False

    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        listed = super().list(prefix_uri)
        yield next(listed)
        deadline = time.monotonic() + 20
        while not self.first_output.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.saw_output = self.first_output.exists()
        yield from listed


def job_request(tmp_path: Path) -> dict[str, Any]:
    return {
        "TransformJobName": "listing",
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}}, "ContentType": "text/csv"},
        "TransformOutput": {"S3OutputPath": f"file://{tmp_path}/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def test_the_first_objects_are_transformed_while_the_rest_are_listed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ["a.csv", "b.csv", "c.csv"]:
        (tmp_path / "in" / name).write_text(name[0])
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{write_model(tmp_path, BRACKET)}"}})
    job = parse_transform_job(job_request(tmp_path))
    slow = _ListsSlowly(tmp_path / "out" / "a.csv.out")
    usual = register_storage("file", lambda **_: slow)  # in this process only: the instances read with the usual local store
    try:
        ledger, stop = MemoryLedger(listing=True), threading.Event()
        listed: list[WorkItem] = []
        listing = Listing(job, Settings(home=tmp_path / "home"), ledger, stop, on_items=listed.extend)
        listing.wait_for_first()
        outcome = run_job(job, model, Settings(home=tmp_path / "home"), ledger=ledger, listener=JobListener(), stop=stop)
    finally:
        register_storage("file", usual)
    assert slow.saw_output  # a.csv's output was written before c.csv was listed
    assert (outcome.status, outcome.objects_total, outcome.objects_done, listing.error) == ("Completed", 3, 3, None)
    assert [item.input_uri for item in listed] == [f"file://{tmp_path}/in/{name}" for name in ["a.csv", "b.csv", "c.csv"]]
    assert {path.name: path.read_text() for path in (tmp_path / "out").iterdir()} == {"a.csv.out": "<a>", "b.csv.out": "<b>", "c.csv.out": "<c>"}


def test_a_listing_that_fails_after_the_job_began_stops_it_and_says_why(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "a").mkdir(parents=True)
    (inputs / "z").mkdir()
    for number in range(300):  # more than one addition of listed items before the broken entry
        (inputs / "a" / f"{number:03d}.csv").write_text(str(number))
    os.symlink(tmp_path / "gone.csv", inputs / "z" / "b.csv")
    model_dir = write_model(tmp_path, BRACKET)
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "transform", "--input", str(inputs), "--output", str(tmp_path / "out"), "--model", str(model_dir),
         "--content-type", "text/csv", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"conveyor transform: Could not list the input data source file://{inputs}: the object file://{inputs}/z/b.csv cannot be read: "
        f"NoSuchKey: a symbolic link to {tmp_path}/gone.csv, which does not exist"
    ) in result.stderr
    written = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert all(path.name.endswith(".csv.out") for path in written if path.is_file())  # no temporary left
    assert all(path.read_text() == f"<{int(path.name[:3])}>" for path in written if path.is_file())  # each output whole


def test_a_listing_adds_whole_objects_and_a_resumed_one_goes_on_after_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's job keeps its listed items in the store as they come; after a crash its
    listing goes on after the objects stored, so it never stores part of a sharded object."""
    (tmp_path / "in").mkdir()
    for name, lines in [("a.csv", 60), ("b.csv", 1), ("c.csv", 40), ("d.csv", 1)]:
        (tmp_path / "in" / name).write_text("".join(f"{number}\n" for number in range(lines)))
    request = job_request(tmp_path)
    request["TransformInput"]["SplitType"] = "Line"
    job, settings = parse_transform_job(request), Settings(home=tmp_path / "home", shard_size_mb=0.0001)  # 104 bytes
    every = plan_work_items(job, settings)
    assert [(Path(item.input_uri).name, item.shard, item.shards) for item in every] == [
        ("a.csv", 0, 2), ("a.csv", 1, 2), ("b.csv", 0, 1), ("c.csv", 0, 2), ("c.csv", 1, 2), ("d.csv", 0, 1),
    ]
    monkeypatch.setattr(listing_module, "LISTED_BATCH", 1)  # an addition as soon as it may
    added: list[list[WorkItem]] = []
    Listing(job, settings, MemoryLedger(listing=True), threading.Event(), on_items=added.append).wait_for_first()
    deadline = time.monotonic() + 10
    while sum(map(len, added)) < len(every) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [item for batch in added for item in batch] == every
    assert len(added) == 4  # one addition per object, each ending with the object's last shard
    assert all(batch[-1].shard + 1 == batch[-1].shards for batch in added)
    so_far = ListedSoFar(objects=2, last_input_uri=f"file://{tmp_path}/in/b.csv", next_item_id=3)
    assert list(iter_work_items(job, settings, so_far)) == every[3:]


class _EndsAsTheBackendLooks(MemoryLedger):
    """A listing that adds its last item and ends just after the backend found nothing to take
    and before it asks whether more may come: the moment that a backend which then trusts the
    listing's end, without looking again, would end the job with the item never run."""

    def __init__(self, last: WorkItem) -> None:
        super().__init__(listing=True)
        self._last: WorkItem | None = last
        self._found_nothing = False

    def take(self) -> WorkItem | None:
        item = super().take()
        self._found_nothing = item is None
        return item

    def listing(self) -> bool:
        if self._found_nothing and self._last is not None:
            self.add([self._last])
            self.listed()
            self._last = None
        return super().listing()


def test_items_the_listing_added_just_before_it_ended_are_run(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("a")
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{write_model(tmp_path, BRACKET)}"}})
    job, settings = parse_transform_job(job_request(tmp_path)), Settings(home=tmp_path / "home")
    [item] = plan_work_items(job, settings)
    outcome = run_job(job, model, settings, ledger=_EndsAsTheBackendLooks(item), listener=JobListener())
    assert (outcome.status, outcome.objects_total, outcome.objects_done) == ("Completed", 1, 1)
    assert (tmp_path / "out" / "a.csv.out").read_text() == "<a>"


class _NeverHandsOut(MemoryLedger):
    """A ledger that never hands out its items: a fault in what hands out items."""

    def take(self) -> WorkItem | None:
        return None


def test_a_job_that_left_objects_untransformed_is_never_reported_completed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("a")
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{write_model(tmp_path, BRACKET)}"}})
    job, settings = parse_transform_job(job_request(tmp_path)), Settings(home=tmp_path / "home")
    outcome = run_job(job, model, settings, ledger=_NeverHandsOut(plan_work_items(job, settings)), listener=JobListener())
    assert (outcome.status, outcome.failure_reason) == ("Failed", "InternalServerError: 1 of 1 input object was not transformed")
