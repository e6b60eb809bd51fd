"""benchmarks/one_instance.py runs end to end at a tiny size, so that it cannot rot; its figures
are in docs/benchmarks.md, measured at the issue's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "one_instance.py"


def test_the_benchmark_runs_at_a_tiny_size_and_compares_outputs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--rows", "300", "--rounds", "1", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for run in ("hand loop", "conveyor", "conveyor, 2 decode workers", "(target >= 1.3)"):
        assert run in result.stdout
    assert (tmp_path / "out" / "rows.csv.out").read_bytes() == (tmp_path / "hand.out").read_bytes()
