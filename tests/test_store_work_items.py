"""Work items under leases, concurrent claims (threads and processes), and derived progress."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from conveyor.store import AlreadyExists, NewWorkItem, NotFound, Store, WorkItemCounts
from tests.clock import T0, Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    with Store(tmp_path / "conveyor.db", clock=clock) as store:
        store.jobs.create("job", "arn:job", "model", {}, T0)
        yield store


def items(count: int, size: int = 1000) -> list[NewWorkItem]:
    return [
        NewWorkItem(ordinal=index, input_uri=f"s3://in/part-{index}.csv", output_uri=f"s3://out/part-{index}.csv.out",
                    relative_name=f"part-{index}.csv", size=size)
        for index in range(count)
    ]


def test_items_are_claimed_in_ordinal_order_until_none_is_pending(store, clock):
    assert store.work_items.add("job", reversed(items(3))) == 3
    claimed = [store.work_items.claim("job", "instance-1", 60) for _ in range(3)]
    assert [item.ordinal for item in claimed] == [0, 1, 2]
    assert (claimed[0].input_uri, claimed[0].output_uri, claimed[0].size) == ("s3://in/part-0.csv", "s3://out/part-0.csv.out", 1000)
    first = store.work_items.get(claimed[0].id)
    assert first.state == "InFlight" and first.owner == "instance-1" and first.attempts == 1
    assert first.relative_name == "part-0.csv"
    assert first.lease_expires == datetime.fromtimestamp(clock.now + 60, timezone.utc)
    assert store.work_items.claim("job", "instance-1", 60) is None
    assert store.work_items.claim("other-job", "instance-1", 60) is None


def test_items_are_claimed_several_at_a_time_in_ordinal_order(store):
    store.work_items.add("job", reversed(items(5)))
    first = store.work_items.claim_many("job", "instance-1", 60, 3)
    assert [item.ordinal for item in first] == [0, 1, 2]
    assert {store.work_items.get(item.id).state for item in first} == {"InFlight"}
    assert [item.ordinal for item in store.work_items.claim_many("job", "instance-2", 60, 3)] == [3, 4]
    assert store.work_items.claim_many("job", "instance-1", 60, 3) == []
    assert store.work_items.counts("job").in_flight == 5


def test_a_claim_reads_the_items_it_takes_not_every_pending_one(store):
    """A claim's cost does not grow with the items still pending, the job's or others': SQLite's
    work (its virtual machine's steps) is the same among 20,000 pending items as among 200."""

    def steps_of_a_claim(job: str) -> int:
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        connection = store.database.connection()
        connection.set_progress_handler(count, 100)
        try:
            assert len(store.work_items.claim_many(job, "instance-1", 60, 16)) == 16
        finally:
            connection.set_progress_handler(None, 0)
        return steps

    store.work_items.add("job", items(200))
    among_few = steps_of_a_claim("job")
    store.jobs.create("large", "arn:large", "model", {}, T0)
    store.work_items.add("large", items(20_000))
    among_many = steps_of_a_claim("job"), steps_of_a_claim("large")
    assert max(among_many) < 2 * among_few + 10, (among_few, among_many)


def test_threads_claiming_batches_never_claim_the_same_item(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        store.jobs.create("job", "arn:job", "model", {}, T0)
        store.work_items.add("job", items(200))
        claimed: list[int] = []
        start = threading.Barrier(4)

        def worker(owner: str) -> None:
            start.wait()
            while batch := store.work_items.claim_many("job", owner, 60, 7):
                claimed.extend(item.id for item in batch)

        threads = [threading.Thread(target=worker, args=(f"instance-{index}",)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(claimed) == 200 and len(set(claimed)) == 200


def test_byte_range_shards_are_kept(store):
    shard = NewWorkItem(0, "s3://in/big.csv", "s3://out/big.csv.out", "big.csv", 100, range_start=0, range_end=50)
    store.work_items.add("job", [shard])
    item = store.work_items.claim("job", "instance-1", 60)
    assert (item.range_start, item.range_end) == (0, 50)


def test_planning_twice_or_for_an_unknown_job_is_refused_whole(store):
    store.work_items.add("job", items(2))
    with pytest.raises(AlreadyExists):
        store.work_items.add("job", [*items(4)[2:], items(1)[0]])
    assert store.work_items.counts("job").total == 2  # the refused batch added nothing
    with pytest.raises(NotFound):
        store.work_items.add("no-such-job", items(1))


def test_an_item_goes_through_its_life(store, clock):
    store.work_items.add("job", items(3))
    item = store.work_items.claim("job", "instance-1", 60)
    assert store.work_items.report_progress(item.id, "instance-1", records=10, bytes_in=400)
    assert store.work_items.get(item.id).records == 10
    clock.advance(5)
    assert store.work_items.complete(item.id, "instance-1", records=25, bytes_in=1000, bytes_out=300)
    done = store.work_items.get(item.id)
    assert (done.state, done.records, done.bytes_in, done.bytes_out) == ("Done", 25, 1000, 300)
    assert done.finished_at == datetime.fromtimestamp(clock.now, timezone.utc) and done.lease_expires is None
    assert not store.work_items.complete(item.id, "instance-1", 1, 1, 1)  # already done

    failing = store.work_items.claim("job", "instance-2", 60)
    assert store.work_items.fail(failing.id, "instance-2", "s3://in/part-1.csv: ClientError: 400")
    assert [(item.ordinal, item.failure_reason) for item in store.work_items.failed("job")] == [
        (1, "s3://in/part-1.csv: ClientError: 400")
    ]
    assert store.work_items.counts("job") == WorkItemCounts(pending=1, in_flight=0, done=1, failed=1)
    assert not store.work_items.counts("job").finished


def test_only_the_holder_may_change_an_item(store):
    store.work_items.add("job", items(1))
    item = store.work_items.claim("job", "instance-1", 60)
    assert not store.work_items.report_progress(item.id, "instance-2", 1, 1)
    assert not store.work_items.complete(item.id, "instance-2", 1, 1, 1)
    assert not store.work_items.fail(item.id, "instance-2", "no")
    assert not store.work_items.release(item.id, "instance-2")
    assert not store.work_items.renew_lease(item.id, "instance-2", 60)
    assert store.work_items.get(item.id).state == "InFlight"


def test_a_released_item_is_claimed_again_without_its_partial_totals(store):
    store.work_items.add("job", items(2))
    item = store.work_items.claim("job", "instance-1", 60)
    store.work_items.report_progress(item.id, "instance-1", 5, 500, 50)
    assert store.work_items.release(item.id, "instance-1")
    released = store.work_items.get(item.id)
    assert (released.state, released.owner, released.records, released.bytes_in) == ("Pending", None, 0, 0)
    assert store.work_items.claim("job", "instance-2", 60).id == item.id
    again = store.work_items.get(item.id)
    assert again.attempts == 2 and again.owner == "instance-2"


def test_expired_leases_are_reclaimed_and_renewals_prevent_it(store, clock):
    store.work_items.add("job", items(3))
    lost = store.work_items.claim("job", "instance-1", 30)
    kept = store.work_items.claim("job", "instance-2", 30)
    clock.advance(20)
    assert store.work_items.report_progress(kept.id, "instance-2", 1, 100, lease_seconds=30)
    clock.advance(15)
    assert store.work_items.reclaim_expired("job") == 1
    assert store.work_items.get(lost.id).state == "Pending"
    assert store.work_items.get(kept.id).state == "InFlight"
    assert not store.work_items.complete(lost.id, "instance-1", 1, 1, 1)  # too late: it was taken back
    assert store.work_items.claim("job", "instance-3", 30).id == lost.id
    clock.advance(20)
    assert store.work_items.renew_lease(kept.id, "instance-2", 30)
    clock.advance(20)
    assert store.work_items.reclaim_expired("other-job") == 0  # another job's expired leases are its own
    assert store.work_items.reclaim_expired("job") == 1  # instance-3's
    assert store.work_items.get(kept.id).state == "InFlight"


def test_expired_leases_are_found_through_their_jobs_items(store):
    """A lease has no index to write at each claim, renewal and completion: a job's expired
    leases are found among its own in-flight items."""
    connection = store.database.connection()
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        store.work_items.reclaim_expired("job")
    finally:
        connection.set_trace_callback(None)
    [reclaim] = [statement for statement in statements if statement.startswith("UPDATE work_items")]
    plan = connection.execute(f"EXPLAIN QUERY PLAN {reclaim}").fetchall()
    assert any("work_items_by_state (job_name=? AND state=?)" in row[-1] for row in plan), plan
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'work_items'")}
    assert "work_items_by_lease" not in indexes


def test_progress_is_derived_from_the_items(store, clock):
    store.work_items.add("job", items(4, size=1 << 20))
    empty_job = store.job_progress("job")
    assert (empty_job.objects_total, empty_job.objects_done, empty_job.bytes_total) == (4, 0, 4 << 20)
    assert empty_job.started_at is None and empty_job.mb_per_second(T0) is None and empty_job.eta_seconds(T0) is None
    store.jobs.mark_started("job")
    started = datetime.fromtimestamp(clock.now, timezone.utc)
    done = store.work_items.claim("job", "instance-1", 60)
    failed = store.work_items.claim("job", "instance-1", 60)
    running = store.work_items.claim("job", "instance-1", 60)
    store.work_items.complete(done.id, "instance-1", records=100, bytes_in=1 << 20, bytes_out=2000)
    store.work_items.report_progress(failed.id, "instance-1", records=5, bytes_in=0, bytes_out=0)
    store.work_items.fail(failed.id, "instance-1", "bad record")  # its 5 records were never written
    store.work_items.report_progress(running.id, "instance-1", records=10, bytes_in=1 << 19, bytes_out=0)

    progress = store.job_progress("job")
    assert progress.objects_total == 4 and progress.objects_done == 1 and progress.objects_failed == 1
    assert progress.objects_in_flight == 1
    assert progress.records == 110 and progress.bytes_in == (1 << 20) + (1 << 19) and progress.bytes_out == 2000
    assert progress.bytes_remaining == (1 << 20) + (1 << 19)  # one pending item, half of one in flight
    assert progress.started_at == started
    later = started + timedelta(seconds=3)
    assert progress.mb_per_second(later) == pytest.approx(0.5)
    assert progress.eta_seconds(later) == pytest.approx(3.0)
    with pytest.raises(NotFound):
        store.job_progress("no-such-job")


def test_progress_of_several_jobs_is_one_query_with_each_jobs_own_figures(store):
    store.jobs.create("other", "arn:other", "model", {}, T0)
    store.jobs.create("empty", "arn:empty", "model", {}, T0)
    store.work_items.add("job", items(3))
    store.work_items.add("other", items(2, size=500))
    done = store.work_items.claim("other", "instance-1", 60)
    store.work_items.complete(done.id, "instance-1", records=7, bytes_in=500, bytes_out=70)
    statements: list[str] = []
    store.database.connection().set_trace_callback(statements.append)
    found = store.jobs_progress(["job", "other", "empty", "no-such-job"])
    store.database.connection().set_trace_callback(None)
    assert len(statements) == 1
    assert set(found) == {"job", "other", "empty"}
    for name in found:
        assert found[name] == store.job_progress(name)
    assert (found["other"].objects_total, found["other"].objects_done, found["other"].records) == (2, 1, 7)
    assert (found["empty"].objects_total, found["empty"].bytes_total, found["empty"].started_at) == (0, 0, None)
    assert store.jobs_progress([]) == {}


def test_threads_never_claim_the_same_item(tmp_path):
    path = tmp_path / "conveyor.db"
    with Store(path) as store:
        store.jobs.create("job", "arn:job", "model", {}, T0)
        store.work_items.add("job", items(200))
        claimed: dict[str, list[int]] = {}
        start = threading.Barrier(4)

        def worker(owner: str) -> None:
            mine = claimed.setdefault(owner, [])
            start.wait()
            while (item := store.work_items.claim("job", owner, 60)) is not None:
                mine.append(item.id)
                store.work_items.complete(item.id, owner, 1, 1, 1)

        threads = [threading.Thread(target=worker, args=(f"instance-{index}",)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [item_id for ids in claimed.values() for item_id in ids]
        assert sorted(every) == sorted(set(every)) and len(every) == 200
        assert store.work_items.counts("job").done == 200


def _claim_all(path: str, owner: str, start, results) -> None:  # noqa: ANN001 - multiprocessing proxies
    with Store(path) as store:
        mine = []
        start.wait(timeout=60)  # both processes are open before either claims
        while (item := store.work_items.claim("job", owner, 60)) is not None:
            mine.append(item.id)
            time.sleep(0.001)  # a little work, so that the two processes interleave
            store.work_items.complete(item.id, owner, 1, 1, 1)
        results.put(mine)


def test_processes_never_claim_the_same_item(tmp_path):
    path = str(tmp_path / "conveyor.db")
    with Store(path) as store:
        store.jobs.create("job", "arn:job", "model", {}, T0)
        store.work_items.add("job", items(300))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = context.Barrier(2)
    processes = [
        context.Process(target=_claim_all, args=(path, f"process-{index}", start, results)) for index in range(2)
    ]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    every = claimed[0] + claimed[1]
    assert claimed[0] and claimed[1]  # both took part
    assert len(every) == 300 and len(set(every)) == 300
    with Store(path) as store:
        assert store.work_items.counts("job") == WorkItemCounts(done=300)


def test_a_forked_child_opens_its_own_connection(store):
    store.work_items.add("job", items(2))
    parent_item = store.work_items.claim("job", "parent", 60)
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child() -> None:
        item = store.work_items.claim("job", "child", 60)  # the Store object came across the fork
        results.put((item.id, store.database.connection().pid))

    process = context.Process(target=child)
    process.start()
    child_item, child_pid = results.get(timeout=60)
    process.join(timeout=60)
    assert process.exitcode == 0 and child_pid == process.pid
    assert child_item != parent_item.id
    assert store.work_items.get(child_item).owner == "child"  # the parent's connection still works


def test_the_last_planned_item_says_where_a_listing_stopped(store):
    assert store.work_items.last_planned("job") is None
    store.work_items.add("job", [
        *items(2),
        NewWorkItem(2, "s3://in/big.csv", "s3://out/big.csv.out", "big.csv", 100, range_start=0, range_end=50, shard=0, shards=2),
        NewWorkItem(3, "s3://in/big.csv", "s3://out/big.csv.out", "big.csv", 100, range_start=50, range_end=100, shard=1, shards=2),
    ])  # fmt: skip
    assert store.work_items.last_planned("job") == (3, "s3://in/big.csv", 3)  # its ordinal, its input, the objects up to it
    assert store.work_items.count_pending("job") == 4
    store.work_items.claim_many("job", "instance-1", 60, 3)
    assert store.work_items.count_pending("job") == 1
