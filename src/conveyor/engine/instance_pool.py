"""What every backend does with its instances, whatever they run on: hand out items, read what
the instances say, and pin a lost instance's items on the right cause.

An instance is an `engine.worker` process (on this machine for the local backend, beside a Ray
actor for the Ray backend) that speaks the messages of `engine.worker`. A backend built on
`InstancePool` supplies how an instance is started, how items reach it, and how the pool waits
for what instances say; the dispatch, the matching of messages to items and the crash
attribution below are the same for every backend.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass, field

from conveyor.engine import worker as messages
from conveyor.engine.backend import Backend, InstanceEvents, InstanceLost, ItemSource, JobStartFailed
from conveyor.engine.instance import InstanceConfig
from conveyor.pipeline.work_item import ItemProgress, WorkItem

QUEUED_SECONDS = 0.05
"""About how much work an instance holds (the item it transforms and those queued behind it),
from how long its items have been taking: enough that it never waits on the pool, which sends
more as reports of finished items arrive, and little enough that the instances of a job end
together. Before an instance's first item ends it holds `2 × at_once`."""
QUEUED_ITEMS = 512
"""The most items an instance holds at once, however fast they go."""
QUEUED_BYTES = 1 << 20
"""An instance is sent another item only while those it holds are smaller than this together,
so that large objects still go to whichever instance is free first."""


@dataclass
class PooledInstance:
    """One instance as the pool sees it: what it was sent and has not finished."""

    index: int
    ready: bool = False
    items: deque[WorkItem] = field(default_factory=deque)  # sent, not finished, in the order sent
    at_once: int = 1  # it transforms at most this many of `items` at once: the first ones
    timed_out: messages.TimedOut | None = None
    closed: bool = False
    held_bytes: int = 0  # the sizes of `items`, together
    item_seconds: float | None = None  # how long its items take, a moving average over those that ended

    def wants_more(self) -> bool:
        if not self.items:
            return True
        most = 2 * self.at_once  # at least enough for an instance that batches across objects
        if self.item_seconds is not None:
            most = max(most, min(QUEUED_ITEMS, int(QUEUED_SECONDS * self.at_once / max(self.item_seconds, 1e-6))))
        return len(self.items) < most and self.held_bytes < QUEUED_BYTES * self.at_once

    def timed(self, seconds: float) -> None:
        """An item ended after `seconds` of transforming."""
        self.item_seconds = seconds if self.item_seconds is None else 0.9 * self.item_seconds + 0.1 * seconds

    def hold(self, item: WorkItem) -> None:
        self.items.append(item)
        self.held_bytes += item.size

    def finished(self, item_id: int) -> WorkItem | None:
        """Take a finished item out of those the instance holds (with several at once, items may
        finish out of order)."""
        for item in self.items:
            if item.item_id == item_id:
                self.items.remove(item)
                self.held_bytes -= item.size
                return item
        return None

    def holding(self, item_id: int) -> WorkItem | None:
        return next((item for item in self.items if item.item_id == item_id), None)


@dataclass
class PoolRun:
    config: InstanceConfig
    items: ItemSource
    events: InstanceEvents
    instances: list[PooledInstance] = field(default_factory=list)
    exhausted: bool = False


