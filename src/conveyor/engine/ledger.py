"""Where a job's work items live while it runs: handed out, handed back, done or failed.

The job's lifecycle (`engine.job`) reads and writes items only through a `Ledger`, so the same
lifecycle runs a job kept in memory (`conveyor transform`) and a job kept in the store (the
server, `engine.store_link.StoreLedger`), whose state survives a crash.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Protocol

from conveyor.pipeline.bisect import FailedRecord
from conveyor.pipeline.work_item import ItemProgress, WorkItem


@dataclass(frozen=True)
class LedgerSummary:
    """Every item of the job, this run's and earlier runs' (after a resume)."""

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

    def complete(self, item: WorkItem, progress: ItemProgress) -> None: ...

    def fail(self, item: WorkItem, reason: str, failed_records: list[FailedRecord]) -> None:
        """The item failed for good; `failed_records` are the bad records it found first."""

    def summary(self) -> LedgerSummary: ...


class MemoryLedger:
    """A job's items in memory, handed out in order; for a job run in the foreground."""

    def __init__(self, items: Iterable[WorkItem]) -> None:
        self._items = list(items)
        self._pending = deque(self._items)
        self._done: dict[int, tuple[WorkItem, ItemProgress]] = {}
        self._failed: dict[int, tuple[str, list[FailedRecord]]] = {}
        self._lock = threading.Lock()

    def take(self) -> WorkItem | None:
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def give_back(self, item: WorkItem) -> None:
        with self._lock:
            self._pending.appendleft(item)

    def complete(self, item: WorkItem, progress: ItemProgress) -> None:
        with self._lock:
            self._done[item.item_id] = (item, progress)

    def fail(self, item: WorkItem, reason: str, failed_records: list[FailedRecord]) -> None:
        with self._lock:
            self._failed[item.item_id] = (reason, failed_records)

    def summary(self) -> LedgerSummary:
        with self._lock:
            failures = [self._failed[item.item_id][0] for item in self._items if item.item_id in self._failed]
            done = [self._done[item.item_id] for item in self._items if item.item_id in self._done]
            bad = {item.item_id: progress.failed_records for item, progress in done}
            bad.update((item_id, records) for item_id, (_, records) in self._failed.items())
            return LedgerSummary(
                total=len(self._items),
                done=len(self._done),
                failed=len(self._failed),
                first_failure=failures[0] if failures else None,
                input_uris=tuple(item.input_uri for item in self._items),
                done_output_uris=tuple(item.output_uri for item, _ in done),
                records=sum(progress.records for _, progress in done),
                failed_records=tuple((item.input_uri, record) for item in self._items for record in bad.get(item.item_id, ())),
            )
