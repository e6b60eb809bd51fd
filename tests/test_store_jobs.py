"""Transform jobs: create, the status machine, ListTransformJobs, and the scheduler's job lease."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.store import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    STATUSES,
    STOPPED,
    STOPPING,
    TRANSITIONS,
    AlreadyExists,
    IllegalTransition,
    NotFound,
    Store,
)
from tests.clock import T0, Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    with Store(tmp_path / "conveyor.db", clock=clock) as store:
        yield store


def arn(name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{name}"


def add(store: Store, name: str, seconds: float = 0):
    return store.jobs.create(name, arn(name), "model", {"TransformJobName": name}, T0 + timedelta(seconds=seconds))


def names(page) -> list[str]:
    return [summary.name for summary in page.items]


def test_a_new_job_is_in_progress_with_last_modified_at_creation(store):
    request = {"TransformJobName": "job", "ModelName": "model", "TransformResources": {"InstanceCount": 2}}
    job = store.jobs.create("job", arn("job"), "model", request, T0, tags={"k": "v"})
    assert job.status == IN_PROGRESS
    assert job.creation_time == job.last_modified_time == T0
    assert job.request == request and job.model_name == "model"
    assert job.transform_start_time is None and job.transform_end_time is None and job.execution_parameters is None
    assert store.jobs.get("job") == job
    assert store.tags.list(arn("job")) == {"k": "v"}
    assert store.jobs.get("nope") is None


def test_a_duplicate_job_name_is_refused(store):
    add(store, "job")
    with pytest.raises(AlreadyExists) as caught:
        add(store, "job")
    assert caught.value.kind == "transform job" and caught.value.name == "job"


@pytest.mark.parametrize("start", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_the_status_machine(store, start, target):
    add(store, "job")
    path = {
        IN_PROGRESS: [], STOPPING: [STOPPING], COMPLETED: [COMPLETED], FAILED: [FAILED], STOPPED: [STOPPING, STOPPED]
    }
    for step in path[start]:
        store.jobs.transition("job", step)
    if target in TRANSITIONS[start]:
        assert store.jobs.transition("job", target).status == target
    else:
        with pytest.raises(IllegalTransition) as caught:
            store.jobs.transition("job", target)
        assert caught.value.current == start and caught.value.requested == target
        assert store.jobs.get("job").status == start


def test_the_allowed_transitions_are_exactly_these():
    allowed = {(start, end) for start, ends in TRANSITIONS.items() for end in ends}
    assert allowed == {
        (IN_PROGRESS, COMPLETED), (IN_PROGRESS, FAILED), (IN_PROGRESS, STOPPING),
        (STOPPING, STOPPED), (STOPPING, FAILED), (STOPPING, COMPLETED),
    }


def test_a_terminal_status_records_the_end_time_and_drops_the_lease(store, clock):
    add(store, "job")
    assert store.jobs.claim("job", "scheduler-1", 30)
    clock.advance(5)
    job = store.jobs.transition("job", COMPLETED)
    assert job.transform_end_time == job.last_modified_time == datetime.fromtimestamp(clock.now, timezone.utc)
    assert job.owner is None and job.lease_expires is None


def test_stopping_is_not_terminal(store, clock):
    add(store, "job")
    job = store.jobs.transition("job", STOPPING)
    assert job.transform_end_time is None
    assert job.last_modified_time == datetime.fromtimestamp(clock.now, timezone.utc)


def test_failure_reasons_are_cut_to_1024_characters(store):
    add(store, "job")
    job = store.jobs.transition("job", FAILED, failure_reason="x" * 5000)
    assert job.failure_reason == "x" * 1023 + "…"
    assert store.jobs.list().items[0].failure_reason == "x" * 1023 + "…"
    add(store, "fits")
    assert store.jobs.transition("fits", FAILED, failure_reason="y" * 1024).failure_reason == "y" * 1024


def test_changes_to_an_unknown_job_raise_not_found(store):
    with pytest.raises(NotFound):
        store.jobs.transition("nope", COMPLETED)
    with pytest.raises(NotFound):
        store.jobs.mark_started("nope")
    with pytest.raises(NotFound):
        store.jobs.set_execution_parameters("nope", {})


def test_the_start_time_is_recorded_once(store, clock):
    add(store, "job")
    first = store.jobs.mark_started("job")
    assert first.transform_start_time == datetime.fromtimestamp(clock.now, timezone.utc)
    clock.advance(60)
    again = store.jobs.mark_started("job")  # resumed after a crash
    assert again.transform_start_time == first.transform_start_time
    assert again.last_modified_time == first.last_modified_time


def test_resolved_execution_parameters_are_kept(store, clock):
    add(store, "job")
    clock.advance(1)
    parameters = {"MaxConcurrentTransforms": 4, "MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord"}
    job = store.jobs.set_execution_parameters("job", parameters)
    assert job.execution_parameters == parameters
    assert job.last_modified_time == datetime.fromtimestamp(clock.now, timezone.utc)


def test_list_filters(store, clock):
    for index, name in enumerate(["daily-Scoring-1", "daily-scoring-2", "weekly-3", "adhoc-4"]):
        add(store, name, index * 10)
    clock.now = (T0 + timedelta(seconds=100)).timestamp()
    store.jobs.transition("weekly-3", COMPLETED)
    clock.now = (T0 + timedelta(seconds=200)).timestamp()
    store.jobs.transition("adhoc-4", STOPPING)

    assert names(store.jobs.list(name_contains="SCORING")) == ["daily-scoring-2", "daily-Scoring-1"]
    assert names(store.jobs.list(status_equals=COMPLETED)) == ["weekly-3"]
    assert names(store.jobs.list(creation_time_after=T0, creation_time_before=T0 + timedelta(seconds=30))) == [
        "weekly-3", "daily-scoring-2"
    ]
    assert names(store.jobs.list(last_modified_time_after=T0 + timedelta(seconds=100))) == ["adhoc-4"]
    assert names(store.jobs.list(last_modified_time_before=T0 + timedelta(seconds=100))) == [
        "daily-scoring-2", "daily-Scoring-1"
    ]
    assert names(store.jobs.list(name_contains="daily", status_equals=COMPLETED)) == []
    summary = store.jobs.list(status_equals=COMPLETED).items[0]
    assert summary.arn == arn("weekly-3") and summary.transform_end_time == T0 + timedelta(seconds=100)
    assert summary.last_modified_time == T0 + timedelta(seconds=100)


def test_list_sorts_by_status_then_creation_time(store):
    for index in range(4):
        add(store, f"job-{index}", index)
    store.jobs.transition("job-0", COMPLETED)
    store.jobs.transition("job-2", FAILED)
    ascending = store.jobs.list(sort_by="Status", sort_order="Ascending")
    assert [(job.status, job.name) for job in ascending.items] == [
        (COMPLETED, "job-0"), (FAILED, "job-2"), (IN_PROGRESS, "job-1"), (IN_PROGRESS, "job-3")
    ]
    descending = store.jobs.list(sort_by="Status", sort_order="Descending", max_results=3)
    assert names(descending) == ["job-3", "job-1", "job-2"]
    rest = store.jobs.list(sort_by="Status", sort_order="Descending", next_token=descending.next_token)
    assert names(rest) == ["job-0"]


def test_pages_are_stable_under_concurrent_inserts(store):
    for index in range(10):
        add(store, f"job-{index:02}", index)
    first = store.jobs.list(max_results=4)
    assert names(first) == ["job-09", "job-08", "job-07", "job-06"]
    add(store, "job-new-newest", 100)  # would shift an OFFSET page
    add(store, "job-new-oldest", -100)
    second = store.jobs.list(max_results=4, next_token=first.next_token)
    assert names(second) == ["job-05", "job-04", "job-03", "job-02"]


jobs_strategy = st.lists(
    st.tuples(
        st.text("abAB-1", min_size=1, max_size=5),
        st.integers(0, 5),  # creation time, seconds (ties likely)
        st.sampled_from([IN_PROGRESS, COMPLETED, FAILED]),
    ),
    max_size=25,
    unique_by=lambda job: job[0],
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    jobs=jobs_strategy,
    sort_by=st.sampled_from(["Name", "CreationTime", "Status"]),
    sort_order=st.sampled_from(["Ascending", "Descending"]),
    page_size=st.integers(1, 7),
    name_contains=st.sampled_from([None, "a", "B", "-"]),
    status_equals=st.sampled_from([None, IN_PROGRESS, COMPLETED]),
)
def test_paging_through_any_listing_gives_each_match_once_in_order(
    tmp_path_factory, jobs, sort_by, sort_order, page_size, name_contains, status_equals
):
    with Store(tmp_path_factory.mktemp("paging") / "conveyor.db") as store:
        for name, seconds, status in jobs:
            add(store, name, seconds)
            if status != IN_PROGRESS:
                store.jobs.transition(name, status)
        filters = {"name_contains": name_contains, "status_equals": status_equals}
        seen = []
        token = None
        while True:
            page = store.jobs.list(
                sort_by=sort_by, sort_order=sort_order, max_results=page_size, next_token=token, **filters
            )
            assert len(page.items) <= page_size
            seen += names(page)
            token = page.next_token
            if token is None:
                break
    key = {
        "Name": lambda job: (job[0],),
        "CreationTime": lambda job: (job[1], job[0]),
        "Status": lambda job: (job[2], job[1], job[0]),
    }[sort_by]
    matching = [
        job for job in jobs
        if (name_contains is None or name_contains.lower() in job[0].lower())
        and (status_equals is None or job[2] == status_equals)
    ]
    expected = sorted(matching, key=key, reverse=sort_order == "Descending")
    assert seen == [job[0] for job in expected]


def test_schedulable_jobs_are_active_and_unheld_oldest_first(store, clock):
    for index, name in enumerate(["done", "held", "free-old", "stopping", "free-new"]):
        add(store, name, index)
    store.jobs.transition("done", COMPLETED)
    store.jobs.transition("stopping", STOPPING)
    assert store.jobs.claim("held", "scheduler-1", 30)
    assert [job.name for job in store.jobs.schedulable()] == ["free-old", "stopping", "free-new"]
    clock.advance(31)  # scheduler-1 died: its lease runs out
    assert [job.name for job in store.jobs.schedulable()] == ["held", "free-old", "stopping", "free-new"]


def test_a_job_is_held_by_one_scheduler_at_a_time(store, clock):
    add(store, "job")
    assert store.jobs.claim("job", "scheduler-1", 30)
    assert not store.jobs.claim("job", "scheduler-2", 30)
    assert store.jobs.claim("job", "scheduler-1", 30)  # reclaiming one's own is fine
    clock.advance(20)
    assert store.jobs.renew_lease("job", "scheduler-1", 30)
    clock.advance(20)
    assert not store.jobs.claim("job", "scheduler-2", 30)  # renewed: still held
    assert store.jobs.get("job").lease_expires == datetime.fromtimestamp(clock.now + 10, timezone.utc)
    clock.advance(11)
    assert store.jobs.claim("job", "scheduler-2", 30)
    assert not store.jobs.renew_lease("job", "scheduler-1", 30)  # it lost the job
    assert not store.jobs.release("job", "scheduler-1")
    assert store.jobs.release("job", "scheduler-2")
    assert store.jobs.get("job").owner is None


def test_lease_bookkeeping_does_not_move_last_modified(store, clock):
    job = add(store, "job")
    clock.advance(5)
    store.jobs.claim("job", "scheduler-1", 30)
    store.jobs.renew_lease("job", "scheduler-1", 30)
    assert store.jobs.get("job").last_modified_time == job.last_modified_time


def test_finished_jobs_cannot_be_claimed(store):
    add(store, "job")
    store.jobs.transition("job", FAILED, failure_reason="bad")
    assert not store.jobs.claim("job", "scheduler-1", 30)


def test_a_job_listed_while_it_runs_says_whether_its_listing_ended(store):
    assert add(store, "planned").inputs_listed  # its items stored with it, as earlier versions stored every job
    assert not store.jobs.create("listed-later", arn("listed-later"), "model", {}, T0, inputs_listed=False).inputs_listed
    store.jobs.set_inputs_listed("listed-later", True)
    assert store.jobs.get("listed-later").inputs_listed
