"""An instance's process, started by the local backend: a fresh interpreter with the parent's
`sys.path`, its end of a pipe and the table of the items it is transforming
(engine.running_items).

Not `multiprocessing`: its spawn start leaves a resource-tracker process that outlives the
command, and re-imports the command's main module. This module imports only the standard
library, so a command can start its instances before it imports the rest of Conveyor, and the
two starts overlap.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from conveyor.engine.running_items import RunningItems

_BOOTSTRAP = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from conveyor.engine.worker import worker_main; worker_main(sys.argv[2:])"


class InstanceProcess:
    """The process of instance number `index` (0-based). Its first message must be its
    InstanceConfig, or None when it is not needed after all."""

    def __init__(self, index: int) -> None:
        self.index = index
        parent_end, child_end = socket.socketpair()
        self.running = RunningItems.create()
        with child_end:
            self.popen = subprocess.Popen(
                [
                    sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path),
                    str(child_end.fileno()), str(os.getpid()), str(index), str(self.running.descriptor),
                ],
                pass_fds=[child_end.fileno(), self.running.descriptor],
                stdin=subprocess.DEVNULL,
            )
        self.connection = Connection(parent_end.detach())
        self.sentinel: int | None = os.pidfd_open(self.popen.pid) if hasattr(os, "pidfd_open") else None  # readable once it exits

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()

    def is_alive(self) -> bool:
        """Read off its pidfd where there is one: `Popen.poll` takes a lock that a Ctrl-C landing
        at the wrong moment leaves held, after which waiting for the process never returns."""
        if self.sentinel is not None:
            return not select.select([self.sentinel], [], [], 0)[0]
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.is_alive():
            try:
                os.kill(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        """Wait for it to exit, at most `timeout` seconds, and reap it once it has."""
        if self.sentinel is not None and not select.select([self.sentinel], [], [], timeout)[0]:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def running_items(self) -> set[int]:
        """The ids of the items it was transforming when it exited."""
        return self.running.item_ids()

    def close(self) -> None:
        """Release the pipe, the table and the sentinel; the process must have been joined."""
        self.connection.close()
        self.running.close()
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


def stop_unused(processes: list[InstanceProcess]) -> None:
    """Stop instance processes that no job took: told they are not needed, then reaped."""
    for process in processes:
        try:
            process.connection.send(None)
        except OSError:
            pass
    for process in processes:
        process.join(timeout=5)
        process.kill()
        process.join()
        process.close()
