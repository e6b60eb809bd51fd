"""A child process that ends when its parent does: an instance with the command or server that
started it, a decode worker with its instance. A child left running after its parent died
would go on writing outputs nobody waits for."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this process when its parent dies (PR_SET_PDEATHSIG); where that is not
    available, a thread watches the parent instead. Exits at once if the parent is gone already."""
    try:
        signalled = ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL) == 0  # PR_SET_PDEATHSIG
    except OSError:
        signalled = False
    if os.getppid() != parent_pid:  # it died before the signal was asked for
        os._exit(1)
    if signalled:
        return

    def check() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=check, name="parent-check", daemon=True).start()
