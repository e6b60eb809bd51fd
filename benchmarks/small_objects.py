"""Many small objects: Conveyor's cost per object against a hand-written loop.

The job is the common shape of image and document inference, one record per object: N one-line
CSV objects in 100 folders, SplitType None, an identity `transform_fn` (with --work-ms, one that
also spends that much CPU on each object, as a model would). In one go, each round runs:
  hand loop    one process: read each file, call the handler, write a temporary file, rename it
  conveyor-1   `conveyor transform`, 1 instance
  conveyor-2   `conveyor transform`, 2 instances
  server-1     with --server-ledger: the same job through the job lifecycle as the server runs
               it, its items claimed from and recorded in a SQLite store (1 instance)
and prints each one's median wall time over the rounds, with the ratios of the medians of each
round's own ratio (the issue's targets: conveyor-1 ≥ 0.5 × the hand loop's rate, conveyor-2
≥ 1.6 × conveyor-1's).
It also prints the cores each conveyor run kept busy (its whole process tree's CPU over its wall
time), and the ceiling that puts on conveyor-2 over conveyor-1: the cores over conveyor-1's.

    .venv/bin/python benchmarks/small_objects.py --objects 20000 --rounds 3
    .venv/bin/python benchmarks/small_objects.py --objects 5000 --rounds 3 --work-ms 1
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HANDLER = '''
import time

WORK_SECONDS = {work_seconds!r}

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if WORK_SECONDS:  # a model's own CPU per object (--work-ms)
        until = time.thread_time() + WORK_SECONDS
        while time.thread_time() < until:
            pass
    return body, accept
'''

HAND_LOOP = '''
import importlib.util, os, sys, uuid
module_spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(module_spec); module_spec.loader.exec_module(handler)
model = handler.model_fn(None)
source_root, target_root = sys.argv[2], sys.argv[3]
for directory, _, names in os.walk(source_root):
    target_directory = os.path.join(target_root, os.path.relpath(directory, source_root))
    os.makedirs(target_directory, exist_ok=True)
    for name in sorted(names):
        with open(os.path.join(directory, name), "rb") as source:
            body, _ = handler.transform_fn(model, source.read(), "text/csv", "text/csv")
        target = os.path.join(target_directory, name + ".out")
        temporary = os.path.join(target_directory, f".{name}.tmp-{uuid.uuid4().hex}")
        with open(temporary, "wb") as output:
            output.write(body)
        os.replace(temporary, target)
'''

SERVER_LEDGER = '''
import sys
from datetime import datetime, timezone
from pathlib import Path
from conveyor.collector import settle_after_start
from conveyor.engine.job import plan_work_items, run_job
from conveyor.engine.store_link import StoreLedger, add_planned_items
from conveyor.sagemaker import parse_model, parse_transform_job
from conveyor.settings import Settings
from conveyor.store import Store
inputs, output, model, home = sys.argv[1:5]
job = parse_transform_job({
    "TransformJobName": "small-objects", "ModelName": "m",
    "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{inputs}/"}}, "ContentType": "text/csv"},
    "TransformOutput": {"S3OutputPath": f"file://{output}/"},
    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
})
settings = Settings(home=Path(home))
settle_after_start()  # as `conveyor server` does
with Store(Path(home) / "state.db") as store:
    store.jobs.create(job.name, "arn", "m", {}, datetime.now(timezone.utc))
    add_planned_items(store, job.name, plan_work_items(job, settings))
    model_spec = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{model}"}})
    outcome = run_job(job, model_spec, settings, ledger=StoreLedger(store, job.name, "benchmark", 60))
assert outcome.status == "Completed", outcome
'''


def make_inputs(root: Path, objects: int) -> None:
    folders = 100
    for number in range(objects):
        folder = root / f"folder-{number % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"object-{number:06d}.csv").write_text(f"{number},{number % 7},{number % 13}\n")


def timed(command: list[str]) -> tuple[float, float | None, float]:
    """The command's wall time; the CPU-seconds of its own process (not its instances'), read
    from /proc once it has exited and before it is reaped (None where there is no /proc); and the
    CPU-seconds of its whole process tree (its instances are reaped by it, so they count)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    seconds = time.perf_counter() - started
    own_cpu = None
    try:
        with open(f"/proc/{process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        own_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except OSError:
        pass
    if process.wait() != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, own_cpu, tree_cpu


def conveyor(inputs: Path, output: Path, model: Path, instances: int) -> list[str]:
    return [
        str(Path(sys.executable).with_name("conveyor")), "transform", "--input", str(inputs), "--output", str(output),
        "--model", str(model), "--content-type", "text/csv", "--instance-count", str(instances), "--quiet",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where inputs and outputs go (default /dev/shm, a tmpfs: on a virtual machine's disk the cost of "
        "creating a file varies tenfold between runs and swamps what is measured)",
    )
    parser.add_argument("--server-ledger", action="store_true", help="also run the job as the server does (server-1)")
    parser.add_argument(
        "--work-ms", type=float, default=0.0,
        help="CPU milliseconds the handler spends on each object (default 0: the identity handler of issue 17)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="conveyor-small-objects-", dir=args.workdir))
    try:
        inputs, model = work / "inputs", work / "model"
        make_inputs(inputs, args.objects)
        (model / "code").mkdir(parents=True)
        (model / "code" / "inference.py").write_text(textwrap.dedent(HANDLER.format(work_seconds=args.work_ms / 1000)))
        (work / "hand_loop.py").write_text(HAND_LOOP)
        (work / "server_ledger.py").write_text(SERVER_LEDGER)
        runs: dict[str, list[float]] = {"hand loop": [], "conveyor-1": [], "conveyor-2": []}
        if args.server_ledger:
            runs["server-1"] = []
        own_cpu: dict[str, list[float]] = {name: [] for name in runs}
        tree_cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name in runs:
                output = work / "output"
                shutil.rmtree(output, ignore_errors=True)
                if name == "hand loop":
                    command = [sys.executable, str(work / "hand_loop.py"), str(model / "code" / "inference.py"), str(inputs), str(output)]
                elif name == "server-1":
                    shutil.rmtree(work / "home", ignore_errors=True)
                    command = [sys.executable, str(work / "server_ledger.py"), str(inputs), str(output), str(model), str(work / "home")]
                else:
                    command = conveyor(inputs, output, model, int(name[-1]))
                seconds, cpu, tree = timed(command)
                runs[name].append(seconds)
                tree_cpu[name].append(tree)
                if cpu is not None:
                    own_cpu[name].append(cpu)
                written = sum(len(files) for _, _, files in os.walk(output))
                assert written == args.objects, f"{name} wrote {written} of {args.objects} objects"
        work_text = f", the handler spending {args.work_ms:g} ms of CPU on each" if args.work_ms else ""
        print(f"{args.objects} one-line objects in {work.parent}{work_text}, {args.rounds} rounds, {os.cpu_count()} CPUs")
        for name, seconds in runs.items():
            median = statistics.median(seconds)
            print(f"  {name:10} {median:6.2f} s  {args.objects / median:8.0f} objects/s  ({', '.join(f'{s:.2f}' for s in seconds)})")
        for name in ("conveyor-1", "conveyor-2"):
            if own_cpu[name]:
                cpu = statistics.median(own_cpu[name])
                print(
                    f"  {name}: the command's own process {cpu:.2f} CPU-s, {cpu / args.objects * 1e6:.0f} µs per object "
                    "(start, listing, handing out items, recording reports; its instances are not counted)"
                )
        busy = {name: statistics.median(t / s for t, s in zip(tree_cpu[name], runs[name])) for name in ("conveyor-1", "conveyor-2")}
        cores = os.cpu_count() or 1
        for name in ("conveyor-1", "conveyor-2"):
            print(f"  {name}: the whole process tree {statistics.median(tree_cpu[name]):.2f} CPU-s, {busy[name]:.2f} of {cores} cores busy on average")
        print(
            f"  ceiling: with the same CPU-seconds spread over all {cores} cores, two instances can be at most "
            f"{cores / busy['conveyor-1']:.2f} × one (the cores over one instance's cores busy)"
        )
        one = statistics.median(h / c for h, c in zip(runs["hand loop"], runs["conveyor-1"]))
        two = statistics.median(c1 / c2 for c1, c2 in zip(runs["conveyor-1"], runs["conveyor-2"]))
        print(f"conveyor-1 / hand loop (rate): {one:.2f}   target >= 0.5")
        print(f"conveyor-2 / conveyor-1 (rate): {two:.2f}   target >= 1.6")
        if args.server_ledger:
            server = statistics.median(c1 / s1 for c1, s1 in zip(runs["conveyor-1"], runs["server-1"]))
            print(f"server-1 / conveyor-1 (rate): {server:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
