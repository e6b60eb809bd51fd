"""The garbage collector's settings for the processes that run jobs (conveyor.collector)."""

from __future__ import annotations

import subprocess
import sys


def test_after_start_what_exists_is_frozen_and_collections_are_rarer() -> None:
    probe = (
        "import gc; from conveyor.collector import YOUNG_GENERATION_THRESHOLD, settle_after_start; "
        "before = gc.get_threshold(); settle_after_start(); after = gc.get_threshold(); "
        "print(before[0], after[0] == YOUNG_GENERATION_THRESHOLD, after[1:] == before[1:], gc.get_freeze_count() > 1000)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)  # a process of its own: the test run's collector is left alone
    assert result.stdout.split() == ["700", "True", "True", "True"]
