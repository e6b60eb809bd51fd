"""Which items an instance process is transforming, in memory that its parent reads after it dies.

An instance reports finished items in groups, not one message each (engine.worker), so when it
dies its parent cannot tell from the messages alone which of the items it held had finished,
which was running, and which had not started. The instance keeps this table up to date instead:
an item's id is in it from the moment the item starts until it has finished. After a crash the
parent charges the loss to the items in the table alone; every other item it held goes back
untouched, its output (if any) written again by the next instance (engine.instance_pool).

The table is a memory file (`memfd_create`, or an unlinked temporary file where there is none)
that the parent creates and the instance inherits; each entry is one aligned 8-byte word, which
a process killed at any instant leaves either written or not.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading

SLOTS = 8192
"""The most items an instance transforms at once: twice the largest BATCH_SIZE (runtimes.python_handler)."""
_EMPTY = 0  # entries hold item id + 1


class RunningItems:
    """The table over a file descriptor: `create()` in the parent, `RunningItems(fd)` in the instance."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self._map = mmap.mmap(descriptor, SLOTS * 8)
        self._entries = memoryview(self._map).cast("q")
        self._free = list(range(SLOTS - 1, -1, -1))
        self._lock = threading.Lock()  # items of a batching handler start and end on several threads

    @classmethod
    def create(cls) -> "RunningItems":
        if hasattr(os, "memfd_create"):
            descriptor = os.memfd_create("conveyor-running-items", os.MFD_CLOEXEC)
        else:
            descriptor, path = tempfile.mkstemp(prefix="conveyor-running-items-")
            os.unlink(path)
        os.ftruncate(descriptor, SLOTS * 8)
        return cls(descriptor)

    def begin(self, item_id: int) -> int:
        """Enter an item that starts; the slot to pass to `end`."""
        with self._lock:
            slot = self._free.pop()
        self._entries[slot] = item_id + 1
        return slot

    def end(self, slot: int) -> None:
        """The item in `slot` has finished, and its report is on its way."""
        self._entries[slot] = _EMPTY
        with self._lock:
            self._free.append(slot)

    def item_ids(self) -> set[int]:
        return {entry - 1 for entry in self._entries if entry != _EMPTY}

    def close(self) -> None:
        if self._map.closed:
            return
        self._entries.release()
        self._map.close()
        os.close(self.descriptor)
