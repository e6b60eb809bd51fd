"""Scaling one large object across instances with shards (issue 15): the local backend, 1
instance against 2, on one line-delimited object and a CPU-bound numpy model.

The object is a seeded CSV of rows × 32 integers; the handler parses each 6 MiB payload with
np.loadtxt and assigns each row to the nearest of 8 centroids (CPU-bound in one thread: BLAS
and OpenMP are pinned to one thread). The same `conveyor transform` runs with
`--instance-count 1` and `--instance-count 2` and the default shard size (64 MiB; --shard-mb to
change it), and the outputs are compared byte for byte. A round's figure is its wall time;
the ratio is 1-instance time / 2-instance time (the issue asks ≥ 1.7 for 1 GB).

    .venv/bin/python benchmarks/scale.py --size-mb 1024             # the issue's size
    .venv/bin/python benchmarks/scale.py                            # a smoke run (16 MB, 4 MB shards)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
TARGET = 1.7

HANDLER = '''
import io

import numpy as np

CENTROIDS = np.random.default_rng(17).integers(0, 17, size=(8, 32)).astype(np.float64)

def model_fn(model_dir):
    return CENTROIDS

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body
    return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)

def predict_fn(rows, centroids):
    distances = (rows * rows).sum(axis=1)[:, None] - 2 * rows @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
    return distances.argmin(axis=1)

def output_fn(labels, accept):
    return ("\\n".join(map(str, labels.tolist())) + "\\n").encode()
'''


def write_object(path: Path, size_mb: float) -> int:
    """A CSV of about `size_mb` MiB, written in blocks of seeded rows; returns its size."""
    rng = np.random.default_rng(15)
    target = int(size_mb * (1 << 20))
    written = 0
    with path.open("wb") as out:
        while written < target:
            rows = rng.integers(0, 17, size=(20_000, 32))
            block = ("\n".join(",".join(map(str, row)) for row in rows.tolist()) + "\n").encode()
            out.write(block)
            written += len(block)
    return written


def run(work: Path, instances: int, shard_mb: float) -> float:
    out = work / f"out-{instances}"
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable, "-m", "conveyor", "transform", "--name", f"scale-{instances}", "--model", str(work / "model"),
            "--input", str(work / "in"), "--output", str(out), "--content-type", "text/csv", "--split-type", "Line",
            "--strategy", "MultiRecord", "--max-payload", "6", "--instance-count", str(instances), "--shard-size", str(shard_mb), "--quiet",
        ],
        env={**os.environ, **PINNED, "CONVEYOR_HOME": str(work / "home"), "CONVEYOR_CAPACITY": "2"},
        capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"conveyor transform --instance-count {instances} failed:\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=16, help="the object's size in MiB (default 16, a smoke run; the issue's is 1024)")
    parser.add_argument("--shard-mb", type=float, help="the shard size in MiB (default 64, or 4 below 256 MiB objects)")
    args = parser.parse_args()
    shard_mb = args.shard_mb or (64 if args.size_mb >= 256 else 4)
    with tempfile.TemporaryDirectory(prefix="conveyor-scale-") as directory:
        work = Path(directory)
        (work / "in").mkdir()
        (work / "model" / "code").mkdir(parents=True)
        (work / "model" / "code" / "inference.py").write_text(HANDLER)
        size = write_object(work / "in" / "big.csv", args.size_mb)
        one = run(work, 1, shard_mb)
        two = run(work, 2, shard_mb)
        same = (work / "out-1" / "big.csv.out").read_bytes() == (work / "out-2" / "big.csv.out").read_bytes()
        shards = -(-size // int(shard_mb * (1 << 20)))
        print(f"object {size / (1 << 20):,.0f} MiB, {shards} shards of {shard_mb:g} MiB, {os.cpu_count()} CPUs")
        print(f"1 instance   {one:7.1f} s")
        print(f"2 instances  {two:7.1f} s")
        print(f"ratio        {one / two:7.2f}x (target ≥ {TARGET}x for 1 GB); outputs identical: {same}")
        if not same:
            sys.exit("the outputs differ")


if __name__ == "__main__":
    main()
