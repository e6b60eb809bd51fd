"""A model whose Python handler is broken is refused at CreateModel, not when a job runs; so is
parallel decode (CONVEYOR_DECODE_WORKERS) asked of a model that runs no Python handler here.

Only what can be known cheaply then is checked, for a container that runs its handler in this
process (`runtimes.registry.runs_handler_code`): where its sources are a local folder (script
mode's SAGEMAKER_SUBMIT_DIRECTORY, else `code/` in model data that is a local folder), the
handler `<SAGEMAKER_PROGRAM or inference.py>` must be there and compile. Conveyor's own image
must have it; a framework image is checked where it names or holds one (without, it may be the
built-in algorithm). Models that run otherwise (containers, remote or archived sources) are
checked when a job starts, as before, and the same faults keep their run-time message there.
"""

from __future__ import annotations

import os

from conveyor.errors import FieldError, ValidationException
from conveyor.runtimes.handler_code import PROGRAM_VARIABLE, SUBMIT_DIRECTORY_VARIABLE, program, submit_directory
from conveyor.runtimes.registry import PYTHON_IMAGE, runs_handler_code
from conveyor.sagemaker.extensions import DECODE_WORKERS
from conveyor.sagemaker.model import ContainerSpec, ModelSpec
from conveyor.storage.uri import parse_uri


def check_local_handler(model: ModelSpec, *, primary: bool) -> None:
    """Raise ValidationException naming the container's ModelDataUrl when its handler is missing
    or does not compile. `primary`: the request used PrimaryContainer (not Containers)."""
    errors = []
    for index, container in enumerate(model.containers):
        image = (container.image or "").strip()
        located = _local_sources(container) if runs_handler_code(image) else None
        if located is None:
            continue
        member, value, folder = located
        path = os.path.join(folder, program(container.environment))
        own_image = image in ("", PYTHON_IMAGE)
        if not (own_image or PROGRAM_VARIABLE in container.environment or os.path.exists(path)):
            continue  # a framework image with no handler: its built-in algorithm, or a container
        field = ("primaryContainer" if primary else f"containers.{index + 1}.member") + f".{member}"
        problem = _handler_problem(path, member)
        if problem is not None:
            errors.append(FieldError(field, value, problem, message=f"Model '{model.name}': {problem}"))
    if errors:
        raise ValidationException(errors)


def _local_sources(container: ContainerSpec) -> tuple[str, str, str] | None:
    """(field, value, folder) of the handler's sources when they are a local folder."""
    submit = submit_directory(container.environment)
    if submit is not None:
        scheme, _, folder = parse_uri(submit)
        return ("environment", f"{SUBMIT_DIRECTORY_VARIABLE}={submit}", folder) if scheme == "file" and os.path.isdir(folder) else None
    if not container.model_data_url:
        return None
    scheme, _, model_dir = parse_uri(container.model_data_url)
    return ("modelDataUrl", container.model_data_url, os.path.join(model_dir, "code")) if scheme == "file" and os.path.isdir(model_dir) else None


def _handler_problem(path: str, member: str) -> str | None:
    """What keeps the handler at `path` from loading, or None; `member` says where the sources
    came from (`modelDataUrl`: code/ in the model directory; `environment`: a submit directory)."""
    where, shown = ("the model directory", os.path.join("code", os.path.basename(path))) if member == "modelDataUrl" else (
        f"the submit directory {os.path.dirname(path)}", os.path.basename(path)
    )
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except FileNotFoundError:
        return (
            f"{where} has no {shown}: the Python runtime expects a SageMaker inference handler there, a module defining "
            "model_fn(model_dir) and optionally input_fn/predict_fn/output_fn or transform_fn"
        )
    except OSError as error:
        return f"cannot read the handler {path}: {error.strerror}"
    try:
        compile(source, path, "exec")
    except SyntaxError as error:
        return f"the handler {path} does not compile: {error.msg} (line {error.lineno})"
    except ValueError as error:  # null bytes in the source
        return f"the handler {path} does not compile: {error}"
    return None


def check_decode_workers(model: ModelSpec, *, primary: bool, job_decode_workers: int | None = None) -> None:
    """Raise ValidationException where CONVEYOR_DECODE_WORKERS (a container's, or the job's,
    which reaches every container) is set for a container that does not run a Python handler
    in Conveyor's process: its input_fn and output_fn are what the workers run (docs/models.md,
    "Parallel decode")."""
    errors = []
    for index, container in enumerate(model.containers):
        workers = job_decode_workers if job_decode_workers is not None else container.decode_workers
        image = (container.image or "").strip()
        if workers is None or runs_handler_code(image):
            continue
        where = "primaryContainer" if primary else f"containers.{index + 1}.member"
        field = f"environment.{DECODE_WORKERS}" if job_decode_workers is not None else f"{where}.environment.{DECODE_WORKERS}"
        problem = (
            f"Environment {DECODE_WORKERS}='{workers}' runs a Python handler's input_fn and output_fn in worker processes, "
            f"but Model '{model.name}' {where} has Image '{image}', which runs no Python handler in Conveyor's process "
            f"(only an empty Image, {PYTHON_IMAGE} or a SageMaker framework image with code/inference.py does)"
        )
        errors.append(FieldError(field, str(workers), "needs a Python handler model", message=problem))
    if errors:
        raise ValidationException(errors)
