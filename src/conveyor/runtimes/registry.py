"""Which runtime runs a model: registered kinds, each a matcher and a factory, tried in order.

A kind's matcher looks at a `RuntimeTarget` (the container definition, its prepared model
directory, the environment) and says whether the kind runs it; the first kind that matches
builds the runtime. Conveyor's own kinds, in this order (docs/architecture.md, "Runtimes"):

1. `pipeline`: a model with several `Containers` (InferenceExecutionConfig.Mode = Serial) becomes
   a serial pipeline whose stages are matched one by one against the kinds below;
2. `python`: an empty Image, `conveyor:python`, or a SageMaker framework image whose handler
   (`SAGEMAKER_PROGRAM`, or `inference.py`) is in its code directory (`code/` in the model data,
   or the script-mode sources of `SAGEMAKER_SUBMIT_DIRECTORY`) → the in-process Python handler
   runtime, with that framework toolkit's defaults for the functions the handler leaves out;
3. `xgboost`: SageMaker's built-in XGBoost (a `sagemaker-xgboost` image, or the legacy `xgboost`
   algorithm image) with no user code → `builtin_xgboost`, in-process; after `python`, because
   the same image with `code/inference.py` is framework mode;
4. `kmeans`: SageMaker's built-in k-means image → `builtin_kmeans`, in-process;
5. `http`: `http://…` or `https://…` → an already running model server;
6. `process`: `process:<command>` → a model server started as a local process per instance;
7. `docker`: anything else → a Docker image run as `docker run <image> serve`.

`register_runtime` adds a kind ahead of `docker` (which matches everything), or ahead of any
named kind, so a new kind plugs in without editing this chain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from conveyor.runtimes.base import DEFAULT_STARTUP_TIMEOUT_SECONDS, Runtime, RuntimeStartError
from conveyor.runtimes.handler_code import PROGRAM_VARIABLE, HandlerCode, program
from conveyor.sagemaker.model import ContainerSpec, ModelSpec, built_in_algorithm

PYTHON_IMAGE = "conveyor:python"
FRAMEWORK_REPOSITORIES = re.compile(
    r"(^|/)(sagemaker-scikit-learn|sagemaker-xgboost|pytorch-inference|tensorflow-inference|mxnet-inference|"
    r"huggingface-pytorch-inference|huggingface-tensorflow-inference|sagemaker-pytorch|sagemaker-tensorflow-serving)(:|@|$)"
)
XGBOOST_REPOSITORY = re.compile(r"(^|/)sagemaker-xgboost(:|@|$)")
BATCH_VARIABLES = frozenset(
    {"SAGEMAKER_BATCH", "SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_BATCH_STRATEGY", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"}
)
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
PIPELINE_FIRST_PORT = 8080
"""Pipeline container i (from 0) is told to listen on SAGEMAKER_BIND_TO_PORT = 8080 + i."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How one instance runs its model: names for Docker containers, GPUs, the start-up wait."""

    job_name: str | None = None
    instance: int | None = None  # 0-based instance number within the job
    instance_type: str | None = None
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS  # bounds the wait for a server's /ping
    gpus: tuple[str, ...] | None = None  # the GPU devices the instance sees (none: CPU only); None: the machine's, untouched


