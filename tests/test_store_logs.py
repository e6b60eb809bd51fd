"""Job logs: streams, reading by position (GetLogEvents) and filtering across streams (FilterLogEvents)."""

from __future__ import annotations

import pytest

from conveyor.store import InvalidToken, Store

NOW_MS = 1_714_564_800_000


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "conveyor.db", clock=lambda: NOW_MS / 1000) as store:
        yield store


def messages(events) -> list[str]:
    return [event.message for event in events]


def test_streams_list_their_first_and_last_event_times(store):
    store.logs.append("job", "job/instance-1", 2000, "second")
    store.logs.append_many("job", "job/instance-1", [(1000, "first"), (3000, "third")])
    store.logs.append("job", "job/instance-1/data-log", 1500, "MaxConcurrentTransforms=1")
    store.logs.append("other", "other/instance-1", 100, "elsewhere")
    streams = store.logs.streams("job/")
    assert [stream.name for stream in streams] == ["job/instance-1", "job/instance-1/data-log"]
    instance = streams[0]
    assert (instance.first_event_time, instance.last_event_time) == (1000, 3000)
    assert instance.creation_time == instance.last_ingestion_time == NOW_MS
    assert instance.stored_bytes == len("second") + len("first") + len("third")
    data_logs = store.logs.streams("job/instance-1/")
    assert [stream.name for stream in data_logs] == ["job/instance-1/data-log"]
    assert store.logs.append_many("job", "job/instance-1", []) == 0


def test_a_stream_prefix_spans_jobs_and_no_prefix_lists_every_stream(store):
    for number in range(150):
        store.logs.append(f"nightly-{number:03d}", f"nightly-{number:03d}/instance-1", 1000, "started")
    store.logs.append("nightly", "nightly/instance-1", 1000, "started")
    store.logs.append("nightlz", "nightlz/instance-1", 1000, "started")  # just past the prefix's range
    store.logs.append("other", "other/instance-1", 1000, "started")
    nightly = [stream.name for stream in store.logs.streams("nightly")]
    assert nightly == ["nightly-000/instance-1", *(f"nightly-{n:03d}/instance-1" for n in range(1, 150)), "nightly/instance-1"]
    assert [stream.name for stream in store.logs.streams("nightly-14")] == [f"nightly-14{n}/instance-1" for n in range(10)]
    assert len(store.logs.streams()) == 153
    assert store.logs.streams("nightly/instance-1") == store.logs.streams("nightly/")
    assert store.logs.streams("zzz") == []


def test_a_stream_reads_in_time_order_forward_with_tokens(store):
    store.logs.append_many("job", "job/instance-1", [(3000, "c"), (1000, "a"), (2000, "b"), (2000, "b2")])
    first = store.logs.read("job/instance-1", limit=2)
    assert messages(first.events) == ["a", "b"]
    second = store.logs.read("job/instance-1", token=first.next_forward_token, limit=2)
    assert messages(second.events) == ["b2", "c"]
    end = store.logs.read("job/instance-1", token=second.next_forward_token)
    assert end.events == [] and end.next_forward_token == second.next_forward_token  # caught up
    store.logs.append("job", "job/instance-1", 4000, "d")
    assert messages(store.logs.read("job/instance-1", token=end.next_forward_token).events) == ["d"]
    back = store.logs.read("job/instance-1", token=second.next_backward_token)
    assert messages(back.events) == ["a", "b"]


def test_a_stream_reads_from_the_tail(store):
    store.logs.append_many("job", "job/instance-1", [(time, str(time)) for time in range(1, 6)])
    tail = store.logs.read("job/instance-1", start_from_head=False, limit=2)
    assert messages(tail.events) == ["4", "5"]
    before = store.logs.read("job/instance-1", token=tail.next_backward_token, limit=2)
    assert messages(before.events) == ["2", "3"]


def test_an_empty_stream_read_from_the_tail_later_reads_forward_from_the_head(store):
    page = store.logs.read("job/instance-1", start_from_head=False)
    assert page.events == []
    store.logs.append("job", "job/instance-1", 10, "late")
    assert messages(store.logs.read("job/instance-1", token=page.next_forward_token).events) == ["late"]


def test_a_stream_read_takes_a_time_range(store):
    store.logs.append_many("job", "job/instance-1", [(time, str(time)) for time in (10, 20, 30, 40)])
    page = store.logs.read("job/instance-1", start_time_ms=20, end_time_ms=40)
    assert messages(page.events) == ["20", "30"]  # start inclusive, end exclusive


def test_filtering_across_streams(store):
    store.logs.append_many("job", "job/instance-1", [(10, "s3://b/a.csv: ClientError: 400"), (30, "ok")])
    store.logs.append_many("job", "job/instance-2", [(20, "s3://b/c.csv: ClientError: 413"), (40, "clienterror")])
    store.logs.append("other", "other/instance-1", 15, "ClientError elsewhere")

    everything = store.logs.filter(job_name="job")
    assert messages(everything.items) == [
        "s3://b/a.csv: ClientError: 400", "s3://b/c.csv: ClientError: 413", "ok", "clienterror"
    ]
    assert [event.stream_name for event in everything.items][:2] == ["job/instance-1", "job/instance-2"]
    assert messages(store.logs.filter(job_name="job", contains="ClientError").items) == [
        "s3://b/a.csv: ClientError: 400", "s3://b/c.csv: ClientError: 413"
    ]  # case-sensitive, as CloudWatch's terms are
    assert messages(store.logs.filter(contains="ClientError", start_time_ms=15, end_time_ms=20).items) == [
        "ClientError elsewhere"
    ]
    assert messages(store.logs.filter(stream_names=["job/instance-2"]).items) == [
        "s3://b/c.csv: ClientError: 413", "clienterror"
    ]
    assert len(store.logs.filter(stream_prefix="job/").items) == 4
    assert store.logs.filter(contains="100%").items == []


def test_filtering_pages_with_a_next_token(store):
    store.logs.append_many("job", "job/instance-1", [(time, str(time)) for time in range(7)])
    seen = []
    token = None
    while True:
        page = store.logs.filter(job_name="job", limit=3, next_token=token)
        seen += messages(page.items)
        token = page.next_token
        if token is None:
            break
    assert seen == [str(time) for time in range(7)]


@pytest.mark.parametrize("token", ["x", "f/1", "q/1/2", "f/a/b"])
def test_bad_position_tokens_are_refused(store, token):
    with pytest.raises(InvalidToken):
        store.logs.read("job/instance-1", token=token)
