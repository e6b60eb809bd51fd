"""Built-in XGBoost in-process against a hand loop calling `booster.predict`, same payloads, same
run; and the start-up of a job whose handler's requirements.txt is already installed (cached)
against one without requirements.

    .venv/bin/python benchmarks/builtin_models.py [--payloads 40] [--rows 2000] [--repeat 3] [--startups 5]

The model (200 trees of depth 6 on 20 features, binary:logistic) is trained here and saved as a
SageMaker model directory (`xgboost-model`). Each payload is `--rows` CSV lines (MultiRecord).
The hand loop does the least a user would write: `np.loadtxt`, `DMatrix`, `booster.predict`,
one `str()` per prediction a line. Conveyor's runtime does what the sagemaker-xgboost image
does (sniffed delimiter, the checks, the same lines). Both run one payload at a time in this
process; the best of `--repeat` interleaved rounds is kept. The target is ≥ 0.9×.

Start-up: `conveyor transform` of a one-line object with a trivial handler, with and without a
requirements.txt (a small package built here, installed offline with --install-requirements;
the first run installs it, the measured runs find it cached), interleaved, median of
`--startups` runs each. The target is a difference within 0.3 s.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost

from conveyor.runtimes.builtin_xgboost import BuiltinXGBoostRuntime

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.wheels import make_wheel  # noqa: E402


def make_model(directory: str, features: int) -> xgboost.Booster:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20_000, features)).astype(np.float32)
    label = (data[:, 0] + data[:, 1] * data[:, 2] > 0).astype(int)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1}, xgboost.DMatrix(data, label=label), 200)
    booster.save_model(os.path.join(directory, "xgboost-model"))
    return booster


def make_payloads(count: int, rows: int, features: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    payloads = []
    for _ in range(count):
        buffer = io.StringIO()
        np.savetxt(buffer, rng.normal(size=(rows, features)), delimiter=",", fmt="%.6g")
        payloads.append(buffer.getvalue().encode())
    return payloads


def hand_loop(booster: xgboost.Booster, payloads: list[bytes]) -> list[bytes]:
    answers = []
    for payload in payloads:
        matrix = np.loadtxt(io.BytesIO(payload), delimiter=",", ndmin=2)
        predictions = booster.predict(xgboost.DMatrix(matrix))
        answers.append(("\n".join(map(str, predictions.tolist())) + "\n").encode())
    return answers


def conveyor_loop(runtime: BuiltinXGBoostRuntime, payloads: list[bytes]) -> list[bytes]:
    return [runtime.invoke(payload, content_type="text/csv", accept="text/csv", timeout=600) for payload in payloads]


HANDLER = "def model_fn(model_dir):\n    return None\n\ndef transform_fn(model, body, content_type, accept):\n    return body\n"


def startup_seconds(model: Path, root: Path, install: bool, environment: dict[str, str]) -> float:
    """Wall time of one `conveyor transform` of a one-line object."""
    (root / "in").mkdir(parents=True, exist_ok=True)
    (root / "in" / "one.csv").write_text("1\n")
    command = [sys.executable, "-m", "conveyor", "transform", "--model", str(model), "--input", str(root / "in"),
               "--output", str(root / f"out-{time.monotonic_ns()}"), "--content-type", "text/csv", "--quiet"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run([*command, *(["--install-requirements"] if install else [])], check=True, env=environment, capture_output=True)
    return time.perf_counter() - start


def startup(runs: int) -> tuple[float, float]:
    """Median start-up without requirements, and with its requirements already installed."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        make_wheel(root / "wheels", "startup-probe", "1.0", "startup_probe", "")
        models = {}
        for name, requirements in (("plain", None), ("with-requirements", "startup-probe==1.0\n")):
            code = root / name / "code"
            code.mkdir(parents=True)
            (code / "inference.py").write_text(HANDLER)
            if requirements:
                (code / "requirements.txt").write_text(requirements)
            models[name] = code.parent
        environment = {**os.environ, "CONVEYOR_HOME": str(root / "home"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(root / "wheels")}
        startup_seconds(models["with-requirements"], root, True, environment)  # installs, once
        plain, cached = [], []
        for _ in range(runs):
            plain.append(startup_seconds(models["plain"], root, False, environment))
            cached.append(startup_seconds(models["with-requirements"], root, True, environment))
    return statistics.median(plain), statistics.median(cached)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payloads", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--startups", type=int, default=5)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        make_model(directory, arguments.features)
        booster = xgboost.Booster()
        booster.load_model(os.path.join(directory, "xgboost-model"))
        runtime = BuiltinXGBoostRuntime(directory, {"SAGEMAKER_BATCH": "true"}, "sagemaker-xgboost:1.7-1")
        runtime.start()
        payloads = make_payloads(arguments.payloads, arguments.rows, arguments.features)
        megabytes = sum(map(len, payloads)) / 2**20
        records = arguments.payloads * arguments.rows

        best = {"hand loop (booster.predict)": float("inf"), "conveyor built-in XGBoost": float("inf")}
        outputs: dict[str, list[bytes]] = {}
        for _ in range(arguments.repeat):
            for name, run in (("hand loop (booster.predict)", lambda: hand_loop(booster, payloads)), ("conveyor built-in XGBoost", lambda: conveyor_loop(runtime, payloads))):
                start = time.perf_counter()
                outputs[name] = run()
                best[name] = min(best[name], time.perf_counter() - start)
        if len(set(map(tuple, outputs.values()))) != 1:
            raise SystemExit("the two loops answered differently")

    print(f"xgboost {xgboost.__version__}, {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"{arguments.payloads} payloads of {arguments.rows} rows × {arguments.features} features ({megabytes:.1f} MiB)")  # fmt: skip
    print(f"{'run':32} {'seconds':>8} {'MB/s':>7} {'records/s':>10}")
    for name, seconds in best.items():
        print(f"{name:32} {seconds:8.3f} {megabytes / seconds:7.1f} {records / seconds:10,.0f}")
    hand, ours = best.values()
    print(f"ratio (conveyor / hand loop throughput): {hand / ours:.2f}  (target ≥ 0.9)")
    plain, cached = startup(arguments.startups)
    print(f"\n{'job start-up (median of ' + str(arguments.startups) + ')':44} {'seconds':>8}")
    print(f"{'one-line job, no requirements':44} {plain:8.3f}")
    print(f"{'one-line job, requirements cached':44} {cached:8.3f}")
    print(f"difference: {cached - plain:+.3f} s  (target within 0.3 s)")


if __name__ == "__main__":
    main()
