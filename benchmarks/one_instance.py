"""One instance against a hand loop, with and without parallel decode (CONVEYOR_DECODE_WORKERS).

The job (issue 17): a CSV of 600,000 rows × 64 integers in 0–16 (92.6 MB, seeded); a handler
whose input_fn parses the payload with np.loadtxt, whose predict_fn assigns each row to the
nearest of 8 fixed centroids, and whose output_fn writes one label per line; MultiRecord,
6 MiB payloads, Line split. Each round runs, on the same file:
  hand loop        one process: read 6 MiB payloads cut at line ends, call model_fn once and
                   input_fn → predict_fn → output_fn per payload, write
  conveyor         `conveyor transform --instance-count 1`
  conveyor, N dw   the same with CONVEYOR_DECODE_WORKERS=N (`--decode-workers N`)
and each conveyor run once more on a one-line file, its start-up, which the "net" figures
subtract. Times are the median of --rounds rounds; outputs are compared byte for byte. BLAS and
OpenMP are pinned to one thread everywhere, so processes are what is measured.

    .venv/bin/python benchmarks/one_instance.py                # the issue's size, 3 rounds
    .venv/bin/python benchmarks/one_instance.py --rows 2000 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
PAYLOAD_MB = 6
COLUMNS = 64
TARGET = 1.3
"""CONVEYOR_DECODE_WORKERS=2 on one instance against the hand loop (issue 17)."""

HANDLER = '''
import io

import numpy as np

CENTROIDS = np.random.default_rng(17).integers(0, 17, size=(8, 64)).astype(np.float64)

def model_fn(model_dir):
    return CENTROIDS

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body  # text/csv arrives as str, as in the toolkit
    return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)

def predict_fn(rows, centroids):
    distances = (rows * rows).sum(axis=1)[:, None] - 2 * rows @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
    return distances.argmin(axis=1)

def output_fn(labels, accept):
    return ("\\n".join(map(str, labels.tolist())) + "\\n").encode()
'''

HAND_LOOP = '''
import importlib.util, sys
module_spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(module_spec); module_spec.loader.exec_module(handler)
model = handler.model_fn(None)
limit = int(sys.argv[4])
with open(sys.argv[2], "rb") as source, open(sys.argv[3], "wb") as target:
    rest = b""
    while True:
        chunk = source.read(limit - len(rest))
        buffer = rest + chunk
        if not buffer:
            break
        cut = buffer.rfind(b"\\n") + 1 if chunk else len(buffer)
        payload, rest = buffer[:cut], buffer[cut:]
        target.write(handler.output_fn(handler.predict_fn(handler.input_fn(payload.decode(), "text/csv"), model), "text/csv"))
'''


def generate_csv(path: Path, rows: int) -> None:
    """`rows` rows of COLUMNS integers in 0–16, seeded, written in blocks."""
    rng = np.random.default_rng(0)
    with open(path, "w") as out:
        for start in range(0, rows, 50_000):
            block = rng.integers(0, 17, size=(min(50_000, rows - start), COLUMNS))
            out.write("\n".join(",".join(map(str, row)) for row in block.tolist()) + "\n")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode()}")
    return elapsed


def conveyor_command(model: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "conveyor", "transform", "--quiet", "--model", str(model), "--input", str(source),
        "--output", str(output), "--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line",
        "--strategy", "MultiRecord", "--max-payload", str(PAYLOAD_MB), "--instance-count", "1", *extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=600_000, help="rows of the generated CSV (default 600,000: 92.6 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the median (default 3)")
    parser.add_argument("--decode-workers", type=int, default=2, help="CONVEYOR_DECODE_WORKERS of the third run (default 2)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    env = {**os.environ, **PINNED, "CONVEYOR_HOME": str(workdir / "home")}
    model = workdir / "model"
    (model / "code").mkdir(parents=True, exist_ok=True)
    (model / "code" / "inference.py").write_text(textwrap.dedent(HANDLER))
    data, one_line = workdir / "data", workdir / "one-line"
    data.mkdir(parents=True, exist_ok=True)
    one_line.mkdir(exist_ok=True)
    generate_csv(data / "rows.csv", args.rows)
    generate_csv(one_line / "rows.csv", 1)
    megabytes = (data / "rows.csv").stat().st_size / 1e6
    hand_loop = workdir / "hand_loop.py"
    hand_loop.write_text(HAND_LOOP)

    workers = ("--decode-workers", str(args.decode_workers))
    runs: dict[str, tuple[str, ...] | None] = {"hand loop": None, "conveyor": (), f"conveyor, {args.decode_workers} decode workers": workers}
    times: dict[str, list[float]] = {name: [] for name in runs}
    start_up: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, extra in runs.items():
            if extra is None:
                command = [sys.executable, str(hand_loop), str(model / "code" / "inference.py"), str(data / "rows.csv"), str(workdir / "hand.out"), str(PAYLOAD_MB << 20)]
                times[name].append(timed(command, env))
                continue
            shutil.rmtree(workdir / "out", ignore_errors=True)
            times[name].append(timed(conveyor_command(model, data, workdir / "out", *extra), env))
            if (workdir / "out" / "rows.csv.out").read_bytes() != (workdir / "hand.out").read_bytes():
                raise SystemExit(f"{name}: the output differs from the hand loop's")
            shutil.rmtree(workdir / "out-one", ignore_errors=True)
            start_up[name].append(timed(conveyor_command(model, one_line, workdir / "out-one", *extra), env))

    median = {name: statistics.median(values) for name, values in times.items()}
    ready = {name: statistics.median(values) if values else 0.0 for name, values in start_up.items()}
    print(f"\ninput: {megabytes:.1f} MB, {args.rows:,} rows × {COLUMNS}; {os.cpu_count()} CPUs; BLAS pinned to 1 thread; median of {args.rounds}\n")
    print(f"{'run':<32}{'seconds':>9}{'start-up':>10}{'net':>9}{'MB/s':>8}")
    for name in runs:
        net = median[name] - ready[name]
        print(f"{name:<32}{median[name]:>9.2f}{ready[name]:>10.2f}{net:>9.2f}{megabytes / median[name]:>8.1f}")
    hand = median["hand loop"]
    plain, parallel = (median[name] for name in list(runs)[1:])
    plain_net, parallel_net = (median[name] - ready[name] for name in list(runs)[1:])
    print("\nratios, against the hand loop (start-up included; net of start-up):")
    print(f"  conveyor                          {hand / plain:5.2f}  {hand / plain_net:5.2f}")
    print(f"  conveyor, {args.decode_workers} decode workers        {hand / parallel:5.2f}  {hand / parallel_net:5.2f}  (target >= {TARGET})")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
