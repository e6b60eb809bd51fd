"""Per-call overhead of the in-process Python runtime: invocations/s with trivial handlers.

    .venv/bin/python benchmarks/python_handler.py [--seconds 2]

A SingleRecord job with a trivial model is bound by this overhead; the target is 30,000/s.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

from conveyor.runtimes.python_handler import PythonHandlerRuntime

HANDLERS = {
    "transform_fn returning its input": """
        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return input_data
        """,
    "identity input_fn/predict_fn/output_fn": """
        def model_fn(model_dir):
            return None

        def input_fn(input_data, content_type):
            return input_data

        def predict_fn(data, model):
            return data

        def output_fn(prediction, accept):
            return prediction
        """,
    "identity chain, every function taking context": """
        def model_fn(model_dir, context):
            return None

        def input_fn(input_data, content_type, context):
            return input_data

        def predict_fn(data, model, context):
            return data

        def output_fn(prediction, accept, context):
            return prediction
        """,
    "default chain, csv -> model.predict -> json": """
        class Model:
            def predict(self, data):
                return data[:, 0]

        def model_fn(model_dir):
            return Model()
        """,
}


def measure(source: str, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as model_dir:
        code = Path(model_dir, "code")
        code.mkdir()
        (code / "inference.py").write_text(textwrap.dedent(source))
        runtime = PythonHandlerRuntime(model_dir, {})
        runtime.start()
        try:
            invoke = runtime.invoke
            count = 0
            deadline = time.perf_counter() + seconds
            started = time.perf_counter()
            while time.perf_counter() < deadline:
                for _ in range(1000):
                    invoke(b"1.5,2,3", content_type="text/csv", accept="application/json", timeout=60)
                count += 1000
            return count / (time.perf_counter() - started)
        finally:
            runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per handler (default 2)")
    arguments = parser.parse_args()
    print(f"{'handler':<48} {'invocations/s':>14}")
    for name, source in HANDLERS.items():
        print(f"{name:<48} {measure(source, arguments.seconds):>14,.0f}")


if __name__ == "__main__":
    main()
