"""benchmarks/gpu_images.py and gpu_text.py run end to end on the CPU at a tiny size, so that
they cannot rot; their figures on an accelerator are in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *arguments: str, workdir: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments, "--decode-workers", "1", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_image_benchmark_runs_on_the_cpu_at_a_tiny_size(tmp_path: Path) -> None:
    output = run("gpu_images.py", "--images", "4", "--size", "32", "--batch-size", "2", workdir=tmp_path)
    assert "on cpu" in output and "hand loop" in output and "conveyor / hand loop (images/s): " in output


@pytest.mark.slow
def test_the_text_benchmark_runs_on_the_cpu_at_a_tiny_size(tmp_path: Path) -> None:
    output = run("gpu_text.py", "--sentences", "12", "--layers", "1", "--hidden", "32", "--heads", "2", "--batch-size", "4", workdir=tmp_path)
    assert "on cpu" in output and "hand loop" in output and "conveyor / hand loop (sentences/s): " in output
