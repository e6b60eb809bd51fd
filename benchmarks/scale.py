"""Scaling one large object across instances with shards, on the local backend and on Ray
(issue 15), against Ray Data by hand, on one line-delimited object and a CPU-bound numpy model.

The object is a seeded CSV of rows × 32 integers; the handler parses each 6 MiB payload with
np.loadtxt and assigns each row to the nearest of 8 centroids (CPU-bound in one thread: BLAS
and OpenMP are pinned to one thread). In the same run:

- `conveyor transform` on the local backend with 1 instance, then 2;
- the same on a Ray cluster of this machine's CPUs (`ray.cluster_utils.Cluster`, started once),
  `--backend ray`, with 1 actor, then 2;
- Ray Data by hand: `read_text` → `map_batches` through the same handler with an actor pool of 2
  → `write_csv`, once with each actor asking for 0.5 CPU (it completes), and once with 1 CPU
  each (on 2 CPUs the read tasks starve and it hangs: reported, killed after --hang-timeout);
- `--driver-memory-gb N`: the peak RSS of the `conveyor transform --backend ray` process (the
  driver) over an N GB object with an identity handler (the issue asks < 300 MB for 5 GB).

Every Conveyor output is compared byte for byte with the first. Figures are wall times; the
ratios are those the issue names.

    .venv/bin/python benchmarks/scale.py --size-mb 1024 --driver-memory-gb 5    # the issue's sizes
    .venv/bin/python benchmarks/scale.py                                        # a smoke run (16 MB, 4 MB shards)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
TARGETS = {"local 2 vs 1": 1.7, "ray 1 vs local 1": 0.9, "ray 2 vs 1": 1.7, "conveyor vs ray data": 1.5}
IDENTITY = "def model_fn(model_dir):\n    return None\n\ndef transform_fn(model, body, content_type, accept):\n    return body\n"

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


def conveyor(work: Path, name: str, instances: int, shard_mb: float, *backend: str, model: str = "model") -> tuple[float, int]:
    """One `conveyor transform`: its wall time and its process's peak RSS in bytes (sampled)."""
    out = work / f"out-{name}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "conveyor", "transform", "--name", f"scale-{name}", "--model", str(work / model),
            "--input", str(work / "in"), "--output", str(out), "--content-type", "text/csv", "--split-type", "Line",
            "--strategy", "MultiRecord", "--max-payload", "6", "--instance-count", str(instances), "--shard-size", str(shard_mb),
            "--quiet", *backend,
        ],
        env={**os.environ, **PINNED, "CONVEYOR_HOME": str(work / "home"), "CONVEYOR_CAPACITY": "2"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    peak = PeakRss(process.pid)
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"conveyor transform ({name}) failed:\n{stderr}")
    return elapsed, peak.stop()


class PeakRss:
    """The largest resident set of one process, sampled every 50 ms until `stop()`."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self._peak = max(self._peak, self._process.memory_info().rss)
            except Exception:  # the process has ended
                return
            self._done.wait(0.05)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self._peak


RAY_DATA = """
import importlib.util, sys, time
import ray

spec = importlib.util.spec_from_file_location("handler", sys.argv[3] + "/code/inference.py")
handler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handler)