@dataclass(frozen=True)
class RuntimeTarget:
    """What a runtime is asked to run: a model's containers with their prepared model data.

    A whole model is a target; so is each stage of a serial pipeline (`stage` set, one
    container). `model_dirs` holds one prepared directory per container (None for a container
    without ModelDataUrl), so matchers can look inside the model data; `code` the prepared
    script-mode sources of each container, where the engine fetched any."""

    model: ModelSpec
    containers: tuple[ContainerSpec, ...]
    model_dirs: tuple[str | None, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    options: RuntimeOptions = RuntimeOptions()
    stage: int | None = None
    code: tuple[HandlerCode | None, ...] = ()

    @classmethod
    def for_model(
        cls,
        model: ModelSpec,
        model_dirs: list[str],
        environment: Mapping[str, str],
        options: RuntimeOptions = RuntimeOptions(),
        code: tuple[HandlerCode | None, ...] = (),
    ) -> RuntimeTarget:
        """The target for a whole model; `model_dirs` go, in order, to the containers that have
        a ModelDataUrl (or one to each container when there are as many)."""
        containers = tuple(model.containers)
        code = code or (None,) * len(containers)
        return cls(model, containers, _directories(containers, model_dirs), dict(environment), options, code=code)

    @property
    def container(self) -> ContainerSpec:
        return self.containers[0]

    @property
    def model_dir(self) -> str | None:
        return self.model_dirs[0]

    @property
    def image(self) -> str:
        return (self.container.image or "").strip()

    @property
    def handler_code(self) -> HandlerCode | None:
        """Where a Python handler would be found: the prepared sources, or `code/` in the model data."""
        if self.code and self.code[0] is not None:
            return self.code[0]
        return HandlerCode(os.path.join(self.model_dir, "code")) if self.model_dir is not None else None

    @property
    def has_handler(self) -> bool:
        code = self.handler_code
        return code is not None and os.path.isfile(os.path.join(code.directory, program(self.environment)))

    @property
    def process_environment(self) -> dict[str, str]:
        """The environment of a model run on this machine: CUDA_VISIBLE_DEVICES names the
        instance's GPUs (empty for none), in place of any value the model or job set."""
        if self.options.gpus is None:
            return dict(self.environment)
        return {**self.environment, VISIBLE_DEVICES: ",".join(self.options.gpus)}

    @property
    def label(self) -> str:
        """How the job log names this container."""
        return self.container.hostname or self.image or PYTHON_IMAGE

    def stages(self) -> Iterator[RuntimeTarget]:
        """One target per container, each with its own environment (as in SageMaker, a
        pipeline container sees only its own model Environment, plus the batch variables and
        the job's Environment)."""
        code = self.code or (None,) * len(self.containers)
        for index, (container, model_dir) in enumerate(zip(self.containers, self.model_dirs)):
            environment = container_environment(self.model, index, self.environment) if len(self.containers) > 1 else self.environment
            yield replace(
                self, containers=(container,), model_dirs=(model_dir,), environment=environment,
                stage=index if len(self.containers) > 1 else None, code=(code[index],),
            )


Matcher = Callable[[RuntimeTarget], bool]
Factory = Callable[[RuntimeTarget], Runtime]


@dataclass(frozen=True)
class RuntimeKind:
    name: str
    matches: Matcher
    create: Factory


def _is_pipeline(target: RuntimeTarget) -> bool:
    return len(target.containers) > 1


def runs_handler_code(image: str) -> bool:
    """Whether a container of `image` runs the user's Python handler when it has one: Conveyor's
    own image, or a SageMaker framework image."""
    image = image.strip()
    return image in ("", PYTHON_IMAGE) or FRAMEWORK_REPOSITORIES.search(image) is not None


def _is_python(target: RuntimeTarget) -> bool:
    return target.image in ("", PYTHON_IMAGE) or (runs_handler_code(target.image) and target.has_handler)


def _is_builtin_xgboost(target: RuntimeTarget) -> bool:
    """The algorithm mode of the XGBoost image: no user module named, no handler in the model data."""
    image = target.image
    is_xgboost = XGBOOST_REPOSITORY.search(image) is not None or built_in_algorithm(image) == "xgboost"
    return is_xgboost and PROGRAM_VARIABLE not in target.environment and not target.has_handler


def _is_builtin_kmeans(target: RuntimeTarget) -> bool:
    return built_in_algorithm(target.image) == "kmeans"


def _is_http(target: RuntimeTarget) -> bool:
    return target.image.startswith(("http://", "https://"))


def _is_process(target: RuntimeTarget) -> bool:
    return target.image.startswith("process:")


def _pipeline(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.pipeline import SerialPipelineRuntime

    if target.model.inference_mode != "Serial":
        raise RuntimeStartError(
            f"Model {target.model.name} has InferenceExecutionConfig.Mode={target.model.inference_mode}; batch transform calls a "
            "multi-container model as a serial inference pipeline, so use Mode=Serial"
        )
    stages = list(target.stages())
    return SerialPipelineRuntime([create_runtime_for(stage) for stage in stages], [stage.label for stage in stages])


def _python(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.python_handler import PythonHandlerRuntime
    from conveyor.runtimes.toolkit_defaults import defaults_for

    code = target.handler_code
    if target.model_dir is None or code is None:
        raise RuntimeStartError(
            f"Model {target.model.name} has no ModelDataUrl: a Python handler model needs a model directory with code/inference.py."
        )
    return PythonHandlerRuntime(
        target.model_dir, target.process_environment, code_dir=code.directory, packages_dir=code.packages, defaults=defaults_for(target.image),
        decode_workers=target.container.decode_workers,
    )


def _builtin_model_dir(target: RuntimeTarget, algorithm: str, expected: str) -> str:
    if target.model_dir is None:
        raise RuntimeStartError(f"Model {target.model.name} has no ModelDataUrl: built-in {algorithm} needs its model data ({expected}).")
    return target.model_dir


def _builtin_xgboost(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.builtin_xgboost import BuiltinXGBoostRuntime

    return BuiltinXGBoostRuntime(_builtin_model_dir(target, "XGBoost", "xgboost-model"), target.environment, target.image)


def _builtin_kmeans(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.builtin_kmeans import BuiltinKMeansRuntime

    return BuiltinKMeansRuntime(_builtin_model_dir(target, "k-means", "model_algo-1"), target.environment)


def _http(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.http_server import HttpServerRuntime

    return HttpServerRuntime(target.image, startup_timeout=target.options.startup_timeout)


def _output_prefix(target: RuntimeTarget) -> str:
    """Pipeline stages tag their server's output lines with the container's name."""
    return f"[{target.label}] " if target.stage is not None else ""


def _process(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.process_server import PROCESS_PREFIX, ProcessServerRuntime

    return ProcessServerRuntime(
        target.image[len(PROCESS_PREFIX) :].strip(),
        model_dir=target.model_dir,
        environment=target.process_environment,
        startup_timeout=target.options.startup_timeout,
        output_prefix=_output_prefix(target),
    )


def _docker(target: RuntimeTarget) -> Runtime:
    from conveyor.runtimes.docker_server import CONTAINER_PORT, DockerServerRuntime

    port, environment = CONTAINER_PORT, dict(target.environment)
    if target.stage is not None:  # pipeline containers listen on SAGEMAKER_BIND_TO_PORT (docs/containers.md)
        port = PIPELINE_FIRST_PORT + target.stage
        low = 9000 + 100 * target.stage
        environment.update({"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_SAFE_PORT_RANGE": f"{low}-{low + 99}"})
    options = target.options
    return DockerServerRuntime(
        target.image,
        model_dir=target.model_dir,
        environment=environment,
        startup_timeout=options.startup_timeout,
        job_name=options.job_name,
        model_name=target.model.name,
        instance=options.instance,
        instance_type=options.instance_type,
        gpus=options.gpus,
        container_port=port,
        output_prefix=_output_prefix(target),
    )


_KINDS: list[RuntimeKind] = [
    RuntimeKind("pipeline", _is_pipeline, _pipeline),
    RuntimeKind("python", _is_python, _python),
    RuntimeKind("xgboost", _is_builtin_xgboost, _builtin_xgboost),
    RuntimeKind("kmeans", _is_builtin_kmeans, _builtin_kmeans),
    RuntimeKind("http", _is_http, _http),
    RuntimeKind("process", _is_process, _process),
    RuntimeKind("docker", lambda _target: True, _docker),
]


def register_runtime(name: str, matches: Matcher, create: Factory, *, before: str = "docker") -> None:
    """Plug in a kind of runtime, tried just ahead of the kind named `before` (by default
    `docker`, the catch-all). Registering an existing name replaces that kind in place."""
    kind = RuntimeKind(name, matches, create)
    names = runtime_kinds()
    if name in names:
        _KINDS[names.index(name)] = kind
        return
    if before not in names:
        raise ValueError(f"no runtime kind {before!r} to register {name!r} before (known: {', '.join(names)})")
    _KINDS.insert(names.index(before), kind)


def runtime_kinds() -> list[str]:
    """The registered kinds' names, in the order they are tried."""
    return [kind.name for kind in _KINDS]


def kind_for(target: RuntimeTarget) -> RuntimeKind:
    """The first registered kind whose matcher takes `target`."""
    for kind in _KINDS:
        if kind.matches(target):
            return kind
    raise RuntimeStartError(f"no runtime kind runs Image {target.image!r} (kinds: {', '.join(runtime_kinds())})")


def create_runtime_for(target: RuntimeTarget) -> Runtime:
    """The runtime of the first kind that matches `target`, not yet started."""
    return kind_for(target).create(target)


def create_runtime(
    model: ModelSpec,
    model_dirs: list[str],
    environment: Mapping[str, str],
    *,
    job_name: str | None = None,
    instance: int | None = None,
    instance_type: str | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
    code: tuple[HandlerCode | None, ...] = (),
    gpus: tuple[str, ...] | None = None,
) -> Runtime:
    """The runtime for a whole model, not yet started.

    `model_dirs` holds one prepared directory per container that has a ModelDataUrl, in order;
    `environment` is the job's merged batch environment (every container's Environment, the
    SAGEMAKER_* batch variables, the job's Environment); `code` each container's prepared
    script-mode sources, if any; `gpus` the instance's GPU devices."""
    options = RuntimeOptions(job_name=job_name, instance=instance, instance_type=instance_type, startup_timeout=startup_timeout, gpus=gpus)
    return create_runtime_for(RuntimeTarget.for_model(model, model_dirs, environment, options, code))


def container_environment(model: ModelSpec, index: int, environment: Mapping[str, str]) -> dict[str, str]:
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


def _directories(containers: tuple[ContainerSpec, ...], model_dirs: list[str]) -> tuple[str | None, ...]:
    """Each container's model directory: the prepared ones go, in order, to the containers
    that have a ModelDataUrl."""
    if len(model_dirs) == len(containers):
        return tuple(model_dirs)
    remaining = iter(model_dirs)
    return tuple(next(remaining, None) if container.model_data_url else None for container in containers)
