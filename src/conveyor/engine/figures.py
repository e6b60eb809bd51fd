"""Figures while a job runs: records per second, and the fraction of an instance's wall time in
which at least one model call was in progress (the model's busy fraction).

An instance counts its own totals in its process (`InstanceMeter`): the records of its items'
progress, the busy seconds of its model (`pipeline.busy`, one meter for the instance) and its
wall time since it began transforming, the model's load excluded; it reports them every REPORT_INTERVAL_SECONDS and whenever it runs out of
items. The job (`JobFigures`) turns each instance's totals into rates over a recent window (the
progress bar, the console), a job log line per instance every LOG_INTERVAL_SECONDS, and the
whole run's figures at its end. Rates are taken between two reports of one instance, on its own
clock, so a report's time in transit does not bend them. How to read them: docs/models.md,
"Reading the figures".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the CLI's client commands format rates without loading the pipeline
    from conveyor.pipeline.busy import BusyMeter
    from conveyor.pipeline.work_item import ItemProgress

REPORT_INTERVAL_SECONDS = 1.0
"""How often an instance reports its totals while it transforms."""
LIVE_WINDOW_SECONDS = 10.0
"""The recent window of the live figures."""
LOG_INTERVAL_SECONDS = 30.0
"""How often the job log gets a line of each instance's figures while the job runs."""


@dataclass(frozen=True)
class InstanceTotals:
    """An instance's running totals since it began transforming."""

    records: int = 0
    busy_seconds: float = 0.0
    wall_seconds: float = 0.0

    def __add__(self, other: InstanceTotals) -> InstanceTotals:
        return InstanceTotals(self.records + other.records, self.busy_seconds + other.busy_seconds, self.wall_seconds + other.wall_seconds)


@dataclass(frozen=True)
class Rates:
    records_per_second: float
    busy_fraction: float


def rates_between(earlier: InstanceTotals, later: InstanceTotals) -> Rates | None:
    """The rates over the wall time between two totals of one instance; None when none passed."""
    wall = later.wall_seconds - earlier.wall_seconds
    if wall <= 0:
        return None
    busy = (later.busy_seconds - earlier.busy_seconds) / wall
    return Rates((later.records - earlier.records) / wall, min(max(busy, 0.0), 1.0))


def records_text(count: int) -> str:
    """`1 record`, `1,234 records`."""
    return f"{count:,} record" if count == 1 else f"{count:,} records"


def rate_text(records_per_second: float) -> str:
    """`1,234`, `12.3`, `0.42`: three significant digits or more, never a bare 0 for a slow model."""
    if records_per_second >= 100:
        return f"{records_per_second:,.0f}"
    return f"{records_per_second:.1f}" if records_per_second >= 10 else f"{records_per_second:.2f}"


class InstanceMeter:
    """An instance's totals, counted in its process: records from the progress of the items it
    transforms (several at once with cross-record batching), busy time from its model's meter."""

    def __init__(self, busy: BusyMeter, clock: Callable[[], float] = time.monotonic) -> None:
        self._busy = busy
        self._clock = clock
        self._began = clock()  # the model is loaded
        self._done_records = 0  # of the items that ended
        self._items: dict[int, int] = {}  # records of each item being transformed, as last reported
        self._reported = float("-inf")
        self._lock = threading.Lock()

    def seen(self, progress: ItemProgress) -> InstanceTotals | None:
        """Note an item's progress; the totals to report, when one is due."""
        with self._lock:
            self._items[progress.item_id] = progress.records
            return self._report() if self._clock() - self._reported >= REPORT_INTERVAL_SECONDS else None

    def item_ended(self, item_id: int, *, records: int | None = None, idle: bool) -> InstanceTotals | None:
        """Count an item as ended, with its final `records` (None: as last seen); the totals to
        report when one is due or the instance has nothing else to do (`idle`), so that its
        last report is its final totals."""
        with self._lock:
            last = self._items.pop(item_id, 0)
            self._done_records += last if records is None else records
            return self._report() if idle or self._clock() - self._reported >= REPORT_INTERVAL_SECONDS else None

    def _report(self) -> InstanceTotals:
        now = self._reported = self._clock()
        return InstanceTotals(self._done_records + sum(self._items.values()), self._busy.seconds(), now - self._began)


