"""Which runtime runs a model, chosen by its container `Image` (the spec's decision 15).

- empty, `conveyor:python`, or a SageMaker framework image whose model data holds
  `code/inference.py` → the in-process Python handler runtime;
- `http://…`, `https://…` → an already running model server;
- `process:<command>` → a model server started as a local process per instance;
- anything else → a Docker image run as `docker run <image> serve`.

A model with several `Containers` (InferenceExecutionConfig.Mode = Serial) becomes a serial
pipeline of one such runtime per container.
"""

from __future__ import annotations

import os
import re

from conveyor.runtimes.base import Runtime, RuntimeStartError
from conveyor.runtimes.http_server import DEFAULT_STARTUP_TIMEOUT_SECONDS
from conveyor.spec.model import ContainerSpec, ModelSpec

PYTHON_IMAGE = "conveyor:python"
FRAMEWORK_REPOSITORIES = re.compile(
    r"(^|/)(sagemaker-scikit-learn|sagemaker-xgboost|pytorch-inference|tensorflow-inference|mxnet-inference|"
    r"huggingface-pytorch-inference|huggingface-tensorflow-inference|sagemaker-pytorch|sagemaker-tensorflow-serving)(:|@|$)"
)
BATCH_VARIABLES = frozenset(
    {"SAGEMAKER_BATCH", "SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_BATCH_STRATEGY", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"}
)
PIPELINE_FIRST_PORT = 8080
"""Pipeline container i (from 0) is told to listen on SAGEMAKER_BIND_TO_PORT = 8080 + i."""


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


def create_runtime(
    model: ModelSpec,
    model_dirs: list[str],
    environment: dict[str, str],
    *,
    job_name: str | None = None,
    instance: int | None = None,
    instance_type: str | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
) -> Runtime:
    """The runtime for a model, not yet started.

    `model_dirs` holds one prepared directory per container that has a ModelDataUrl, in order;
    `environment` is the job's merged batch environment (every container's Environment, the
    SAGEMAKER_* batch variables, the job's Environment). `job_name` and `instance` name Docker
    containers; `instance_type` decides whether they get GPUs; `startup_timeout` bounds the
    wait for a server's /ping."""
    containers = model.containers
    directories = _directories(containers, model_dirs)
    options = {"job_name": job_name, "instance": instance, "instance_type": instance_type, "startup_timeout": startup_timeout}
    if len(containers) == 1:
        return _container_runtime(model, 0, directories[0], dict(environment), pipeline=False, **options)
    if model.inference_mode != "Serial":
        raise RuntimeStartError(
            f"Model {model.name} has InferenceExecutionConfig.Mode={model.inference_mode}; batch transform calls a "
            "multi-container model as a serial inference pipeline, so use Mode=Serial"
        )
    from conveyor.runtimes.pipeline import SerialPipelineRuntime

    stages = [
        _container_runtime(model, index, directories[index], container_environment(model, index, environment), pipeline=True, **options)
        for index in range(len(containers))
    ]
    return SerialPipelineRuntime(stages, [_container_label(container) for container in containers])


def container_environment(model: ModelSpec, index: int, environment: dict[str, str]) -> dict[str, str]:
    """One pipeline container's environment: its own Environment, then the batch variables and
    the job's Environment taken from the merged `environment` (each container sees only its own
    model Environment, as in SageMaker)."""
    merged_model: dict[str, str] = {}
    for container in model.containers:
        merged_model.update(container.environment)
    overlay = {
        key: value
        for key, value in environment.items()
        if key in BATCH_VARIABLES or key not in merged_model or merged_model[key] != value
    }
    return {**model.containers[index].environment, **overlay}


def _directories(containers: list[ContainerSpec], model_dirs: list[str]) -> list[str | None]:
    """Each container's model directory: the prepared ones go, in order, to the containers
    that have a ModelDataUrl."""
    remaining = iter(model_dirs)
    if len(model_dirs) == len(containers):
        return list(model_dirs)
    return [next(remaining, None) if container.model_data_url else None for container in containers]


def _container_label(container: ContainerSpec) -> str:
    return container.hostname or (container.image or "").strip() or PYTHON_IMAGE


def _container_runtime(
    model: ModelSpec,
    index: int,
    model_dir: str | None,
    environment: dict[str, str],
    *,
    pipeline: bool,
    job_name: str | None,
    instance: int | None,
    instance_type: str | None,
    startup_timeout: float,
) -> Runtime:
    container = model.containers[index]
    kind = runtime_kind(container, model_dir)
    image = (container.image or "").strip()
    prefix = f"[{_container_label(container)}] " if pipeline else ""
    if kind == "python":
        from conveyor.runtimes.python_handler import PythonHandlerRuntime

        if model_dir is None:
            raise RuntimeStartError(f"Model {model.name} has no ModelDataUrl: a Python handler model needs a model directory with code/inference.py.")
        return PythonHandlerRuntime(model_dir, environment)
    if kind == "http":
        from conveyor.runtimes.http_server import HttpServerRuntime

        return HttpServerRuntime(image, startup_timeout=startup_timeout)
    if kind == "process":
        from conveyor.runtimes.process_server import PROCESS_PREFIX, ProcessServerRuntime

        command = image[len(PROCESS_PREFIX) :].strip()
        return ProcessServerRuntime(
            command, model_dir=model_dir, environment=environment, startup_timeout=startup_timeout, output_prefix=prefix
        )
    from conveyor.runtimes.docker_server import CONTAINER_PORT, DockerServerRuntime

    port = CONTAINER_PORT
    if pipeline:  # pipeline containers listen on SAGEMAKER_BIND_TO_PORT [DG inference-pipeline-real-time]
        port = PIPELINE_FIRST_PORT + index
        low = 9000 + 100 * index
        environment = {**environment, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_SAFE_PORT_RANGE": f"{low}-{low + 99}"}
    return DockerServerRuntime(
        image,
        model_dir=model_dir,
        environment=environment,
        startup_timeout=startup_timeout,
        job_name=job_name,
        model_name=model.name,
        instance=instance,
        instance_type=instance_type,
        container_port=port,
        output_prefix=prefix,
    )