class Model:
    def __init__(self):
        self.model = handler.model_fn(None)

    def __call__(self, batch):
        body = "\\n".join(batch["text"]) + "\\n"
        out = handler.output_fn(handler.predict_fn(handler.input_fn(body.encode(), "text/csv"), self.model), "text/csv")
        return {"label": out.decode().splitlines()}

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
ray.data.DataContext.get_current().enable_progress_bars = False
started = time.perf_counter()
(
    ray.data.read_text(sys.argv[2])
    .map_batches(Model, batch_size=int(sys.argv[5]), compute=ray.data.ActorPoolStrategy(size=2), num_cpus=float(sys.argv[6]))
    .write_csv(sys.argv[4])
)
print(time.perf_counter() - started)
"""


def ray_data(work: Path, address: str, num_cpus: float, timeout: float) -> float | None:
    """Ray Data's wall time with an actor pool of 2 asking `num_cpus` each; None if it ran past `timeout`."""
    script = work / "ray_data.py"
    script.write_text(RAY_DATA)
    rows_per_batch = (6 << 20) // 80  # about MaxPayloadInMB=6 of this object's ~80-byte rows
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, str(script), address, str(work / "in" / "big.csv"), str(work / "model"), str(work / f"ray-data-{num_cpus}"),
             str(rows_per_batch), str(num_cpus)],
            env={**os.environ, **PINNED}, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        sys.exit(f"Ray Data failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=16, help="the object's size in MiB (default 16, a smoke run; the issue's is 1024)")
    parser.add_argument("--shard-mb", type=float, help="the shard size in MiB (default 64, or 4 below 256 MiB objects)")
    parser.add_argument("--hang-timeout", type=float, default=120, help="seconds before Ray Data with 1 CPU per actor is called hung")
    parser.add_argument("--driver-memory-gb", type=float, default=0, help="also measure the driver's peak RSS over an object this large")
    parser.add_argument("--skip-local", action="store_true", help="leave out the local backend's rows")
    args = parser.parse_args()
    shard_mb = args.shard_mb or (64 if args.size_mb >= 256 else 4)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": os.cpu_count() or 2})
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-scale-") as directory:
            work = Path(directory)
            (work / "in").mkdir()
            for name, code in (("model", HANDLER), ("identity", IDENTITY)):
                (work / name / "code").mkdir(parents=True)
                (work / name / "code" / "inference.py").write_text(code)
            size = write_object(work / "in" / "big.csv", args.size_mb)
            shards = -(-size // int(shard_mb * (1 << 20)))
            print(f"object {size / (1 << 20):,.0f} MiB, {shards} shards of {shard_mb:g} MiB, {os.cpu_count()} CPUs", flush=True)
            times: dict[str, float] = {}
            on_ray = ("--backend", "ray", "--ray-address", cluster.address)
            runs = [("ray-1", 1, on_ray), ("ray-2", 2, on_ray)]
            if not args.skip_local:
                runs = [("local-1", 1, ()), ("local-2", 2, ())] + runs
            for name, instances, backend in runs:
                times[name], _ = conveyor(work, name, instances, shard_mb, *backend)
                print(f"conveyor {name:<8} {times[name]:7.1f} s", flush=True)
            outputs = {name: (work / f"out-{name}" / "big.csv.out").read_bytes() for name in times}
            same = len(set(outputs.values())) == 1
            data = ray_data(work, cluster.address, 0.5, timeout=max(args.hang_timeout, 20 * times["ray-2"]))
            print(f"ray data, 2 actors × 0.5 CPU  {data:7.1f} s" if data else "ray data, 2 actors × 0.5 CPU  did not finish", flush=True)
            hung = ray_data(work, cluster.address, 1.0, timeout=args.hang_timeout)
            print(f"ray data, 2 actors × 1 CPU    {hung:7.1f} s" if hung else f"ray data, 2 actors × 1 CPU    hung (killed after {args.hang_timeout:g} s)")
            ratios = {"ray 2 vs 1": times["ray-1"] / times["ray-2"]}
            if not args.skip_local:
                ratios = {"local 2 vs 1": times["local-1"] / times["local-2"], "ray 1 vs local 1": times["local-1"] / times["ray-1"], **ratios}
            if data:
                ratios["conveyor vs ray data"] = data / times["ray-2"]
            for name, ratio in ratios.items():
                print(f"{name:<22} {ratio:5.2f}x (target ≥ {TARGETS[name]}x)")
            print(f"outputs identical: {same}")
            if args.driver_memory_gb:
                for path in work.glob("out-*"):
                    subprocess.run(["rm", "-rf", str(path)])
                (work / "in" / "big.csv").unlink()
                big = write_object(work / "in" / "big.csv", args.driver_memory_gb * 1024)
                elapsed, peak = conveyor(work, "memory", 2, 64, *on_ray, model="identity")
                print(f"driver peak RSS over {big / (1 << 30):.1f} GiB: {peak / (1 << 20):,.0f} MiB (target < 300 MB), {elapsed:.0f} s")
            if not same:
                sys.exit("the outputs differ")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
