"""A running job's link to the store: its ledger of work items, and where its events go.

Items are claimed with leases, so a restarted server reclaims what a dead one held; outcomes,
the attempts each item has spent, progress and log lines are written as they happen, so
nothing a client saw, and no attempt a job allows, is lost in a crash.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Iterable, Sequence

from conveyor.engine.instance import ResolvedParameters
from conveyor.engine.job import JobListener, ListedSoFar
from conveyor.engine.ledger import ItemState, LedgerSummary, summarise
from conveyor.pipeline.bisect import FailedRecord
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.store import Store
from conveyor.store.logs import cut_message
from conveyor.store.work_items import DONE, FAILED, CompletedItem, NewWorkItem

PROGRESS_WRITE_INTERVAL_SECONDS = 0.5
CLAIM_BATCH = 16
"""Items claimed from the store in one write; those not yet handed out hold the lease too."""


def instance_stream(job_name: str, instance: int) -> str:
    return f"{job_name}/instance-{instance + 1}"


def data_log_stream(job_name: str, instance: int) -> str:
    return f"{instance_stream(job_name, instance)}/data-log"


def job_stream(job_name: str) -> str:
    """Job-level events go to the first instance's stream, the one SageMaker's SDK prints."""
    return instance_stream(job_name, 0)


def log(store: Store, stream: str, job_name: str, message: str) -> None:
    store.logs.append(job_name, stream, int(time.time() * 1000), message)


def add_planned_items(store: Store, job_name: str, items: Iterable[WorkItem]) -> None:
    """Write a job's planned items to the store, in one transaction."""
    store.work_items.add(
        job_name,
        [
            NewWorkItem(item.item_id, item.input_uri, item.output_uri, "", item.size, item.range_start, item.range_end, item.shard, item.shards)
            for item in items
        ],
    )


class StoreLedger:
    """The job's items in the store, claimed under this scheduler's lease. With `listing`, its
    items are added as its inputs are listed while it runs (`engine.listing`), each group in
    one transaction, so that a resumed job goes on listing where it stopped."""

    def __init__(self, store: Store, job_name: str, owner: str, lease_seconds: float, *, listing: bool = False) -> None:
        self.store = store
        self.job_name = job_name
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.in_flight: set[int] = set()  # claimed under our lease: handed out, or waiting in `_claimed`
        self._claimed: deque[WorkItem] = deque()
        self._ordinals: dict[int, int] = {}  # item id → ordinal, for the shards of the items claimed
        self._lock = threading.Lock()
        self._listing = listing
        self._unclaimed = store.work_items.count_pending(job_name) if listing else 0  # in the store, for `pending`

    def listing(self) -> bool:
        return self._listing

    def listed_so_far(self) -> ListedSoFar | None:
        """Where an interrupted listing of the job stopped; None when none has added an item."""
        last = self.store.work_items.last_planned(self.job_name)
        return None if last is None else ListedSoFar(last.objects, last.input_uri, last.ordinal + 1)

    def add(self, items: Sequence[WorkItem]) -> None:
        add_planned_items(self.store, self.job_name, items)
        with self._lock:
            self._unclaimed += len(items)

    def listed(self, *, whole: bool) -> None:
        if whole:
            self.store.jobs.set_inputs_listed(self.job_name, True)
        self._listing = False

    def pending(self) -> int:
        with self._lock:
            return self._unclaimed + len(self._claimed)

    def take(self) -> WorkItem | None:
        """The next item; items are claimed CLAIM_BATCH at a time, so that a job of many small
        objects does not pay a write to the store for each one it hands out."""
        if not self._claimed:
            claimed = self.store.work_items.claim_many(self.job_name, self.owner, self.lease_seconds, CLAIM_BATCH)
            with self._lock:
                self._unclaimed = max(self._unclaimed - len(claimed), 0)
                self.in_flight.update(item.id for item in claimed)
                self._ordinals.update((item.id, item.ordinal) for item in claimed if item.shards > 1)
            self._claimed.extend(
                WorkItem(
                    item_id=item.id, input_uri=item.input_uri, output_uri=item.output_uri, size=item.size,
                    attempts_used=item.payload_attempts, instance_losses=item.instance_losses,
                    shard=item.shard, shards=item.shards, range_start=item.range_start, range_end=item.range_end,
                )
                for item in claimed
            )
        return self._claimed.popleft() if self._claimed else None

    def give_back(self, item: WorkItem) -> None:
        self._finished(item.item_id)
        self.store.work_items.release(
            item.item_id, self.owner, payload_attempts=item.attempts_used, instance_losses=item.instance_losses
        )
        with self._lock:
            self._unclaimed += 1

    def complete(self, done: Sequence[tuple[WorkItem, ItemProgress]]) -> None:
        with self._lock:
            self.in_flight.difference_update(item.item_id for item, _ in done)
        self.store.work_items.complete_many(
            self.owner,
            [
                CompletedItem(
                    item.item_id, progress.records, progress.bytes_in, progress.bytes_out,
                    [asdict(record) for record in progress.failed_records],
                )
                for item, progress in done
            ],
        )

    def fail(self, item: WorkItem, reason: str, failed_records: list[FailedRecord]) -> None:
        self._finished(item.item_id)
        self.store.work_items.fail(item.item_id, self.owner, reason, failed_records=[asdict(record) for record in failed_records])

    def summary(self) -> LedgerSummary:
        return summarise([
            ItemState(
                WorkItem(outcome.id, outcome.input_uri, outcome.output_uri, outcome.size, shard=outcome.shard, shards=outcome.shards),
                outcome.state,
                outcome.records if outcome.state == DONE else 0,
                [FailedRecord(**failed) for failed in outcome.failed_records],  # type: ignore[arg-type]
                outcome.failure_reason if outcome.state == FAILED else None,
            )
            for outcome in self.store.work_items.outcomes(self.job_name)
        ])

    def done_shards(self, item: WorkItem) -> dict[int, tuple[int, int]]:
        ordinal = self._ordinals.get(item.item_id)
        if ordinal is None:
            return {}
        return self.store.work_items.done_shards(self.job_name, ordinal, item.shard)

    def renew_leases(self) -> None:
        with self._lock:
            held = list(self.in_flight)
        for item_id in held:
            self.store.work_items.renew_lease(item_id, self.owner, self.lease_seconds)

    def release_in_flight(self) -> None:
        """Hand back, unfinished, what instances still held when the run ended (a Stop, a shutdown)."""
        with self._lock:
            held, self.in_flight = list(self.in_flight), set()
            self._claimed.clear()
        for item_id in held:
            self.store.work_items.release(item_id, self.owner)

    def _finished(self, item_id: int) -> None:
        with self._lock:
            self.in_flight.discard(item_id)


