"""One `conveyor server` per state directory, unless several share it on purpose.

Leases already keep a work item from running twice, but each server applies its own capacity,
so two servers on one home run twice the instances the machine was sized for. The server holds
an advisory lock on `<home>/server.lock` for as long as it lives (the kernel drops it when the
process dies, even by kill -9) and writes its process id and endpoint there for the message
that refuses a second one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "server.lock"


class HomeInUse(Exception):
    """Another server holds the home."""


class ServerLock:
    """The lock one server holds on its home: exclusive, or shared with `--shared-home`."""

    def __init__(self, home: Path, *, shared: bool) -> None:
        self.path = home / LOCK_FILE
        self.shared = shared
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._descriptor)
            if shared:
                raise HomeInUse(f"{home} is served by {holder}, which was not started with --shared-home; stop it first, or use another --home") from None
            raise HomeInUse(
                f"{home} is already served by {holder}; stop it first, use another --home, or pass --shared-home "
                f"to every server that shares this home on purpose (each applies its own --capacity)"
            ) from None

    def record(self, endpoint: str) -> None:
        """Note this process and where it listens, for the message that refuses the next one."""
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, f"{os.getpid()} {endpoint}\n".encode(), 0)

    def release(self) -> None:
        os.close(self._descriptor)

    def _holder(self) -> str:
        try:
            pid, _, endpoint = os.pread(self._descriptor, 4096, 0).decode("utf-8", "replace").strip().partition(" ")
        except OSError:
            pid = endpoint = ""
        if not pid.isdigit():
            return "another conveyor server (still starting)"
        return f"conveyor server process {pid} at {endpoint}"
