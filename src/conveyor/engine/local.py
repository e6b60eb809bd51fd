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
    items: deque[WorkItem] = field(default_factory=deque)  # sent, not finished, in the order sent
    at_once: int = 1  # it transforms at most this many of `items` at once: the first ones
    timed_out: messages.TimedOut | None = None
    closed: bool = False

    @property
    def connection(self) -> Connection:
        return self.process.connection

    def wants_more(self) -> bool:
        if not self.items:
            return True
        most = max(QUEUED_ITEMS, 2 * self.at_once)  # enough for an instance that batches across objects
        return len(self.items) < most and sum(item.size for item in self.items) < QUEUED_BYTES * self.at_once

    def finished(self, item_id: int) -> WorkItem | None:
        """Take a finished item out of those the instance holds (with several at once, items may
        finish out of order)."""
        for item in self.items:
            if item.item_id == item_id:
                self.items.remove(item)
                return item
        return None

    def holding(self, item_id: int) -> WorkItem | None:
        return next((item for item in self.items if item.item_id == item_id), None)


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
        finished = False  # every item done: the instances are told to stop and close their models
        try:
            run.workers = [self._start(config, index) for index in range(instance_count)]
            while not stop.is_set():
                self._dispatch(run)
                busy = [w for w in run.workers if not w.closed and (w.items or not w.ready)]
                if run.exhausted and not busy:
                    finished = True
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
                self._shutdown(run, graceful=finished)  # a Stop, a Ctrl-C or an error: killed at once
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
            worker.at_once = message.items_at_once
            events.on_started(worker.index, message.resolved)
        elif isinstance(message, messages.StartFailed):
            raise JobStartFailed(message.reason)
        elif isinstance(message, messages.Progress) and (item := worker.holding(message.progress.item_id)):
            events.on_progress(item, message.progress)
        elif isinstance(message, messages.Done) and (item := worker.finished(message.progress.item_id)):
            if not run.finished:
                run.finished_since = time.monotonic()
            run.finished.append((item, message.progress))
        elif isinstance(message, messages.Failed) and (item := worker.finished(message.item_id)):
            events.on_item_failed(item, message.reason, message.progress.failed_records)
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
        # The instance had started at most the first `at_once` of its items, in order; the rest
        # never started and go back as they are. A payload past its timeout names its item;
        # otherwise each item that may have been running is charged with the loss, and the
        # next instance runs it alone (engine.worker), so that a crash is pinned on its cause.
        started, queued = list(worker.items)[: worker.at_once], list(worker.items)[worker.at_once :]
        worker.items.clear()
        timed_out = worker.timed_out
        culprit = next((item for item in started if timed_out and item.item_id == timed_out.item_id), None)
        if culprit is not None:
            queued = [item for item in started if item is not culprit] + queued
            started = [culprit]
        for item in reversed(queued):
            run.items.give_back(item)
        lost = InstanceLost(
            instance=worker.index,
            exit_code=worker.process.exitcode,
            timed_out_payload=timed_out.payload_index if culprit is not None and timed_out else None,
            timeout_seconds=timed_out.timeout if culprit is not None and timed_out else None,
        )
        if not started:
            run.events.on_instance_lost(None, lost)
        for item in started:
            run.events.on_instance_lost(item, lost)
        run.exhausted = False  # items may have been handed back
        replacement = self._start(run.config, worker.index)
        run.workers[run.workers.index(worker)] = replacement

    def _shutdown(self, run: _Run, *, graceful: bool) -> None:
        """Stop every instance: told to close its model (`graceful`), or killed. What a closing
        instance still says (a container's last output lines) reaches the job log."""
        workers = run.workers
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
                if graceful:
                    self._drain(run, worker)
                worker.process.close()
