"""The local backend: InstanceCount worker processes on this machine, fed work items one by one.

Objects are handed to whichever instance is free, so a large object does not hold the others
back. A worker that dies (a model past its timeout, a crash) is replaced and its object handed
out again, with the invocations it already spent counted against InvocationsMaxRetries.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from conveyor.engine import worker as messages
from conveyor.engine.backend import Backend, ItemSource, JobListener, JobStartFailed
from conveyor.engine.instance import InstanceConfig
from conveyor.pipeline.work_item import WorkItem

MAX_CRASHES_PER_ITEM = 3


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
    listener: JobListener
    workers: list[_Worker] = field(default_factory=list)
    started_once: bool = False
    crashes: dict[int, int] = field(default_factory=dict)
    exhausted: bool = False


class LocalBackend(Backend):
    def __init__(self, start_method: str = "spawn") -> None:
        self._context = multiprocessing.get_context(start_method)

    def run(self, config: InstanceConfig, instance_count: int, items: ItemSource, listener: JobListener, stop: threading.Event) -> None:
        run = _Run(config, items, listener)
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
            target=messages.worker_main, args=(config, child_end, os.getpid(), index), name=f"conveyor-instance-{index + 1}", daemon=True
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
        listener = run.listener
        if isinstance(message, messages.Ready):
            worker.ready = True
            if not run.started_once:
                run.started_once = True
                listener.on_resolved(message.resolved)
            listener.on_log(worker.index, f"Instance {worker.index + 1} started: {message.resolved.log_line()}")
        elif isinstance(message, messages.StartFailed):
            raise JobStartFailed(message.reason)
        elif isinstance(message, messages.Progress) and worker.item is not None:
            listener.on_progress(worker.item, message.progress)
        elif isinstance(message, messages.Done) and worker.item is not None:
            item, worker.item = worker.item, None
            listener.on_item_done(item, message.progress)
        elif isinstance(message, messages.Failed) and worker.item is not None:
            item, worker.item = worker.item, None
            listener.on_item_failed(item, message.reason)
        elif isinstance(message, messages.TimedOut):
            worker.timed_out = message
        elif isinstance(message, messages.Log):
            listener.on_log(worker.index, message.message, data_log=message.data_log)

    def _replace_dead(self, run: _Run, worker: _Worker) -> None:
        worker.closed = True
        worker.connection.close()
        worker.process.join(timeout=1)
        item = worker.item
        if not worker.ready and item is None and worker.timed_out is None:
            raise JobStartFailed(f"Instance {worker.index + 1} exited with code {worker.process.exitcode} while loading the model.")
        if item is not None:
            if worker.timed_out is not None:
                used = dict(item.attempts_used)
                used[worker.timed_out.payload_index] = used.get(worker.timed_out.payload_index, 0) + 1
                item = replace(item, attempts_used=used)
                run.listener.on_log(
                    worker.index,
                    f"{item.input_uri}: payload {worker.timed_out.payload_index + 1} took longer than "
                    f"InvocationsTimeoutInSeconds={worker.timed_out.timeout:g}; restarting instance {worker.index + 1}",
                    data_log=True,
                )
            else:
                crashes = run.crashes.get(item.item_id, 0) + 1
                run.crashes[item.item_id] = crashes
                run.listener.on_log(worker.index, f"Instance {worker.index + 1} exited with code {worker.process.exitcode} while transforming {item.input_uri}")
                if crashes >= MAX_CRASHES_PER_ITEM:
                    run.listener.on_item_failed(item, f"{item.input_uri}: Unable to get response from the model: its instance exited with code {worker.process.exitcode} {crashes} times")
                    item = None
            if item is not None:
                run.items.give_back(item)
                run.exhausted = False
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
