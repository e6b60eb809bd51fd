"""Small objects transformed together: where each object is one payload (`one_payload`: SplitType
None, an image each, say) and the runtime takes many payloads in one call (cross-record
batching, or parallel decode: `Runtime.payloads_per_call`), an instance hands a group of objects'
payloads over from one thread, as `invoke_in_groups` does with one object's records
(docs/models.md, "Cross-record batching" and "Parallel decode").

Each object keeps its own outcome: its own `.out`, written whole or not at all, its own
retries (a payload that fails in the group goes on alone, as its object's own invoker retries
it), its own failure.
"""

from __future__ import annotations

from typing import Callable

from conveyor.pipeline.busy import BusyMeter
from conveyor.pipeline.invoke import InvocationFailed, InvocationWatch, Invoker, invoke_together
from conveyor.pipeline.split import DataError
from conveyor.pipeline.work_item import (
    ItemProgress,
    PipelineConfig,
    WorkItem,
    WorkItemFailed,
    item_invoker,
    one_payload,
    read_one_payload,
    write_one_answer,
)
from conveyor.runtimes.base import InvocationError, Runtime
from conveyor.storage.base import Storage, StorageError


def transform_together(
    items: list[WorkItem],
    config: PipelineConfig,
    runtime: Runtime,
    storage_for: Callable[[str], Storage],
    *,
    watch_for: Callable[[WorkItem], InvocationWatch | None],
    log: Callable[[str], None] | None = None,
    busy: BusyMeter | None = None,
) -> list[ItemProgress | WorkItemFailed]:
    """Transform `one_payload` objects, their payloads sent to `runtime` in one call; each
    object's progress once its `.out` is written, or why it failed (`process_work_item`'s
    messages). `watch_for` gives an object's invocation watch."""
    assert all(one_payload(item, config) for item in items), "only whole-object payloads are sent together"
    progress = [ItemProgress(item.item_id) for item in items]
    invokers = [item_invoker(item, config, runtime, watch=watch_for(item), log=log, busy=busy) for item in items]
    failures: dict[int, WorkItemFailed] = {}  # by the object's number
    calls: list[tuple[Invoker, int, bytes]] = []
    sent: list[int] = []  # the number of the object each call is for
    for number, item in enumerate(items):
        try:
            body = read_one_payload(item, config, storage_for, progress[number])
        except (DataError, StorageError) as exc:  # these name the object themselves
            failures[number] = WorkItemFailed(str(exc))
            continue
        if body:  # an empty object has an empty output, without a call
            calls.append((invokers[number], 0, body))
            sent.append(number)
    answers = dict(zip(sent, invoke_together(calls, _alone))) if calls else {}
    for number, item in enumerate(items):
        if number in failures:
            continue
        answer = answers.get(number)
        if isinstance(answer, InvocationFailed):
            failures[number] = WorkItemFailed(f"{item.input_uri}: {answer}")
            continue
        try:
            write_one_answer(item, config, storage_for, answer, progress[number])
        except StorageError as exc:
            failures[number] = WorkItemFailed(str(exc))
            continue
        progress[number].retries = invokers[number].retries
        progress[number].done = True
    return [failures.get(number, progress[number]) for number in range(len(items))]


def _alone(invoker: Invoker, index: int, body: bytes, failed: InvocationError | None) -> bytes | InvocationFailed:
    """A payload that failed in the group, retried by its object's own invoker; its failure for
    good is its object's alone."""
    try:
        return invoker(index, body, failed=failed)
    except InvocationFailed as exc:
        return exc
