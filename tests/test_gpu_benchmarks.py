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
    assert "on cpu" in output and "conveyor / hand loop (images/s): " in output
    assert "hand loop" in output and output.count("% on cpu; whole run") == 2


@pytest.mark.slow
def test_the_text_benchmark_runs_on_the_cpu_at_a_tiny_size(tmp_path: Path) -> None:
    output = run("gpu_text.py", "--sentences", "12", "--layers", "1", "--hidden", "32", "--heads", "2", "--batch-size", "4", workdir=tmp_path)
    assert "on cpu" in output and "conveyor / hand loop (sentences/s): " in output
    assert "hand loop" in output and output.count("% on cpu; whole run") == 2


def test_runs_whose_models_computed_on_different_devices_are_not_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from gpu_calls import same_devices, steady_state

    runs = {}
    for name, device in (("hand loop", "cuda"), ("conveyor", "cpu")):
        (tmp_path / name).write_text(f"10.0 10.5 4 {device}\n10.5 11.0 4 {device}\n")
        runs[name] = steady_state(tmp_path / name)
    assert runs["conveyor"] == (8.0, 1.0, 8, "cpu")
    with pytest.raises(SystemExit, match="the runs' models computed on different devices: hand loop on cuda, conveyor on cpu"):
        same_devices(runs)
    same_devices({"hand loop": runs["hand loop"], "conveyor": runs["hand loop"]})
