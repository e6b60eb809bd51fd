"""Pipelining: is the model kept busy while the next inputs are decoded?

A stand-in for an accelerator: `predict_fn` holds one lock for a fixed time per call (as a GPU
is held while it computes) and sleeps, and `input_fn` costs a fixed amount of CPU per record.
A sequential loop leaves the model idle while it decodes; Conveyor can decode the next payload
while the model works. The model logs each call's start and end, and the figure is the
fraction of the steady-state wall time (first call's start to last call's end) during which
the lock was held.

Runs, on the same JSON Lines file (SingleRecord, one record per call):
  sequential loop          input_fn → predict_fn → output_fn, one record after another
  conveyor                 `conveyor transform`, MaxConcurrentTransforms 1 (SageMaker's default)
  conveyor, concurrent 2   MaxConcurrentTransforms 2: one payload decodes while another predicts
  conveyor, 2 decode workers   CONVEYOR_DECODE_WORKERS=2 (input_fn in worker processes)
The issue's target: the model busy ≥ 90 % of steady-state wall time in Conveyor's best setting.

    .venv/bin/python benchmarks/pipelining.py --records 200 --predict-ms 20 --decode-ms 15
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HANDLER = '''
import json, os, threading, time

PREDICT_SECONDS = {predict} / 1000
DECODE_SECONDS = {decode} / 1000
CALLS = {calls!r}
DEVICE = threading.Lock()  # one accelerator: one call at a time

def model_fn(model_dir):
    return "model"

def input_fn(body, content_type):
    deadline = time.thread_time() + DECODE_SECONDS  # CPU time, as decoding an image costs
    while time.thread_time() < deadline:
        pass
    return json.loads(body)

def predict_fn(data, model):
    with DEVICE:
        started = time.time()
        time.sleep(PREDICT_SECONDS)
        ended = time.time()
    with open(CALLS, "a") as calls:
        calls.write(f"{{started}} {{ended}}\\n")
    return data

def output_fn(prediction, accept):
    return json.dumps(prediction)
'''

SEQUENTIAL = '''
import importlib.util, sys
module_spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(module_spec); module_spec.loader.exec_module(handler)
model = handler.model_fn(None)
with open(sys.argv[2], "rb") as source, open(sys.argv[3], "w") as target:
    for line in source:
        target.write(handler.output_fn(handler.predict_fn(handler.input_fn(line, "application/json"), model), "application/json") + "\\n")
'''


def busy_fraction(calls: Path) -> tuple[float, float]:
    """The fraction of the span from the first call's start to the last call's end during which
    a call was running, and that span in seconds."""
    intervals = sorted(tuple(map(float, line.split())) for line in calls.read_text().splitlines())
    span = intervals[-1][1] - intervals[0][0]
    busy, reach = 0.0, intervals[0][0]
    for start, end in intervals:  # the union of the intervals (the lock makes them disjoint anyway)
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy / span, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--predict-ms", type=float, default=20.0, help="time the model holds the device per call")
    parser.add_argument("--decode-ms", type=float, default=15.0, help="CPU time input_fn spends per record")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="conveyor-pipelining-"))
    try:
        source = work / "records.jsonl"
        source.write_text("".join(f'{{"id": {number}}}\n' for number in range(args.records)))
        (work / "sequential.py").write_text(SEQUENTIAL)
        runs = {
            "sequential loop": None,
            "conveyor": [],
            "conveyor, concurrent 2": ["--max-concurrent", "2"],
            "conveyor, 2 decode workers": ["--decode-workers", "2"],
        }
        print(f"{args.records} records, predict {args.predict_ms:g} ms holding the device, input_fn {args.decode_ms:g} ms CPU each")
        ideal = args.predict_ms * args.records / 1000
        for name, extra in runs.items():
            calls = work / f"calls-{len(name)}.txt"
            model = work / f"model-{len(name)}"
            (model / "code").mkdir(parents=True)
            (model / "code" / "inference.py").write_text(HANDLER.format(predict=args.predict_ms, decode=args.decode_ms, calls=str(calls)))
            output = work / f"out-{len(name)}"
            started = time.perf_counter()
            if extra is None:
                command = [sys.executable, str(work / "sequential.py"), str(model / "code" / "inference.py"), str(source), str(output)]
            else:
                command = [
                    str(Path(sys.executable).with_name("conveyor")), "transform", "--quiet", "--model", str(model), "--input", str(source),
                    "--output", str(output), "--content-type", "application/json", "--split-type", "Line",
                    "--strategy", "SingleRecord", "--assemble-with", "Line", *extra,
                ]  # fmt: skip
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr.decode()}")
            elapsed = time.perf_counter() - started
            fraction, span = busy_fraction(calls)
            print(f"  {name:28} model busy {fraction:6.1%}   steady state {span:5.2f} s (ideal {ideal:.2f} s)   whole run {elapsed:5.2f} s")
        print("target: model busy >= 90% in Conveyor's best setting")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