class InstancePool(Backend):
    """A backend whose instances are `engine.worker` processes, reached through `_send` and
    heard through `_wait`, which passes each message to `_handle` and each death to `_lost`."""

    def run(self, config: InstanceConfig, instance_count: int, items: ItemSource, events: InstanceEvents, stop: threading.Event) -> None:
        run = PoolRun(config, items, events)
        finished = False  # every item done: the instances are told to stop and close their models
        try:
            run.instances = [self._start(run, index) for index in range(instance_count)]
            while not stop.is_set():
                self._dispatch(run)
                # Done once no instance holds an item, and the model has loaded somewhere (so that a
                # model that cannot load fails the job); an instance still loading is not waited for.
                open_instances = [instance for instance in run.instances if not instance.closed]
                loaded = any(instance.ready for instance in open_instances)
                if run.exhausted and loaded and not any(instance.items for instance in open_instances):
                    finished = True
                    return
                self._wait(run)
        finally:
            self._shutdown(run, graceful=finished)  # a Stop, a Ctrl-C or an error: killed at once

    @abstractmethod
    def _start(self, run: PoolRun, index: int) -> PooledInstance:
        """Start instance number `index` (0-based) with `run.config`."""

    @abstractmethod
    def _send(self, instance: PooledInstance, items: list[WorkItem]) -> None:
        """Send items to the instance, in order, as one message where it can."""

    @abstractmethod
    def _wait(self, run: PoolRun) -> None:
        """Wait a little for the instances; pass what they said to `_handle`, and their deaths to `_lost`."""

    @abstractmethod
    def _shutdown(self, run: PoolRun, *, graceful: bool) -> None:
        """Stop every instance: told to close its model (`graceful`), or killed."""

    def _done(self, run: PoolRun, item: WorkItem, progress: ItemProgress) -> None:
        """An item's output is written; the local backend first makes a group of them durable."""
        run.events.on_items_done([(item, progress)])

    def _dispatch(self, run: PoolRun) -> None:
        for instance in run.instances:
            sending: list[WorkItem] = []
            while not (instance.closed or not instance.ready or run.exhausted) and instance.wants_more():
                item = run.items.take()
                if item is None:
                    if run.items.listing():
                        break  # more may come: the pool looks again soon
                    item = run.items.take()  # the listing may have added its last items and ended since the first look
                    if item is None:
                        run.exhausted = True
                        break
                instance.hold(item)
                sending.append(item)
            if sending:
                self._send(instance, sending)

    def _handle(self, run: PoolRun, instance: PooledInstance, message: object) -> None:
        events = run.events
        # The most frequent first: with many small objects this runs for each of them.
        if isinstance(message, messages.Done):
            if item := instance.finished(message.progress.item_id):
                instance.timed(message.seconds)
                self._done(run, item, message.progress)
        elif isinstance(message, messages.Progress):
            if item := instance.holding(message.progress.item_id):
                events.on_progress(item, message.progress)
        elif isinstance(message, messages.Figures):
            events.on_figures(instance.index, message.totals)
        elif isinstance(message, messages.Failed):
            if item := instance.finished(message.item_id):
                events.on_item_failed(item, message.reason, message.progress.failed_records)
        elif isinstance(message, messages.Log):
            events.on_log(instance.index, message.message, data_log=message.data_log)
        elif isinstance(message, messages.TimedOut):
            instance.timed_out = message
        elif isinstance(message, messages.Ready):
            instance.ready = True
            instance.at_once = message.items_at_once
            events.on_started(instance.index, message.resolved)
        elif isinstance(message, messages.StartFailed):
            raise JobStartFailed(message.reason)

    def _lost(
        self,
        run: PoolRun,
        instance: PooledInstance,
        exit_code: int | None,
        *,
        running: set[int] | None = None,
        while_loading_fails_job: bool = True,
    ) -> None:
        """The instance died (`exit_code` None: the machine or actor under it was lost): report
        its items and start its replacement. `running`: the ids of the items it was transforming
        (engine.running_items), where they could be read. An instance that exits while loading
        the model fails the job, unless what died was not the model (`while_loading_fails_job` False)."""
        instance.closed = True
        if not instance.ready and not instance.items and instance.timed_out is None and while_loading_fails_job:
            raise JobStartFailed(f"Instance {instance.index + 1} exited with code {exit_code} while loading the model.")
        # The items it was transforming are charged with the loss, and the next instance runs
        # each of them alone (engine.worker), so that a crash is pinned on its cause; the others
        # it held had not started, or had finished without their report reaching us, and go
        # back as they are. Where the table could not be read (its machine lost), the instance
        # had started at most the first `at_once` of its items, in order. A payload past its
        # timeout names its item.
        held = list(instance.items)
        if running is not None:
            started, queued = [item for item in held if item.item_id in running], [item for item in held if item.item_id not in running]
        else:
            started, queued = held[: instance.at_once], held[instance.at_once :]
        instance.items.clear()
        instance.held_bytes = 0
        timed_out = instance.timed_out
        culprit = next((item for item in started if timed_out and item.item_id == timed_out.item_id), None)
        if culprit is not None:
            queued = [item for item in started if item is not culprit] + queued
            started = [culprit]
        for item in reversed(queued):
            run.items.give_back(item)
        lost = InstanceLost(
            instance=instance.index,
            exit_code=exit_code,
            timed_out_payload=timed_out.payload_index if culprit is not None and timed_out else None,
            timeout_seconds=timed_out.timeout if culprit is not None and timed_out else None,
        )
        if not started:
            run.events.on_instance_lost(None, lost)
        for item in started:
            run.events.on_instance_lost(item, lost)
        run.exhausted = False  # items may have been handed back
        run.instances[run.instances.index(instance)] = self._start(run, instance.index)
