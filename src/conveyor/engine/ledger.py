"""Where a job's work items live while it runs: handed out, handed back, done or failed.

The job's lifecycle (`engine.job`) reads and writes items only through a `Ledger`, so the same
lifecycle runs a job kept in memory (`conveyor transform`) and a job kept in the store (the
server, `engine.store_link.StoreLedger`), whose state survives a crash.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Iterable, Protocol, Sequence

from conveyor.pipeline.bisect import FailedRecord
from conveyor.pipeline.work_item import ItemProgress, WorkItem

SKIPPED_SHARD = "not transformed: another shard of the object failed"
"""The end of the reason of a shard failed untransformed because a sibling failed (engine.job):
never an object's first failure while the sibling's own reason is known."""


@dataclass(frozen=True)
class LedgerSummary:
    """Every object of the job, this run's and earlier runs' (after a resume); a sharded object
    counts once: done when every shard is, failed when one failed."""

    total: int
    done: int
    failed: int
    first_failure: str | None  # the reason of the first failed item, in item order
    input_uris: tuple[str, ...]  # every item's input, in item order
    done_output_uris: tuple[str, ...]  # the outputs written, in item order
    records: int = 0  # records of the items done, failed records included
    failed_records: tuple[tuple[str, FailedRecord], ...] = ()  # (input URI, record), in item and record order


class Ledger(Protocol):
    def take(self) -> WorkItem | None:
        """The next item to transform, or None when none is left to hand out now."""

    def give_back(self, item: WorkItem) -> None:
        """An item to hand out again, keeping the attempts its runs spent (`attempts_used`,
        `instance_losses`), so that no hand-back, restart or resume resets them."""

    def complete(self, done: Sequence[tuple[WorkItem, ItemProgress]]) -> None:
        """Items whose outputs are written, recorded together (one write for the group)."""

    def fail(self, item: WorkItem, reason: str, failed_records: list[FailedRecord]) -> None:
        """The item failed for good; `failed_records` are the bad records it found first."""

    def summary(self) -> LedgerSummary: ...

    def listing(self) -> bool:
        """Whether items may still be added: the inputs are still being listed."""

    def done_shards(self, item: WorkItem) -> dict[int, tuple[int, int]]:
        """The shards of `item`'s object recorded done: shard → (records, failed records)."""


@dataclass(frozen=True)
class ItemState:
    """One item as a ledger holds it, for `summarise`."""

    item: WorkItem
    state: str  # Pending | InFlight | Done | Failed
    records: int = 0
    failed_records: Sequence[FailedRecord] = ()
    failure_reason: str | None = None


def summarise(items: Sequence[ItemState]) -> LedgerSummary:
    """The job's objects from its items in order: a shard's record numbers (its own, from 1) are
    made the object's by adding the records of the shards before it (docs/semantics.md, "Shards")."""
    total = done = failed = records = 0
    failures: list[str] = []
    input_uris: list[str] = []
    outputs: list[str] = []
    bad: list[tuple[str, FailedRecord]] = []
    index, count = 0, len(items)
    while index < count:  # an object is its items from one of shard 0 to the next
        first = items[index].item
        end = index + 1
        while end < count and items[end].item.shard != 0:
            end += 1
        total += 1
        input_uris.append(first.input_uri)
        if end == index + 1 and first.shards == 1:  # the common case, an object that is one item, at less cost per object
            state = items[index]
            index = end
            if state.state == "Done":
                done += 1
                outputs.append(first.output_uri)
                records += state.records
            elif state.state == "Failed":
                failed += 1
                failures.append(state.failure_reason or "")
            if state.failed_records:
                bad.extend((first.input_uri, record) for record in state.failed_records)
            continue
        shards, index = items[index:end], end
        if any(state.state == "Failed" for state in shards):
            failed += 1
            reasons = [state.failure_reason or "" for state in shards if state.state == "Failed"]
            failures.extend(sorted(reasons, key=lambda reason: reason.endswith(SKIPPED_SHARD)))  # a skipped shard may come first: handed back, then skipped
        elif all(state.state == "Done" for state in shards) and len(shards) == first.shards:
            done += 1
            outputs.append(first.output_uri)
            records += sum(state.records for state in shards)
        before = 0
        for state in shards:
            bad.extend((first.input_uri, replace(record, record=record.record + before)) for record in state.failed_records)
            before += state.records
    return LedgerSummary(
        total=total, done=done, failed=failed, first_failure=failures[0] if failures else None,
        input_uris=tuple(input_uris), done_output_uris=tuple(outputs), records=records, failed_records=tuple(bad),
    )


class MemoryLedger:
    """A job's items in memory, handed out in order; for a job run in the foreground. With
    `listing`, items are added while the job runs (`add`), until `listed`."""

    def __init__(self, items: Iterable[WorkItem] = (), *, listing: bool = False) -> None:
        self._items = list(items)
        self._pending = deque(self._items)
        self._done: dict[int, tuple[WorkItem, ItemProgress]] = {}
        self._failed: dict[int, tuple[str, list[FailedRecord]]] = {}
        self._listing = listing
        self._lock = threading.Lock()

    def add(self, items: Sequence[WorkItem]) -> None:
        with self._lock:
            self._items.extend(items)
            self._pending.extend(items)

    def listed(self, *, whole: bool = True) -> None:
        """No item will be added (whether or not the listing was `whole`: its job ends either way)."""
        self._listing = False

    def listing(self) -> bool:
        return self._listing

    def pending(self) -> int:
        """Items not handed out."""
        return len(self._pending)

    def items(self) -> list[WorkItem]:
        with self._lock:
            return list(self._items)

    def take(self) -> WorkItem | None:
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def give_back(self, item: WorkItem) -> None:
        with self._lock:
            self._pending.appendleft(item)

    def complete(self, done: Sequence[tuple[WorkItem, ItemProgress]]) -> None:
        with self._lock:
            self._done.update((item.item_id, (item, progress)) for item, progress in done)

    def fail(self, item: WorkItem, reason: str, failed_records: list[FailedRecord]) -> None:
        with self._lock:
            self._failed[item.item_id] = (reason, failed_records)

    def summary(self) -> LedgerSummary:
        with self._lock:
            return summarise([self._state(item) for item in self._items])

    def done_shards(self, item: WorkItem) -> dict[int, tuple[int, int]]:
        with self._lock:
            return {
                done.shard: (progress.records, len(progress.failed_records))
                for done, progress in self._done.values()
                if done.output_uri == item.output_uri and done.input_uri == item.input_uri and done.shards > 1
            }

    def _state(self, item: WorkItem) -> ItemState:
        if item.item_id in self._done:
            progress = self._done[item.item_id][1]
            return ItemState(item, "Done", progress.records, progress.failed_records)
        if item.item_id in self._failed:
            reason, records = self._failed[item.item_id]
            return ItemState(item, "Failed", 0, records, reason)
        return ItemState(item, "Pending")
