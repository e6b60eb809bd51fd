"""Payloads are cut while the model works (`invoke_in_order` with `overlap`), never with more
calls in flight than allowed, and answers come back in payload order."""

from __future__ import annotations

import threading
import time

from conveyor.pipeline.invoke import invoke_in_order


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
