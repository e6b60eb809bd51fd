"""A job's inputs listed while the job runs: its instances start on the first objects while the
rest are listed, instead of after the whole listing (docs/semantics.md, "Listing")."""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol, Sequence

from conveyor.engine.job import ListedSoFar, iter_work_items
from conveyor.pipeline.work_item import WorkItem
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings

LISTED_BATCH = 64
"""Items a listing adds to the job at once; fewer once the first of them has waited
LISTED_SECONDS (the listing may be waiting for its next page meanwhile), and one by one while
the job has nothing else to hand out (its first item, a slow listing)."""
LISTED_SECONDS = 0.02


class ListedLedger(Protocol):
    """A ledger that takes a job's items as they are listed: `MemoryLedger`, and the server's
    `StoreLedger`, which keeps them in the store as they come."""

    def add(self, items: Sequence[WorkItem]) -> None: ...

    def listed(self, *, whole: bool) -> None:
        """No item will be added: the listing ended (`whole`: it listed every input)."""

    def pending(self) -> int:
        """Items not handed out."""


class Listing:
    """Plans a job's items on a thread while the job runs, so that its instances start on the
    first objects while the rest are listed (docs/semantics.md, "Listing"). The items go to
    `ledger` (listed until the listing ends), whole objects at a time, and to `on_items`; a
    listing that fails once the job has begun stops the job (`stop`), and `error` says why. A
    resumed job's listing goes on after the objects listed `so_far`."""

    def __init__(
        self, job: TransformJobSpec, settings: Settings, ledger: ListedLedger, stop: threading.Event,
        on_items: Callable[[list[WorkItem]], None] = lambda _: None, *, so_far: ListedSoFar | None = None,
    ) -> None:
        self.error: Exception | None = None
        self._job, self._settings, self._ledger, self._stop, self._on_items = job, settings, ledger, stop, on_items
        self._so_far = so_far
        self._began = threading.Event()  # the first items were added, or the listing ended
        self._added = False
        self._lock = threading.Lock()  # taken to add items, by the listing's thread or its timer's
        self._due = threading.Condition(self._lock)
        self._held: list[WorkItem] = []  # whole objects listed and not yet added
        self._held_since = 0.0
        self._timer_idle = True  # the timer sleeps with no deadline: items held anew must wake it
        self._ended = False
        threading.Thread(target=self._run, name="listing", daemon=True).start()
        threading.Thread(target=self._add_when_due, name="listing-timer", daemon=True).start()

    def wait_for_first(self) -> None:
        """Until the first items are listed; the listing's error if it failed before any."""
        self._began.wait()
        if self.error is not None and not self._added:
            raise self.error

    def _run(self) -> None:
        shards: list[WorkItem] = []  # the object's shards listed so far: an object is added whole
        whole = False
        try:
            for item in iter_work_items(self._job, self._settings, self._so_far):
                if self._stop.is_set():
                    return
                shards.append(item)
                if item.shard + 1 < item.shards:  # a resumed listing goes on after whole objects
                    continue
                with self._lock:
                    self._hold(shards)
                    if len(self._held) >= LISTED_BATCH or not self._ledger.pending():
                        self._add_held()
                shards = []
            with self._lock:
                self._add_held()
            whole = True
        except Exception as exc:  # an InputError or a store's failure: the job cannot see all its inputs
            self.error = exc
            if self._added:
                self._stop.set()
        finally:
            with self._lock:
                self._ended = True
                self._due.notify()
            self._ledger.listed(whole=whole)
            self._began.set()

    def _hold(self, items: list[WorkItem]) -> None:
        if not self._held:
            self._held_since = time.monotonic()
            if self._timer_idle:
                self._due.notify()
        self._held.extend(items)

    def _add_held(self) -> None:
        items, self._held = self._held, []
        self._add(items)

    def _add_when_due(self) -> None:
        """Add what has been held LISTED_SECONDS, while the listing itself waits (for S3's next
        page, say): the instances may have run out of work meanwhile."""
        with self._lock:
            while not self._ended:
                wait = self._held_since + LISTED_SECONDS - time.monotonic() if self._held else None
                if wait is not None and wait <= 0:
                    self._add_held()
                    continue
                self._timer_idle = wait is None
                self._due.wait(wait)
                self._timer_idle = False

    def _add(self, items: list[WorkItem]) -> None:
        if items:
            self._ledger.add(items)
            self._on_items(items)
            self._added = True
            self._began.set()
