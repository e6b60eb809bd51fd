"""The seam between a job and where its instances run (local processes today, Ray actors next).

A backend starts `instance_count` instances from an `InstanceConfig`, feeds them work items from
an `ItemSource`, and reports what happens to a `JobListener`. It returns when every item is
done or failed, or when `stop` is set.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from typing import Iterable, Protocol

from conveyor.engine.instance import InstanceConfig, ResolvedParameters
from conveyor.pipeline.work_item import ItemProgress, WorkItem


class JobStartFailed(Exception):
    """No instance could start (the model failed to load); the message is the job's FailureReason."""


class ItemSource(Protocol):
    def take(self) -> WorkItem | None:
        """The next item to transform, or None when none is left to hand out."""

    def give_back(self, item: WorkItem) -> None:
        """An item whose instance died before finishing it; it will be handed out again."""


class QueueSource:
    """Work items from a list, in order."""

    def __init__(self, items: Iterable[WorkItem]) -> None:
        self._items = deque(items)
        self._lock = threading.Lock()

    def take(self) -> WorkItem | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def give_back(self, item: WorkItem) -> None:
        with self._lock:
            self._items.appendleft(item)


class JobListener:
    """Receives a job's events; the default does nothing. Called from the backend's thread."""

    def on_resolved(self, resolved: ResolvedParameters) -> None: ...

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None: ...

    def on_item_done(self, item: WorkItem, progress: ItemProgress) -> None: ...

    def on_item_failed(self, item: WorkItem, reason: str) -> None: ...

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None: ...


class Backend(ABC):
    @abstractmethod
    def run(
        self,
        config: InstanceConfig,
        instance_count: int,
        items: ItemSource,
        listener: JobListener,
        stop: threading.Event,
    ) -> None: ...
