"""A running job's link to the store: where its work items come from and where its events go.

Items are claimed with leases, so a restarted server reclaims what a dead one held; progress,
outcomes and log lines are written as they happen, so nothing a client saw is lost in a crash.
"""

from __future__ import annotations

import threading
import time

from conveyor.engine.backend import JobListener
from conveyor.engine.instance import ResolvedParameters
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.store import Store

PROGRESS_WRITE_INTERVAL_SECONDS = 0.5


def instance_stream(job_name: str, instance: int) -> str:
    return f"{job_name}/instance-{instance + 1}"


def data_log_stream(job_name: str, instance: int) -> str:
    return f"{instance_stream(job_name, instance)}/data-log"


def job_stream(job_name: str) -> str:
    """Job-level events go to the first instance's stream, the one SageMaker's SDK prints."""
    return instance_stream(job_name, 0)


def log(store: Store, stream: str, job_name: str, message: str) -> None:
    store.logs.append(job_name, stream, int(time.time() * 1000), message)


class StoreItemSource:
    """Hands out the job's pending items, claimed under this scheduler's lease."""

    def __init__(self, store: Store, job_name: str, owner: str, lease_seconds: float) -> None:
        self.store = store
        self.job_name = job_name
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.in_flight: set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> WorkItem | None:
        record = self.store.work_items.claim(self.job_name, self.owner, self.lease_seconds)
        if record is None:
            return None
        with self._lock:
            self.in_flight.add(record.id)
        return WorkItem(item_id=record.id, input_uri=record.input_uri, output_uri=record.output_uri, size=record.size)

    def give_back(self, item: WorkItem) -> None:
        self.finished(item.item_id)
        self.store.work_items.release(item.item_id, self.owner)

    def finished(self, item_id: int) -> None:
        with self._lock:
            self.in_flight.discard(item_id)

    def renew_leases(self) -> None:
        with self._lock:
            held = list(self.in_flight)
        for item_id in held:
            self.store.work_items.renew_lease(item_id, self.owner, self.lease_seconds)


class StoreListener(JobListener):
    """Writes a job's events to the store: resolved parameters, progress, outcomes, log lines."""

    def __init__(self, store: Store, job_name: str, source: StoreItemSource) -> None:
        self.store = store
        self.job_name = job_name
        self.source = source
        self._last_write: dict[int, float] = {}

    def on_resolved(self, resolved: ResolvedParameters) -> None:
        self.store.jobs.set_execution_parameters(self.job_name, resolved.as_request_fields())
        log(self.store, data_log_stream(self.job_name, 0), self.job_name, f"[sagemaker logs]: {resolved.log_line()}")

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None:
        now = time.monotonic()
        if now - self._last_write.get(item.item_id, 0.0) < PROGRESS_WRITE_INTERVAL_SECONDS:
            return
        self._last_write[item.item_id] = now
        self.store.work_items.report_progress(item.item_id, self.source.owner, records=progress.records, bytes_in=progress.bytes_in)

    def on_item_done(self, item: WorkItem, progress: ItemProgress) -> None:
        self._last_write.pop(item.item_id, None)
        self.source.finished(item.item_id)
        self.store.work_items.complete(item.item_id, self.source.owner, progress.records, progress.bytes_in, progress.bytes_out)

    def on_item_failed(self, item: WorkItem, reason: str) -> None:
        self._last_write.pop(item.item_id, None)
        self.source.finished(item.item_id)
        self.store.work_items.fail(item.item_id, self.source.owner, reason)
        log(self.store, data_log_stream(self.job_name, 0), self.job_name, f"[sagemaker logs]: {reason}")

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        stream = data_log_stream(self.job_name, instance) if data_log else instance_stream(self.job_name, instance)
        log(self.store, stream, self.job_name, f"[sagemaker logs]: {message}" if data_log else message)
