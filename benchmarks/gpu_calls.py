"""What the GPU benchmarks' handlers record of each model call (`start end inputs`, one line
per call) turned into figures, for gpu_images.py and gpu_text.py alike."""

from __future__ import annotations

from pathlib import Path


def steady_state(calls: Path) -> tuple[float, float, int]:
    """Inputs per second and the model's busy fraction from the first call's start to the last
    call's end, and the inputs the calls saw."""
    rows = sorted(tuple(map(float, line.split())) for line in calls.read_text().splitlines())
    span = rows[-1][1] - rows[0][0]
    seen = int(sum(row[2] for row in rows))
    return seen / span, sum(end - start for start, end, _ in rows) / span, seen
