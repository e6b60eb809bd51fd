"""The scheduler: claims queued jobs from the store, runs them within the machine's capacity,
stops them on request, and resumes what a crashed server left behind.

Jobs hold a lease in the store, renewed while they run. A server that dies stops renewing
(and its instance processes die with it); the next scheduler claims the job once the lease has
expired — at once when the dead owner was a process on this host — sweeps the temporaries the
crash left, and carries on with the items not yet done.

When the disk holding the state directory fills up, the job whose write failed is failed with
a reason naming the disk (recorded as soon as a write goes through again), and the loop backs
off, logging one line a minute instead of a traceback per tick.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from conveyor.engine.backend import Backend
from conveyor.engine.job import instances_for, run_job
from conveyor.engine.listing import Listing
from conveyor.engine.local import LocalBackend
from conveyor.engine.store_link import StoreLedger, StoreListener, job_stream, log
from conveyor.errors import ConveyorError
from conveyor.sagemaker import parse_model, parse_transform_job
from conveyor.settings import Settings
from conveyor.storage.base import StorageError
from conveyor.storage.inputs import InputError
from conveyor.store import ACTIVE, COMPLETED, FAILED, STOPPED, STOPPING, Store, TransformJobRecord
from conveyor.store.errors import StateDiskFull
from conveyor.store.work_items import IN_FLIGHT

logger = logging.getLogger("conveyor.scheduler")

LEASE_SECONDS = 15.0
RENEW_SECONDS = 3.0
DISK_FULL_RETRY_SECONDS = 5.0
DISK_FULL_WARNING_SECONDS = 60.0


@dataclass
class _Running:
    name: str
    instances: int
    stop: threading.Event
    thread: threading.Thread
    ledger: StoreLedger | None = None


def new_owner_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when `owner` was a scheduler process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Scheduler:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        backend_factory: Callable[[], Backend] = LocalBackend,
        poll_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = new_owner_id()
        self._backend_factory = backend_factory
        self._poll_seconds = poll_seconds
        self._running: dict[str, _Running] = {}
        self._failing: dict[str, str] = {}  # job → FailureReason not yet stored (the disk was full)
        self._disk_full_warned_at = float("-inf")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conveyor-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at the store now (a job was created or asked to stop)."""
        self._wake.set()

    def close(self) -> None:
        """Stop running jobs' instances and give their leases back; the jobs stay InProgress and
        resume when a scheduler next starts."""
        self._closing.set()
        self._wake.set()
        with self._lock:
            running = list(self._running.values())
        for job in running:
            job.stop.set()
        for job in running:
            job.thread.join(timeout=30)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def instances_in_use(self) -> int:
        with self._lock:
            return sum(job.instances for job in self._running.values())

    def _loop(self) -> None:
        renew_at = 0.0
        while not self._closing.is_set():
            pause = self._poll_seconds
            try:
                self._record_failures()
                due = time.monotonic() >= renew_at
                if due:
                    self._take_over_dead_owners()
                self._tick()
                if due:
                    self._renew()
                    renew_at = time.monotonic() + RENEW_SECONDS
            except StateDiskFull as error:
                self._warn_disk_full(error)
                pause = DISK_FULL_RETRY_SECONDS
            except Exception:  # the scheduler must outlive any one bad tick
                logger.exception("scheduler tick failed")
            self._wake.wait(pause)
            self._wake.clear()

    def _warn_disk_full(self, error: StateDiskFull) -> None:
        """One line a minute while the state disk stays full."""
        now = time.monotonic()
        if now - self._disk_full_warned_at >= DISK_FULL_WARNING_SECONDS:
            logger.warning("%s; retrying every %.0f s", error, DISK_FULL_RETRY_SECONDS)
            self._disk_full_warned_at = now

    def _record_failures(self) -> None:
        """Store the failures that a full disk kept from being stored."""
        for name, reason in list(self._failing.items()):
            self._finish(name, FAILED, reason)
            self.store.jobs.release(name, self.owner)
            del self._failing[name]

    def _tick(self) -> None:
        with self._lock:
            running = dict(self._running)
        for name, job in running.items():
            record = self.store.jobs.get(name)
            if record is not None and record.status == STOPPING:
                job.stop.set()
        free = max(self.settings.capacity - self.instances_in_use, 0)
        queue_blocked = False
        for record in self.store.jobs.schedulable():
            if record.name in running or record.name in self._failing:
                continue
            if record.owner and owner_is_dead(record.owner):
                self._take_over(record)
            if record.status == STOPPING:
                if self.store.jobs.claim(record.name, self.owner, LEASE_SECONDS):
                    self._finish_stopped(record.name, record.request)
                continue
            if queue_blocked:
                continue  # only stops get past a job that waits for capacity
            instances = instances_for(record.request["TransformResources"]["InstanceCount"], self.settings)
            if instances > free:
                queue_blocked = True  # jobs wait their turn in creation order
                continue
            if not self.store.jobs.claim(record.name, self.owner, LEASE_SECONDS):
                continue
            free -= instances
            self._launch(record, instances)

    def _take_over_dead_owners(self) -> None:
        """Free the active jobs whose owner was a scheduler on this host that has died, at once:
        `schedulable()` only shows a job once its lease has run out."""
        for status in ACTIVE:
            token = None
            while True:
                page = self.store.jobs.list(status_equals=status, sort_order="Ascending", max_results=100, next_token=token)
                for summary in page.items:
                    record = self.store.jobs.get(summary.name)
                    if record is not None and record.owner and record.owner != self.owner and owner_is_dead(record.owner):
                        logger.info("taking over job %s from %s, which is no longer running", record.name, record.owner)
                        self._take_over(record)
                token = page.next_token
                if not token:
                    break

    def _take_over(self, record: TransformJobRecord) -> None:
        assert record.owner is not None
        self.store.jobs.release(record.name, record.owner)
        for item in self.store.work_items.list(record.name, state=IN_FLIGHT):
            if item.owner == record.owner:
                self.store.work_items.release(item.id, record.owner)

    def _launch(self, record: TransformJobRecord, instances: int) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(record, instances, stop), name=f"job-{record.name}", daemon=True)
        with self._lock:
            self._running[record.name] = _Running(record.name, instances, stop, thread)
        thread.start()

    def _renew(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for job in running:
            self.store.jobs.renew_lease(job.name, self.owner, LEASE_SECONDS)
            if job.ledger is not None:
                job.ledger.renew_leases()

    def _run(self, record: TransformJobRecord, instances: int, stop: threading.Event) -> None:
        name = record.name
        try:
            self._run_claimed(record, instances, stop)
        except StateDiskFull as exc:
            logger.warning("job %s failed: %s", name, exc)
            self._failing[name] = f"InternalServerError: {exc}"
        except Exception as exc:  # an unexpected error fails the job rather than leaving it hanging
            logger.exception("job %s failed unexpectedly", name)
            self._finish(name, FAILED, f"InternalServerError: {exc}")
        finally:
            with self._lock:
                self._running.pop(name, None)
            if name not in self._failing:
                self.store.jobs.release(name, self.owner)
            self._wake.set()

    def _run_claimed(self, record: TransformJobRecord, instances: int, stop: threading.Event) -> None:
        name = record.name
        job = parse_transform_job(record.request)
        model_record = self.store.models.get(job.model_name)
        if model_record is None:
            self._finish(name, FAILED, f"ClientError: Could not find model \"{job.model_name}\".")
            return
        model = parse_model(model_record.request)
        resumed = record.transform_start_time is not None
        record = self.store.jobs.mark_started(name)
        listing = not record.inputs_listed or self.store.work_items.counts(name).total == 0
        if listing:  # a new job's inputs, or the rest of an interrupted listing's, are listed while it runs
            self.store.jobs.set_inputs_listed(name, False)
        self.store.work_items.reclaim_expired(name)
        swept = self._sweep(job.output.output_path)
        self.store.work_items.reset_unassembled_shards(name)  # their pieces were just swept
        ledger = StoreLedger(self.store, name, self.owner, LEASE_SECONDS, listing=listing)
        counts = self.store.work_items.counts(name)
        lister = None
        if listing:
            lister = Listing(job, self.settings, ledger, stop, so_far=ledger.listed_so_far())
            try:
                lister.wait_for_first()
            except InputError as exc:
                self._finish(name, FAILED, f"ClientError: {exc}")
                return
        if resumed:
            listed = " listed so far" if listing else ""
            log(self.store, job_stream(name), name, f"Resuming: {counts.done} of {counts.total} objects{listed} already done; {swept} temporary files swept.")
        elif listing:
            log(self.store, job_stream(name), name, "Starting: the input objects are listed as the job runs.")
        else:
            noun = "object" if counts.total == 1 else "objects"
            log(self.store, job_stream(name), name, f"Starting: {counts.total} input {noun}.")
        if job.resources.instance_count > instances:
            log(
                self.store, job_stream(name), name,
                f"InstanceCount={job.resources.instance_count} is more than this server's capacity of "
                f"{self.settings.capacity}; running {instances} instances.",
            )
        with self._lock:
            if name in self._running:
                self._running[name].ledger = ledger
        listener = StoreListener(self.store, name, self.owner, log_quota_bytes=self.settings.log_quota_mb * 1024 * 1024)
        outcome = run_job(
            job, model, self.settings, ledger=ledger, listener=listener, stop=stop,
            backend=self._backend_factory(), started_at=record.transform_start_time or datetime.now(timezone.utc),
        )
        ledger.release_in_flight()
        if lister is not None and lister.error is not None:  # the listing failed once the job had begun: it was stopped
            if not isinstance(lister.error, InputError):
                raise lister.error
            self._sweep(job.output.output_path)
            self._finish(name, FAILED, f"ClientError: {lister.error}")
            return
        if listener.dropped_lines:
            log(self.store, job_stream(name), name, f"{listener.dropped_lines} log lines were dropped past the log quota.")
        if outcome.status == "Stopped":
            if self._closing.is_set() and self.store.jobs.get(name).status != STOPPING:  # type: ignore[union-attr]
                return  # the server is shutting down: the job resumes on the next start
            self._sweep(job.output.output_path)
            self._finish(name, STOPPED, None)
            return
        self._finish(name, COMPLETED if outcome.status == "Completed" else FAILED, outcome.failure_reason)

    def _finish_stopped(self, name: str, request: dict) -> None:
        try:
            job = parse_transform_job(request)
            self._sweep(job.output.output_path)
        except ConveyorError:
            pass
        self._finish(name, STOPPED, None)

    def _finish(self, name: str, status: str, reason: str | None) -> None:
        record = self.store.jobs.get(name)
        if record is None or record.status in (COMPLETED, FAILED, STOPPED):
            return
        if record.status == STOPPING and status == COMPLETED:
            status = STOPPED
        # The closing line goes first, so a client that sees the final status has the whole log.
        log(self.store, job_stream(name), name, f"{status}." + (f" FailureReason: {reason}" if reason else ""))
        self.store.jobs.transition(name, status, failure_reason=reason)

    def _sweep(self, output_path: str) -> int:
        try:
            return self.settings.storage_for(output_path).sweep_temporaries(output_path)
        except StorageError:
            return 0

