"""Python's cyclic garbage collector, set for the processes that run jobs: `conveyor transform`
and `conveyor server`, each of which holds an object or more for every item of a job.

With Python's thresholds (a collection every 700 container objects made, and every tenth of
those a deeper one), a job of 20,000 small objects had its command collect some 300 times,
twice walking every object it held, modules and classes included: 0.15 to 0.2 s of the
command's CPU, in a run of 2 s (docs/benchmarks.md, "Many small objects"). Reference cycles are
rare in what a job makes, so collecting after every 10,000 objects, and freezing what start-up
made, loses no memory worth the time.

Never called where Conveyor runs in a user's own process (the SDK's in-process Transformer):
the collector is that program's to set.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 10_000
"""Container objects made, less those freed, between two collections (Python's default is 700)."""


def settle_after_start() -> None:
    """Call once the process has imported what it runs with: what exists then (modules, classes,
    the app) lives as long as the process, and no collection walks it again."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
