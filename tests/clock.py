"""A clock the store's tests move by hand, for leases, last-modified and start/end times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
"""When the tests' records are created; the clock starts an hour later."""


class Clock:
    """Epoch seconds that move only when the test says (`advance`, or setting `now`)."""

    def __init__(self, moment: datetime = T0 + timedelta(hours=1)) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
