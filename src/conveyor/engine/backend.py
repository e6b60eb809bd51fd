"""The seam between a job and where its instances run (local processes today, Ray actors next).

A backend only runs instances: it starts `instance_count` of them from an `InstanceConfig`,
hands each free one the next item from an `ItemSource`, and reports what happened to
`InstanceEvents`: an instance started, an item's progress, items done or an item failed, an instance
lost with the item it held, an instance's running figures. What becomes of a lost instance's
item (handed out again, or failed) is the job's attempt policy, in `engine.job`; a backend never
decides it, so every backend applies the same one.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from conveyor.engine.figures import InstanceTotals
from conveyor.engine.instance import InstanceConfig, ResolvedParameters
from conveyor.pipeline.bisect import FailedRecord
from conveyor.pipeline.work_item import ItemProgress, WorkItem


class JobStartFailed(Exception):
    """No instance could start (the model failed to load); the message is the job's FailureReason."""


class ItemSource(Protocol):
    def take(self) -> WorkItem | None:
        """The next item to transform, or None when none is left to hand out now."""

    def listing(self) -> bool:
        """Whether more items may come (the inputs are still being listed) when `take` has none."""

    def give_back(self, item: WorkItem) -> None:
        """An item taken but never started (it waited behind a lost instance's item): hand it
        out again as it is."""


@dataclass(frozen=True)
class InstanceLost:
    """An instance died while it held an item (or while it was idle, `item` None)."""

    instance: int  # 0-based
    exit_code: int | None
    timed_out_payload: int | None = None  # the payload that ran past InvocationsTimeoutInSeconds, if that was why
    timeout_seconds: float | None = None


class InstanceEvents:
    """What a backend reports, from its own thread; the default ignores everything."""

    def on_started(self, instance: int, resolved: ResolvedParameters) -> None: ...

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None: ...

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        """Items whose outputs are written (durable, where the backend groups that), in the order
        they finished: a group at a time, so that many small objects cost the job one update
        of its ledger and its listener per group rather than per object."""

    def on_item_failed(self, item: WorkItem, reason: str, failed_records: list[FailedRecord] | None = None) -> None:
        """`failed_records`: the bad records the item reported before it failed, in a job that tolerates some."""

    def on_instance_lost(self, item: WorkItem | None, lost: InstanceLost) -> None:
        """The instance is being replaced; `item` must be handed out again or failed by the receiver."""

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None: ...

    def on_figures(self, instance: int, totals: InstanceTotals) -> None:
        """The instance's running totals since it began transforming (`engine.figures`)."""


class Backend(ABC):
    @abstractmethod
    def run(
        self,
        config: InstanceConfig,
        instance_count: int,
        items: ItemSource,
        events: InstanceEvents,
        stop: threading.Event,
    ) -> None:
        """Run instances until `items` has nothing left and no instance holds an item, or until
        `stop` is set; raises `JobStartFailed` when the model cannot be loaded."""
