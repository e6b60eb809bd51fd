"""The local backend: InstanceCount worker processes on this machine, fed work items one by one.

Objects are handed to whichever instance is free, so a large object does not hold the others
back. A worker that dies (a model past its timeout, a crash) is reported with the item it held
and replaced; what becomes of the item is the job's policy (`engine.job`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from conveyor.engine import worker as messages
from conveyor.engine.backend import Backend, InstanceEvents, InstanceLost, ItemSource, JobStartFailed
from conveyor.engine.instance import InstanceConfig
from conveyor.pipeline.work_item import WorkItem


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    connection: Connection
    ready: bool = False
    item: WorkItem | None = None
    timed_out: messages.TimedOut | None = None
    closed: bool = False


@dataclass
class _Run:
    config: InstanceConfig
    items: ItemSource
    events: InstanceEvents
    workers: list[_Worker] = field(default_factory=list)
    exhausted: bool = False


class LocalBackend(Backend):
    def __init__(self, start_method: str = "spawn") -> None:
        self._context: Any = multiprocessing.get_context(start_method)  # typeshed's BaseContext lacks Process

    def run(self, config: InstanceConfig, instance_count: int, items: ItemSource, events: InstanceEvents, stop: threading.Event) -> None:
        run = _Run(config, items, events)
        try:
            run.workers = [self._start(config, index) for index in range(instance_count)]
            while not stop.is_set():
                self._dispatch(run)
                busy = [w for w in run.workers if not w.closed and (w.item is not None or not w.ready)]
                if run.exhausted and not busy:
                    return
                ready = wait([w.connection for w in run.workers if not w.closed] + [w.process.sentinel for w in run.workers if not w.closed], timeout=0.2)
                for worker in list(run.workers):
                    if worker.closed:
                        continue
                    if worker.connection in ready:
                        self._drain(run, worker)
                    if worker.process.sentinel in ready or not worker.process.is_alive():
                        self._drain(run, worker)
                        self._replace_dead(run, worker)
        finally:
            self._shutdown(run.workers, graceful=not stop.is_set())

    def _start(self, config: InstanceConfig, index: int) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=messages.worker_main, args=(config, child_end, os.getpid(), index), name=f"conveyor-instance-{index + 1}",
            daemon=False,  # an instance may start processes of its own (decode workers); it dies with us all the same
        )
        process.start()
        child_end.close()
        return _Worker(index, process, parent_end)

    def _dispatch(self, run: _Run) -> None:
        for worker in run.workers:
            if worker.closed or not worker.ready or worker.item is not None or run.exhausted:
                continue
            item = run.items.take()
            if item is None:
                run.exhausted = True
                return
            worker.item = item
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
        elif isinstance(message, messages.Progress) and worker.item is not None:
            events.on_progress(worker.item, message.progress)
        elif isinstance(message, messages.Done) and worker.item is not None:
            item, worker.item = worker.item, None
            events.on_item_done(item, message.progress)
        elif isinstance(message, messages.Failed) and worker.item is not None:
            item, worker.item = worker.item, None
            events.on_item_failed(item, message.reason, message.progress.failed_records)
        elif isinstance(message, messages.TimedOut):
            worker.timed_out = message
        elif isinstance(message, messages.Log):
            events.on_log(worker.index, message.message, data_log=message.data_log)

    def _replace_dead(self, run: _Run, worker: _Worker) -> None:
        worker.closed = True
        worker.connection.close()
        worker.process.join(timeout=1)
        if not worker.ready and worker.item is None and worker.timed_out is None:
            raise JobStartFailed(f"Instance {worker.index + 1} exited with code {worker.process.exitcode} while loading the model.")
        timed_out = worker.timed_out
        lost = InstanceLost(
            instance=worker.index,
            exit_code=worker.process.exitcode,
            timed_out_payload=timed_out.payload_index if timed_out else None,
            timeout_seconds=timed_out.timeout if timed_out else None,
        )
        run.events.on_instance_lost(worker.item, lost)
        run.exhausted = False  # the item may have been handed back
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
                worker.connection.close()
