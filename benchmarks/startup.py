"""Start-up: a one-line job with a trivial handler against starting Python and importing numpy.

Every `conveyor transform` pays a fixed cost before its first payload: the command's imports,
the request's validation against botocore's model, the instance process and the model's load,
and at the end the instances' shutdown. This script times, alternately, --rounds times each:
  python -c "import numpy"     the floor any Python inference job pays
  conveyor transform           one one-line CSV object, an identity transform_fn
and prints the medians and their difference (the issue's target: at most 0.5 s more).
With --breakdown it also times the parts in this process, once each, the way docs/benchmarks.md
lists them.

    .venv/bin/python benchmarks/startup.py --rounds 5 --breakdown
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HANDLER = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, accept
'''

PARTS = {
    "interpreter": "pass",
    "import numpy": "import numpy",
    "import conveyor.cli.transform": "import conveyor.cli.transform",
    "import conveyor.engine.worker (an instance's imports)": "import conveyor.engine.worker",
    "load botocore's SageMaker model": "from conveyor.sagemaker.shapes import service_model; service_model()",
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr.decode()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="also time each part of the start-up once")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="conveyor-startup-"))
    try:
        (work / "model" / "code").mkdir(parents=True)
        (work / "model" / "code" / "inference.py").write_text(HANDLER)
        (work / "in.csv").write_text("1,2,3\n")
        conveyor = [
            str(Path(sys.executable).with_name("conveyor")), "transform", "--input", str(work / "in.csv"), "--output", str(work / "out"),
            "--model", str(work / "model"), "--content-type", "text/csv", "--quiet",
        ]  # fmt: skip
        numpy_times, conveyor_times = [], []
        for _ in range(args.rounds):
            numpy_times.append(timed([sys.executable, "-c", "import numpy"]))
            shutil.rmtree(work / "out", ignore_errors=True)
            conveyor_times.append(timed(conveyor))
        floor, job = statistics.median(numpy_times), statistics.median(conveyor_times)
        print(f"median of {args.rounds}: python -c 'import numpy' {floor:.2f} s, one-line job {job:.2f} s")
        print(f"one-line job - import numpy: {job - floor:.2f} s   target <= 0.5 s")
        if args.breakdown:
            print("parts, each timed once in a fresh interpreter:")
            for name, code in PARTS.items():
                print(f"  {name:55} {timed([sys.executable, '-c', code]):.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
