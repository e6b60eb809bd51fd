"""Payloads are cut while the model works (`invoke_in_order` with `overlap`), never with more
calls in flight than allowed, and answers come back in payload order; groups of them
(`invoke_in_groups`) end at their count or their bytes."""

from __future__ import annotations

import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.pipeline.invoke import invoke_in_groups, invoke_in_order


def run(max_concurrent: int, overlap: bool) -> tuple[list[str], int, list[tuple[int, int]]]:
    events: list[str] = []
    in_flight = most = 0
    lock = threading.Lock()

    def payloads():
        for index in range(6):
            events.append(f"cut {index}")
            yield index

    def call(index: int, payload: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        events.append(f"call {index} begins")
        time.sleep(0.02)
        events.append(f"call {index} ends")
        with lock:
            in_flight -= 1
        return payload * 10

    answers = [(payload, answer) for payload, answer in invoke_in_order(payloads(), call, max_concurrent=max_concurrent, overlap=overlap)]
    return events, most, answers


def test_with_overlap_the_next_payload_is_cut_while_the_one_call_allowed_runs() -> None:
    events, most, answers = run(1, overlap=True)
    assert answers == [(index, index * 10) for index in range(6)]
    assert most == 1
    assert events.index("cut 1") < events.index("call 0 ends")


def test_without_overlap_each_payload_is_cut_after_the_call_before_it() -> None:
    events, most, answers = run(1, overlap=False)
    assert answers == [(index, index * 10) for index in range(6)]
    assert events.index("cut 1") > events.index("call 0 ends")


def test_concurrent_calls_stay_within_their_limit_and_in_order() -> None:
    _, most, answers = run(3, overlap=True)
    assert answers == [(index, index * 10) for index in range(6)]
    assert most == 3


@given(sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=60), most=st.integers(1, 8), most_bytes=st.integers(0, 64))
@settings(max_examples=200, deadline=None)
def test_groups_end_at_their_count_or_their_bytes_and_every_payload_keeps_its_index(sizes: list[int], most: int, most_bytes: int) -> None:
    """`invoke_in_groups` with a byte bound (parallel decode's): each group is handed over as
    soon as it holds `most` payloads or `most_bytes` bytes, so a long payload goes alone; each
    payload is answered with its own index, in order."""
    payloads = [b"x" * size for size in sizes]
    groups: list[tuple[int, list[bytes]]] = []

    def invoke_group(first: int, group: list[bytes]) -> list[int]:
        groups.append((first, group))
        return [first + offset for offset in range(len(group))]

    answers = list(invoke_in_groups(payloads, invoke_group, group_size=most, groups_at_once=3, group_bytes=most_bytes, size=len))
    assert answers == [(payload, index) for index, payload in enumerate(payloads)]
    groups.sort(key=lambda group: group[0])
    assert [payload for _, group in groups for payload in group] == payloads
    for number, (first, group) in enumerate(groups):
        assert first == sum(len(earlier) for _, earlier in groups[:number])
        held = sum(map(len, group))
        assert len(group) <= most and (not most_bytes or held - len(group[-1]) < most_bytes), "a group ran past its bound"
        if number < len(groups) - 1:  # every group but the last is full by one bound or the other
            assert len(group) == most or (most_bytes and held >= most_bytes)
