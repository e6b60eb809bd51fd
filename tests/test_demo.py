"""The quick start's demo job, run as `scripts/demo.sh` runs it (a relative output folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "kmeans" / "demo.py"


def test_demo_trains_packs_and_transforms_the_validation_set(tmp_path: Path) -> None:
    env = {"CONVEYOR_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(DEMO), "demo-output"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    output = tmp_path / "demo-output" / "output" / "valid-data.csv.out"
    labels = output.read_text().splitlines()
    assert len(labels) == 397 and all(label.isdigit() and 0 <= int(label) < 10 for label in labels)
    assert f"Sample transform result: {labels[0]}" in result.stdout
    assert "Completed Batch-Transform-kmeans-demo" in result.stderr
