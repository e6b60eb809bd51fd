"""Which runtime runs a model, chosen by its container `Image` (the spec's decision 15).

- empty, `conveyor:python`, or a SageMaker framework image whose model data holds
  `code/inference.py` → the in-process Python handler runtime;
- `http://…`, `https://…` → an already running model server;
- `process:<command>` → a model server started as a local process per instance;
- anything else → a Docker image run as `docker run <image> serve`.
"""

from __future__ import annotations

import os
import re

from conveyor.runtimes.base import Runtime, RuntimeStartError
from conveyor.spec.model import ContainerSpec, ModelSpec

PYTHON_IMAGE = "conveyor:python"
FRAMEWORK_REPOSITORIES = re.compile(
    r"(^|/)(sagemaker-scikit-learn|sagemaker-xgboost|pytorch-inference|tensorflow-inference|mxnet-inference|"
    r"huggingface-pytorch-inference|huggingface-tensorflow-inference|sagemaker-pytorch|sagemaker-tensorflow-serving)(:|@|$)"
)


def runtime_kind(container: ContainerSpec, model_dir: str | None) -> str:
    """`python`, `http`, `process` or `docker` for one container."""
    image = (container.image or "").strip()
    if not image or image == PYTHON_IMAGE:
        return "python"
    if image.startswith(("http://", "https://")):
        return "http"
    if image.startswith("process:"):
        return "process"
    has_handler = model_dir is not None and os.path.isfile(os.path.join(model_dir, "code", "inference.py"))
    if FRAMEWORK_REPOSITORIES.search(image) and has_handler:
        return "python"
    return "docker"


def create_runtime(model: ModelSpec, model_dirs: list[str], environment: dict[str, str]) -> Runtime:
    """The runtime for a model's (single) container, not yet started."""
    if len(model.containers) > 1:
        raise RuntimeStartError(
            f"Model {model.name} is an inference pipeline of {len(model.containers)} containers; "
            "serial pipelines need the container runtime, which this version of Conveyor does not include yet."
        )
    container = model.primary
    model_dir = model_dirs[0] if model_dirs else None
    kind = runtime_kind(container, model_dir)
    if kind == "python":
        from conveyor.runtimes.python_handler import PythonHandlerRuntime

        if model_dir is None:
            raise RuntimeStartError(f"Model {model.name} has no ModelDataUrl: a Python handler model needs a model directory with code/inference.py.")
        return PythonHandlerRuntime(model_dir, environment)
    raise RuntimeStartError(
        f"Model {model.name} uses Image '{container.image}', which needs the {kind} container runtime; "
        "this version of Conveyor runs Python handler models (Image empty or 'conveyor:python', with code/inference.py)."
    )
