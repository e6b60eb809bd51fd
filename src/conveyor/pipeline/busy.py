"""How long the model was busy: the union of the intervals during which at least one model call
was in progress, so that MaxConcurrentTransforms calls that overlap count once.

Divided by an instance's wall time, it says whether the model is the limit (near 1) or waits on
reading, decoding and writing (low): docs/models.md, "Reading the figures".
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class BusyMeter:
    """Busy seconds as the union of call intervals; `begin` and `end` bracket each model call,
    from any thread (two clock reads and an uncontended lock per call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0  # when the calls in flight began to overlap without a gap
        self._busy = 0.0  # closed busy intervals

    def begin(self) -> None:
        with self._lock:
            if self._in_flight == 0:
                self._since = self._clock()
            self._in_flight += 1

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy += self._clock() - self._since

    def seconds(self) -> float:
        """Busy seconds so far, the interval still open included."""
        with self._lock:
            return self._busy + (self._clock() - self._since if self._in_flight else 0.0)
