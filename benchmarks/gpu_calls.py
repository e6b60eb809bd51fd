"""What the GPU benchmarks' handlers record of each model call (`start end inputs device`, one
line per call) turned into figures, for gpu_images.py and gpu_text.py alike."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class SteadyState(NamedTuple):
    rate: float  # inputs per second, from the first call's start to the last call's end
    busy: float  # the fraction of that time the model was computing
    seen: int  # the inputs the calls saw
    devices: str  # where the model computed ("cuda", "cpu"; several, comma-separated, if it moved)


def steady_state(calls: Path) -> SteadyState:
    rows = sorted((float(start), float(end), int(inputs), device) for start, end, inputs, device in (line.split() for line in calls.read_text().splitlines()))
    span = rows[-1][1] - rows[0][0]
    return SteadyState(
        rate=sum(row[2] for row in rows) / span,
        busy=sum(end - start for start, end, _, _ in rows) / span,
        seen=sum(row[2] for row in rows),
        devices=",".join(sorted({row[3] for row in rows})),
    )


def same_devices(runs: dict[str, SteadyState]) -> None:
    """Refuse to compare runs whose models computed on different devices (a job whose instance
    type has no GPU runs its model on the CPU beside a hand loop on the GPU)."""
    if len({run.devices for run in runs.values()}) > 1:
        raise SystemExit("the runs' models computed on different devices: " + ", ".join(f"{name} on {run.devices}" for name, run in runs.items()))
