"""The Ray actor that hosts one instance: an `engine.worker` process on the actor's node, the
same process the local backend runs, whose messages the actor relays to the driver.

Reusing the worker process keeps one behaviour on both backends: the model loads once per
instance, a handler's stdout and stderr reach the instance's log stream, an invocation past its
timeout ends the process with the payload named, and a crash is pinned on the item that caused
it. The worker reads its inputs and writes its outputs straight from and to storage; the driver
sends only work items (a URI and a byte range) and hears only messages, never record data.

The actor makes the outputs of a batch of finished items durable on its own node (one
`syncfs` for local files) before the driver hears they are done, as the local backend does on
its machine. The worker dies with the actor (PR_SET_PDEATHSIG), so a killed actor, or a lost
node, leaves no worker writing.

This module is imported by Ray's worker processes; it imports Ray only for the actor's
decorations, applied by `engine.ray_backend`.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import wait
from typing import Any

from conveyor.engine import worker as messages
from conveyor.engine.instance import InstanceConfig
from conveyor.engine.instance_process import InstanceProcess
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.storage import storage_for
from conveyor.storage.base import StorageError


class InstanceHost:
    """One instance's worker process, driven from the driver by three calls: `send` (items, in
    the order the driver sent them: it has one `send` in flight at a time), `receive` (what the
    worker said since, waiting a little for it), and `close`."""

    def __init__(self, index: int, config: InstanceConfig) -> None:
        self._process = InstanceProcess(index)
        self._process.connection.send(config)
        self._s3_options: dict[str, Any] = config.s3_options
        self._outputs: dict[int, str] = {}  # items sent and not finished: the output each writes
        self._reading = threading.Lock()  # one reader of the pipe at a time (`receive` and `close`)
        self._ended = False  # the worker has exited and been reaped
        self._running: set[int] | None = None  # the items it was transforming when it exited

    def send(self, items: list[WorkItem]) -> None:
        for item in items:
            self._outputs[item.item_id] = item.output_uri
        self._process.connection.send(items)

    def receive(self, wait_seconds: float) -> tuple[list[object], bool, int | None, set[int] | None]:
        """What the worker said, after waiting at most `wait_seconds` for its first message;
        whether it has exited, its exit code, and the items it was transforming then."""
        with self._reading:
            process = self._process
            if self._ended:
                return [], True, process.exitcode, self._running
            wait([process.connection] + ([process.sentinel] if process.sentinel is not None else []), timeout=wait_seconds)
            said = self._drain()
            exited = not process.is_alive()
            if exited:
                said += self._drain()
                process.join(timeout=1)
                self._running = process.running_items()
                process.close()
                self._ended = True
        return self._made_durable(said), exited, process.exitcode if exited else None, self._running if exited else None

    def close(self, wait_seconds: float) -> list[object]:
        """Tell the worker to close its model and wait for it; what it still said (a container's
        last output lines)."""
        try:
            self._process.connection.send(None)
        except OSError:
            pass
        said: list[object] = []
        with self._reading:
            process = self._process
            if not self._ended:
                process.join(timeout=wait_seconds)
                said = self._drain()
                process.kill()
                process.join()
                process.close()
                self._ended = True
        return said

    def _drain(self) -> list[object]:
        said: list[object] = []
        connection = self._process.connection
        while True:
            try:
                if not connection.poll():
                    return said
                said += messages.received(connection.recv())
            except (EOFError, OSError):
                return said

    def _made_durable(self, said: list[object]) -> list[object]:
        """`said` with the outputs of its Done items made durable first, or, where that failed,
        those items failed with the store's reason."""
        finished = [message for message in said if isinstance(message, messages.Done)]
        for message in said:
            if isinstance(message, messages.Failed):
                self._outputs.pop(message.item_id, None)
        if not finished:
            return said
        outputs = [self._outputs.pop(message.progress.item_id) for message in finished if message.progress.item_id in self._outputs]
        try:
            if outputs:
                storage_for(outputs[0], **self._s3_options).make_durable(outputs)
        except StorageError as exc:
            return [
                messages.Failed(message.progress.item_id, str(exc), ItemProgress(message.progress.item_id))
                if isinstance(message, messages.Done)
                else message
                for message in said
            ]
        return said