@dataclass
class _Instance:
    earlier: InstanceTotals = InstanceTotals()  # the totals of the processes this instance's current one replaced
    samples: deque[InstanceTotals] = field(default_factory=lambda: deque([InstanceTotals()]))  # this process's, over the window
    logged: InstanceTotals = InstanceTotals()  # this process's totals at its last log line

    def restart(self) -> None:
        self.earlier += self.samples[-1]
        self.samples = deque([InstanceTotals()])
        self.logged = InstanceTotals()

    def live(self) -> Rates | None:
        return rates_between(self.samples[0], self.samples[-1])

    def whole(self) -> InstanceTotals:
        return self.earlier + self.samples[-1]


class JobFigures:
    """The instances' reported totals, as the job's live figures, log lines and final figures."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._instances: dict[int, _Instance] = {}
        self._began: float | None = None  # the first instance began transforming
        self._last_report = 0.0

    def started(self, instance: int) -> None:
        """An instance began transforming; a replacement's totals add to those of the process it replaces."""
        if self._began is None:
            self._began = self._clock()
        self._instances.setdefault(instance, _Instance()).restart()

    def report(self, instance: int, totals: InstanceTotals) -> str | None:
        """Record an instance's totals; its job log line when LOG_INTERVAL_SECONDS have passed since its last."""
        if self._began is None:
            self._began = self._clock()
        self._last_report = self._clock()
        state = self._instances.setdefault(instance, _Instance())
        state.samples.append(totals)
        while len(state.samples) > 2 and state.samples[1].wall_seconds <= totals.wall_seconds - LIVE_WINDOW_SECONDS:
            state.samples.popleft()
        rates = rates_between(state.logged, totals)
        if rates is None or totals.wall_seconds - state.logged.wall_seconds < LOG_INTERVAL_SECONDS:
            return None
        interval = totals.wall_seconds - state.logged.wall_seconds
        state.logged = totals
        return (
            f"Instance {instance + 1}: {rate_text(rates.records_per_second)} records/s, "
            f"model busy {rates.busy_fraction:.0%} of the last {interval:.0f} s"
        )

    def live(self) -> Rates | None:
        """The job's figures over the recent window: the instances' records/s added up, their busy fractions averaged."""
        rates = [r for r in (state.live() for state in self._instances.values()) if r is not None]
        if not rates:
            return None
        return Rates(sum(r.records_per_second for r in rates), sum(r.busy_fraction for r in rates) / len(rates))

    def whole(self) -> Rates | None:
        """The whole run's figures: records per second from the first instance's start to the last
        report, and the busy seconds of all instances over their wall time."""
        totals = [state.whole() for state in self._instances.values()]
        wall = sum(t.wall_seconds for t in totals)
        if self._began is None or wall <= 0:
            return None
        elapsed = max(self._last_report - self._began, max(t.wall_seconds for t in totals))
        return Rates(sum(t.records for t in totals) / elapsed, min(sum(t.busy_seconds for t in totals) / wall, 1.0))

    def final_lines(self) -> list[tuple[int, str]]:
        """Each instance's whole-run line for the job log, as (instance, line)."""
        lines = []
        for instance, state in sorted(self._instances.items()):
            totals = state.whole()
            rates = rates_between(InstanceTotals(), totals)
            if rates is not None:
                lines.append((
                    instance,
                    f"Instance {instance + 1}, whole run: {records_text(totals.records)} in {totals.wall_seconds:.1f} s, "
                    f"{rate_text(rates.records_per_second)} records/s, model busy {rates.busy_fraction:.0%}",
                ))
        return lines
