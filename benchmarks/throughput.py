"""Conveyor's throughput against a hand-written loop, with the same numpy model.

Runs, in one go and on the same generated CSV:
  hand loop   one process: read, cut 6 MiB payloads at line ends, call the model, write
  conveyor-1  `conveyor transform`, 1 instance, on two input files
  conveyor-2  `conveyor transform`, 2 instances, on the same two files
  single      `conveyor transform`, SingleRecord with a trivial model (records/s per instance)
and, with --rss-gb N, conveyor-1 with an identity model on one N GB file, to measure peak RSS.

BLAS and OpenMP are pinned to one thread everywhere, so instances are what is measured.
Peak RSS is the largest sum of resident memory over the process tree, sampled every 50 ms.

    .venv/bin/python benchmarks/throughput.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil

PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
PAYLOAD = 6 << 20
COLUMNS = 10

MODEL = '''
import numpy as np

WEIGHTS = np.linspace(-1.0, 1.0, 10)

def model_fn(model_dir):
    return WEIGHTS

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body  # text/csv arrives as str, as in the toolkit
    return np.fromstring(text.replace("\\n", ","), sep=",").reshape(-1, 10)

def predict_fn(data, weights):
    return data @ weights

def output_fn(prediction, accept):
    return "\\n".join(np.char.mod("%.5f", prediction).tolist()).encode() + b"\\n"
'''

TRIVIAL = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body
'''

HAND_LOOP = '''
import importlib.util, sys, time
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
        target.write(handler.output_fn(handler.predict_fn(handler.input_fn(payload, "text/csv"), model), "text/csv"))
'''


def generate_csv(path: Path, size_bytes: int) -> int:
    """A CSV of random rows: one ~8 MB block of distinct rows, written over and over."""
    rng = np.random.default_rng(0)
    block = "\n".join(",".join(f"{v:.6f}" for v in row) for row in rng.random((100_000, COLUMNS)).tolist()).encode() + b"\n"
    rows_per_block = 100_000
    rows = 0
    with open(path, "wb") as out:
        written = 0
        while written < size_bytes:
            out.write(block)
            written += len(block)
            rows += rows_per_block
    return rows


def write_model(root: Path, source: str) -> Path:
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "code" / "inference.py").write_text(textwrap.dedent(source))
    return root


class PeakRss:
    """Samples the summed RSS of a process and its descendants."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.peak = 0
        self._process = psutil.Process(process.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._running = True
        self._thread.start()

    def _sample(self) -> None:
        while self._running:
            try:
                processes = [self._process, *self._process.children(recursive=True)]
                total = sum(p.memory_info().rss for p in processes if p.is_running())
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def stop(self) -> int:
        self._running = False
        self._thread.join()
        return self.peak


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = PeakRss(process)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    peak = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode()}")
    return elapsed, peak


def conveyor_command(model: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "conveyor", "transform", "--quiet", "--model", str(model), "--input", str(source),
        "--output", str(output), "--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv", *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated CSV (default 1024)")
    parser.add_argument("--single-records", type=int, default=300_000, help="records for the SingleRecord run")
    parser.add_argument("--rss-gb", type=float, default=0, help="also measure peak RSS on one file of this many GB")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    env = {**os.environ, **PINNED, "CONVEYOR_HOME": str(workdir / "home"), "CONVEYOR_CAPACITY": "2"}
    model = write_model(workdir / "model", MODEL)
    trivial = write_model(workdir / "trivial", TRIVIAL)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    half = args.size_mb * (1 << 20) // 2
    rows = generate_csv(data / "part-1.csv", half) + generate_csv(data / "part-2.csv", half)
    size = sum(p.stat().st_size for p in data.iterdir())
    megabytes = size / (1 << 20)
    hand_loop = workdir / "hand_loop.py"
    hand_loop.write_text(HAND_LOOP)

    results = []
    hand_time, hand_rss = 0.0, 0
    for part in sorted(data.iterdir()):
        elapsed, peak = timed([sys.executable, str(hand_loop), str(model / "code" / "inference.py"), str(part), str(workdir / f"{part.name}.hand"), str(PAYLOAD)], env)
        hand_time += elapsed
        hand_rss = max(hand_rss, peak)
    results.append(("hand loop", hand_time, hand_rss, rows))
    for count in (1, 2):
        shutil.rmtree(workdir / "out", ignore_errors=True)
        elapsed, peak = timed(conveyor_command(model, data, workdir / "out", "--instance-count", str(count)), env)
        results.append((f"conveyor, {count} instance{'s' if count > 1 else ''}", elapsed, peak, rows))
    for part in sorted(data.iterdir()):
        assert (workdir / "out" / f"{part.name}.out").read_bytes() == (workdir / f"{part.name}.hand").read_bytes(), "outputs differ"

    single = workdir / "single"
    single.mkdir(exist_ok=True)
    (single / "records.txt").write_bytes(b"".join(b"%d,0.5,abc\n" % i for i in range(args.single_records)))
    shutil.rmtree(workdir / "single-out", ignore_errors=True)
    single_time, single_rss = timed(conveyor_command(trivial, single, workdir / "single-out", "--strategy", "SingleRecord"), env)

    print(f"\ninput: {megabytes:,.0f} MB in 2 files, {rows:,} records; {os.cpu_count()} CPUs; BLAS pinned to 1 thread\n")
    print(f"{'run':<24}{'seconds':>9}{'MB/s':>9}{'records/s':>12}{'peak RSS MB':>13}")
    for name, elapsed, peak, count in results:
        print(f"{name:<24}{elapsed:>9.2f}{megabytes / elapsed:>9.1f}{count / elapsed:>12,.0f}{peak / (1 << 20):>13.0f}")
    print(f"{'SingleRecord, trivial':<24}{single_time:>9.2f}{'':>9}{args.single_records / single_time:>12,.0f}{single_rss / (1 << 20):>13.0f}")
    hand, one, two = results[0][1], results[1][1], results[2][1]
    print("\nratios (target):")
    print(f"  conveyor 1 instance / hand loop   {hand / one:5.2f}  (>= 0.90)")
    print(f"  conveyor 2 instances / 1 instance {one / two:5.2f}  (>= 1.70)")
    print(f"  SingleRecord records/s            {args.single_records / single_time:,.0f}  (>= 30,000; includes start-up)")

    if args.rss_gb:
        big = workdir / "big"
        big.mkdir(exist_ok=True)
        generate_csv(big / "big.csv", int(args.rss_gb * (1 << 30)))
        shutil.rmtree(workdir / "big-out", ignore_errors=True)
        elapsed, peak = timed(conveyor_command(trivial, big, workdir / "big-out"), env)
        print(f"  peak RSS on a {args.rss_gb:g} GB input    {peak / (1 << 20):5.0f} MB  (< 300 MB; {elapsed:.0f}s, identity model)")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
