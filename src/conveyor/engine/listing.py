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
"""Items a listing adds to the job at once; fewer LISTED_SECONDS after its last addition, and
one by one while the job has nothing else to hand out (its first item, a slow listing)."""
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
        threading.Thread(target=self._run, name="listing", daemon=True).start()

    def wait_for_first(self) -> None:
        """Until the first items are listed; the listing's error if it failed before any."""
        self._began.wait()
        if self.error is not None and not self._added:
            raise self.error

    def _run(self) -> None:
        batch: list[WorkItem] = []
        added_at = time.monotonic()
        whole = False
        try:
            for item in iter_work_items(self._job, self._settings, self._so_far):
                if self._stop.is_set():
                    return
                batch.append(item)
                if item.shard + 1 < item.shards:  # an object's shards are added together: a resumed listing goes on after whole objects
                    continue
                if len(batch) >= LISTED_BATCH or time.monotonic() - added_at >= LISTED_SECONDS or not self._ledger.pending():
                    self._add(batch)
                    batch, added_at = [], time.monotonic()
            self._add(batch)
            whole = True
        except Exception as exc:  # an InputError or a store's failure: the job cannot see all its inputs
            self.error = exc
            if self._added:
                self._stop.set()
        finally:
            self._ledger.listed(whole=whole)
            self._began.set()

    def _add(self, items: list[WorkItem]) -> None:
        if items:
            self._ledger.add(items)
            self._on_items(items)
            self._added = True
            self._began.set()
