"""Failed sign-ins, throttled per client address and over the whole server.

Each sign-in already fails slowly (half a second), but many clients in parallel still guess
quickly. Failures are counted over a sliding minute: past the limit for one address, that
address may not try again until its oldest failure leaves the window; past the overall limit,
no address may. A throttled attempt is refused before its keys are checked, so it teaches an
attacker nothing. Memory is bounded: only failures inside the window are kept, and no more
than the overall limit of them are ever recorded.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

WINDOW_SECONDS = 60.0
FAILURES_PER_ADDRESS = 5
FAILURES_OVERALL = 30


class SignInThrottle:
    """Counts failed sign-ins; says how long a client must wait before it may try again."""

    def __init__(
        self, *, per_address: int = FAILURES_PER_ADDRESS, overall: int = FAILURES_OVERALL,
        window_seconds: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_address = per_address
        self.overall = overall
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: deque[tuple[float, str]] = deque()  # (when, address), oldest first

    def refusal(self, address: str) -> str | None:
        """Why `address` may not try now, with how long to wait; None when it may."""
        now = self._clock()
        while self._failures and self._failures[0][0] <= now - self.window_seconds:
            self._failures.popleft()
        if len(self._failures) >= self.overall:
            wait = self._failures[0][0] + self.window_seconds - now
            return f"Too many failed sign-ins to this server ({self.overall} a minute): try again in {_seconds(wait)}."
        mine = [when for when, failed in self._failures if failed == address]
        if len(mine) >= self.per_address:
            wait = mine[-self.per_address] + self.window_seconds - now
            return f"Too many failed sign-ins from {address} ({self.per_address} a minute): try again in {_seconds(wait)}."
        return None

    def failed(self, address: str) -> None:
        self._failures.append((self._clock(), address))


def _seconds(wait: float) -> str:
    whole = max(1, math.ceil(wait))
    return f"{whole} second{'s' if whole != 1 else ''}"
