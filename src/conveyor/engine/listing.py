"""A job's inputs listed while the job runs: its instances start on the first objects while the
rest are listed, instead of after the whole listing (docs/semantics.md, "Listing")."""

from __future__ import annotations

import threading
import time
from typing import Callable

from conveyor.engine.job import iter_work_items
from conveyor.engine.ledger import MemoryLedger
from conveyor.pipeline.work_item import WorkItem
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings

LISTED_BATCH = 64
"""Items a listing adds to the job at once; fewer LISTED_SECONDS after its last addition, and
one by one while the job has nothing else to hand out (its first item, a slow listing)."""
LISTED_SECONDS = 0.02


class Listing:
    """Plans a job's items on a thread while the job runs, so that its instances start on the
    first objects while the rest are listed (docs/semantics.md, "Listing"). The items go to
    `ledger` (listed until the listing ends) and to `on_items`; a listing that fails once the job
    has begun stops the job (`stop`), and `error` says why."""

    def __init__(
        self, job: TransformJobSpec, settings: Settings, ledger: MemoryLedger, stop: threading.Event,
        on_items: Callable[[list[WorkItem]], None] = lambda _: None,
    ) -> None:
        self.error: Exception | None = None
        self._job, self._settings, self._ledger, self._stop, self._on_items = job, settings, ledger, stop, on_items
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
        try:
            for item in iter_work_items(self._job, self._settings):
                if self._stop.is_set():
                    return
                batch.append(item)
                if len(batch) >= LISTED_BATCH or time.monotonic() - added_at >= LISTED_SECONDS or not self._ledger.pending():
                    self._add(batch)
                    batch, added_at = [], time.monotonic()
            self._add(batch)
        except Exception as exc:  # an InputError or a store's failure: the job cannot see all its inputs
            self.error = exc
            if self._added:
                self._stop.set()
        finally:
            self._ledger.listed()
            self._began.set()

    def _add(self, items: list[WorkItem]) -> None:
        if items:
            self._ledger.add(items)
            self._on_items(items)
            self._added = True
            self._began.set()
