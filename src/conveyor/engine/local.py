"""The local backend: InstanceCount worker processes on this machine, fed work items.

Objects are handed to whichever instance is free, so a large object does not hold the others
back. Small objects are sent a few at a time, so an instance never waits on a round trip for
its next one, and the objects it finishes are made durable as a group (one `syncfs`, not one
`fsync` each) before the job hears they are done. A worker that dies (a model past its timeout,
a crash) is reported with the item it held and replaced (`engine.instance_pool`); what becomes
of the item is the job's policy (`engine.job`), and the items queued behind it are handed back
untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

from conveyor.engine import worker as messages
from conveyor.engine.instance_pool import InstancePool, PooledInstance, PoolRun
from conveyor.engine.instance_process import InstanceProcess, stop_unused
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.storage import storage_for
from conveyor.storage.base import StorageError

DURABLE_GROUP_SECONDS = 0.05
"""How long finished items may wait to be made durable together before the job hears of them."""
DURABLE_GROUP_ITEMS = 256
LISTING_POLL_SECONDS = 0.005
"""How often the pool looks for items the listing has added, while it lists."""


@dataclass
class _Worker(PooledInstance):
    process: InstanceProcess | None = None

    @property
    def connection(self) -> Connection:
        assert self.process is not None
        return self.process.connection


@dataclass
class _Finished:
    """Items done and not yet durable, since the first of them finished."""

    items: list[tuple[WorkItem, ItemProgress]] = field(default_factory=list)
    since: float = 0.0


class LocalBackend(InstancePool):
    def __init__(self, prestarted: Sequence[InstanceProcess] = ()) -> None:
        """`prestarted`: instance processes started before the job's configuration was known
        (their start then overlaps the caller's own preparation); the first instances use them,
        and those left over are stopped by `close()` or when `run()` ends."""
        self._prestarted = {process.index: process for process in prestarted}
        self._finished = _Finished()

    def close(self) -> None:
        """Stop the prestarted processes that no job took."""
        prestarted, self._prestarted = list(self._prestarted.values()), {}
        stop_unused(prestarted)

    def _start(self, run: PoolRun, index: int) -> _Worker:
        process = self._prestarted.pop(index, None) or InstanceProcess(index)
        process.connection.send(run.config)
        return _Worker(index, process=process)

    def _send(self, instance: PooledInstance, items: list[WorkItem]) -> None:
        assert isinstance(instance, _Worker)
        instance.connection.send(items)

    def _wait(self, run: PoolRun) -> None:
        workers = [worker for worker in run.instances if isinstance(worker, _Worker) and not worker.closed]
        watched: list = [w.connection for w in workers] + [w.process.sentinel for w in workers if w.process and w.process.sentinel is not None]
        ready = wait(watched, timeout=LISTING_POLL_SECONDS if run.items.listing() else self._wait_time())
        for worker in workers:
            assert worker.process is not None
            if worker.connection in ready:
                self._drain(run, worker)
            if not worker.process.is_alive():
                self._drain(run, worker)
                worker.process.join(timeout=1)
                running = worker.process.running_items()
                worker.process.close()
                self._lost(run, worker, worker.process.exitcode, running=running)
        finished = self._finished
        if finished.items and (
            len(finished.items) >= DURABLE_GROUP_ITEMS
            or time.monotonic() - finished.since >= DURABLE_GROUP_SECONDS
            or not any(worker.items for worker in workers)  # no instance holds an item: none will join the group
        ):
            self._report_finished(run)

    def _wait_time(self) -> float:
        if not self._finished.items:
            return 0.2
        return max(0.0, self._finished.since + DURABLE_GROUP_SECONDS - time.monotonic())

    def _drain(self, run: PoolRun, worker: _Worker) -> None:
        while True:
            try:
                if not worker.connection.poll():
                    return
                said = messages.received(worker.connection.recv())
            except (EOFError, OSError):
                return
            for message in said:
                self._handle(run, worker, message)

    def _done(self, run: PoolRun, item: WorkItem, progress: ItemProgress) -> None:
        if not self._finished.items:
            self._finished.since = time.monotonic()
        self._finished.items.append((item, progress))

    def _report_finished(self, run: PoolRun) -> None:
        """Make the finished items' outputs durable as a group, then tell the job they are done."""
        finished, self._finished = self._finished.items, _Finished()
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
        run.events.on_items_done(finished)

    def _shutdown(self, run: PoolRun, *, graceful: bool) -> None:
        """Stop every instance: told to close its model (`graceful`), or killed. What a closing
        instance still says (a container's last output lines) reaches the job log."""
        try:
            self._report_finished(run)
        finally:
            self._stop_workers(run, graceful=graceful)
            self.close()

    def _stop_workers(self, run: PoolRun, *, graceful: bool) -> None:
        workers = [worker for worker in run.instances if isinstance(worker, _Worker) and worker.process is not None]
        for worker in workers:
            assert worker.process is not None
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
            assert worker.process is not None
            worker.process.join(timeout=5 if graceful else 1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if not worker.closed:
                if graceful:
                    self._drain(run, worker)
                worker.process.close()
