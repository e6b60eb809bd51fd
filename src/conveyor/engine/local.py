"""The local backend: InstanceCount worker processes on this machine, fed work items.

Objects are handed to whichever instance is free, so a large object does not hold the others
back. Small objects are sent a few at a time, so an instance never waits on a round trip for
its next one, and the objects it finishes are made durable as a group (one `syncfs`, not one
`fsync` each) before the job hears they are done. A worker that dies (a model past its timeout,
a crash) is reported with the item it held and replaced; what becomes of the item is the job's
policy (`engine.job`), and the items queued behind it are handed back untouched.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

from conveyor.engine import worker as messages
from conveyor.engine.backend import Backend, InstanceEvents, InstanceLost, ItemSource, JobStartFailed
from conveyor.engine.instance import InstanceConfig
from conveyor.engine.instance_process import InstanceProcess
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.storage import storage_for
from conveyor.storage.base import StorageError

QUEUED_ITEMS = 32
"""The most items an instance holds at once (the one it transforms and those queued behind it)."""
QUEUED_BYTES = 1 << 20
"""An instance is sent another item only while those it holds are smaller than this together,
so that large objects still go to whichever instance is free first."""
DURABLE_GROUP_SECONDS = 0.05
"""How long finished items may wait to be made durable together before the job hears of them."""
DURABLE_GROUP_ITEMS = 256

@dataclass
class _Worker:
    index: int
    process: InstanceProcess
    ready: bool = False
    items: deque[WorkItem] = field(default_factory=deque)  # sent, not finished; the first is being transformed
    timed_out: messages.TimedOut | None = None
    closed: bool = False

    @property
    def connection(self) -> Connection:
        return self.process.connection

    def wants_more(self) -> bool:
        if not self.items:
            return True
        return len(self.items) < QUEUED_ITEMS and sum(item.size for item in self.items) < QUEUED_BYTES


@dataclass
class _Run:
    config: InstanceConfig
    items: ItemSource
    events: InstanceEvents
    workers: list[_Worker] = field(default_factory=list)
    exhausted: bool = False
    finished: list[tuple[WorkItem, ItemProgress]] = field(default_factory=list)  # done, not yet durable
    finished_since: float = 0.0


class LocalBackend(Backend):
    def __init__(self, prestarted: Sequence[InstanceProcess] = ()) -> None:
        """`prestarted`: instance processes started before the job's configuration was known
        (their start then overlaps the caller's own preparation); the first instances use them,
        and those left over are stopped by `close()` or when `run()` ends."""
        self._prestarted = {process.index: process for process in prestarted}

    def close(self) -> None:
        """Stop the prestarted processes that no job took."""
        prestarted, self._prestarted = list(self._prestarted.values()), {}
        for process in prestarted:
            try:
                process.connection.send(None)
            except OSError:
                pass
        for process in prestarted:
            process.join(timeout=5)
            process.kill()
            process.join()
            process.close()

    def run(self, config: InstanceConfig, instance_count: int, items: ItemSource, events: InstanceEvents, stop: threading.Event) -> None:
        run = _Run(config, items, events)
        try:
            run.workers = [self._start(config, index) for index in range(instance_count)]
            while not stop.is_set():
                self._dispatch(run)
                busy = [w for w in run.workers if not w.closed and (w.items or not w.ready)]
                if run.exhausted and not busy:
                    return
                open_workers = [w for w in run.workers if not w.closed]
                watched: list = [w.connection for w in open_workers] + [w.process.sentinel for w in open_workers if w.process.sentinel is not None]
                ready = wait(watched, timeout=self._wait_time(run))
                for worker in list(run.workers):
                    if worker.closed:
                        continue
                    if worker.connection in ready:
                        self._drain(run, worker)
                    if not worker.process.is_alive():
                        self._drain(run, worker)
                        self._replace_dead(run, worker)
                if run.finished and (
                    len(run.finished) >= DURABLE_GROUP_ITEMS or time.monotonic() - run.finished_since >= DURABLE_GROUP_SECONDS
                ):
                    self._report_finished(run)
        finally:
            try:
                self._report_finished(run)
            finally:
                self._shutdown(run.workers, graceful=not stop.is_set())
                self.close()

    @staticmethod
    def _wait_time(run: _Run) -> float:
        if not run.finished:
            return 0.2
        return max(0.0, run.finished_since + DURABLE_GROUP_SECONDS - time.monotonic())

    def _start(self, config: InstanceConfig, index: int) -> _Worker:
        process = self._prestarted.pop(index, None) or InstanceProcess(index)
        process.connection.send(config)
        return _Worker(index, process)

    def _dispatch(self, run: _Run) -> None:
        for worker in run.workers:
            while not (worker.closed or not worker.ready or run.exhausted) and worker.wants_more():
                item = run.items.take()
                if item is None:
                    run.exhausted = True
                    return
                worker.items.append(item)
                worker.connection.send(item)

    def _drain(self, run: _Run, worker: _Worker) -> None:
        while True:
            try:
                if not worker.connection.poll():
                    return
                message = worker.connection.recv()
            except (EOFError, OSError):
                return
            self._handle(run, worker, message)

    def _handle(self, run: _Run, worker: _Worker, message: object) -> None:
        events = run.events
        if isinstance(message, messages.Ready):
            worker.ready = True
            events.on_started(worker.index, message.resolved)
        elif isinstance(message, messages.StartFailed):
            raise JobStartFailed(message.reason)
        elif isinstance(message, messages.Progress) and worker.items:
            events.on_progress(worker.items[0], message.progress)
        elif isinstance(message, messages.Done) and worker.items:
            if not run.finished:
                run.finished_since = time.monotonic()
            run.finished.append((worker.items.popleft(), message.progress))
        elif isinstance(message, messages.Failed) and worker.items:
            events.on_item_failed(worker.items.popleft(), message.reason, message.progress.failed_records)
        elif isinstance(message, messages.TimedOut):
            worker.timed_out = message
        elif isinstance(message, messages.Log):
            events.on_log(worker.index, message.message, data_log=message.data_log)
        elif isinstance(message, messages.Figures):
            events.on_figures(worker.index, message.totals)

    def _report_finished(self, run: _Run) -> None:
        """Make the finished items' outputs durable as a group, then tell the job they are done."""
        finished, run.finished = run.finished, []
        if not finished:
            return
        try:
            outputs = [item.output_uri for item, _ in finished]
            s3_options: dict[str, Any] = run.config.s3_options
            storage_for(outputs[0], **s3_options).make_durable(outputs)
        except StorageError as exc:
            for item, _ in finished:
                run.events.on_item_failed(item, str(exc))
            return
        for item, progress in finished:
            run.events.on_item_done(item, progress)

    def _replace_dead(self, run: _Run, worker: _Worker) -> None:
        worker.closed = True
        worker.process.join(timeout=1)
        worker.process.close()
        if not worker.ready and not worker.items and worker.timed_out is None:
            raise JobStartFailed(f"Instance {worker.index + 1} exited with code {worker.process.exitcode} while loading the model.")
        held = worker.items.popleft() if worker.items else None
        for queued in reversed(worker.items):  # never started: handed back as they are, in order
            run.items.give_back(queued)
        worker.items.clear()
        timed_out = worker.timed_out
        lost = InstanceLost(
            instance=worker.index,
            exit_code=worker.process.exitcode,
            timed_out_payload=timed_out.payload_index if timed_out else None,
            timeout_seconds=timed_out.timeout if timed_out else None,
        )
        run.events.on_instance_lost(held, lost)
        run.exhausted = False  # items may have been handed back
        replacement = self._start(run.config, worker.index)
        run.workers[run.workers.index(worker)] = replacement

    @staticmethod
    def _shutdown(workers: list[_Worker], *, graceful: bool) -> None:
        for worker in workers:
            if worker.closed:
                continue
            if graceful:
                try:
                    worker.connection.send(None)
                except OSError:
                    pass
            else:
                worker.process.kill()
        for worker in workers:
            worker.process.join(timeout=5 if graceful else 1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if not worker.closed:
                worker.process.close()