class StoreListener(JobListener):
    """Writes a job's events to the store: resolved parameters, progress, figures and log lines."""

    def __init__(self, store: Store, job_name: str, owner: str, *, log_quota_bytes: int | None = None) -> None:
        self.store = store
        self.job_name = job_name
        self.owner = owner
        self._last_write: dict[int, float] = {}
        self._figures_written = 0.0
        self.log_quota_bytes = log_quota_bytes
        self._logged_bytes = store.logs.job_bytes(job_name) if log_quota_bytes is not None else 0
        self.dropped_lines = 0
        """Lines of the model's output dropped past the log quota, in this run."""

    def on_resolved(self, resolved: ResolvedParameters) -> None:
        self.store.jobs.set_execution_parameters(self.job_name, resolved.as_request_fields())
        log(self.store, data_log_stream(self.job_name, 0), self.job_name, f"[sagemaker logs]: {resolved.log_line()}")

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None:
        now = time.monotonic()
        if now - self._last_write.get(item.item_id, 0.0) < PROGRESS_WRITE_INTERVAL_SECONDS:
            return
        self._last_write[item.item_id] = now
        self.store.work_items.report_progress(item.item_id, self.owner, records=progress.records, bytes_in=progress.bytes_in)

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        for item, _ in done:
            self._last_write.pop(item.item_id, None)

    def on_figures(self, records_per_second: float, busy_fraction: float, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._figures_written < PROGRESS_WRITE_INTERVAL_SECONDS:
            return
        self._figures_written = now
        self.store.jobs.set_figures(self.job_name, records_per_second, busy_fraction)

    def on_item_failed(self, item: WorkItem, reason: str) -> None:
        self._last_write.pop(item.item_id, None)
        log(self.store, data_log_stream(self.job_name, 0), self.job_name, f"[sagemaker logs]: {reason}")

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        stream = data_log_stream(self.job_name, instance) if data_log else instance_stream(self.job_name, instance)
        if self._over_quota(message):
            return
        log(self.store, stream, self.job_name, f"[sagemaker logs]: {message}" if data_log else message)

    def _over_quota(self, message: str) -> bool:
        """Count the line against the quota; past it, drop the line, saying so on the first."""
        if self.log_quota_bytes is None:
            return False
        self._logged_bytes += len(cut_message(message).encode("utf-8", "surrogatepass"))
        if self._logged_bytes <= self.log_quota_bytes:
            return False
        if self.dropped_lines == 0:
            log(
                self.store, job_stream(self.job_name), self.job_name,
                f"This job's log reached its quota of {self.log_quota_bytes // (1024 * 1024)} MB "
                "(--log-quota-mb, CONVEYOR_LOG_QUOTA_MB): further lines are counted and dropped.",
            )
        self.dropped_lines += 1
        return True
