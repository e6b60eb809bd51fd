"""A model whose Python handler is broken is refused at CreateModel, not when a job runs.

Only what can be known cheaply then is checked: a container that runs in this process (an empty
Image or `conveyor:python`) with model data in a local folder must hold its handler,
`code/<SAGEMAKER_PROGRAM or inference.py>`, and the handler must compile. Models that run
otherwise (containers, remote or archived model data) are checked when a job starts, as before,
and the same faults keep their run-time message there.
"""

from __future__ import annotations

import os

from conveyor.errors import FieldError, ValidationException
from conveyor.sagemaker.model import ModelSpec
from conveyor.storage.uri import parse_uri

IN_PROCESS_IMAGES = ("", "conveyor:python")
PROGRAM_VARIABLE = "SAGEMAKER_PROGRAM"


def check_local_handler(model: ModelSpec, *, primary: bool) -> None:
    """Raise ValidationException naming the container's ModelDataUrl when its handler is missing
    or does not compile. `primary`: the request used PrimaryContainer (not Containers)."""
    errors = []
    for index, container in enumerate(model.containers):
        if (container.image or "") not in IN_PROCESS_IMAGES or not container.model_data_url:
            continue
        scheme, _, model_dir = parse_uri(container.model_data_url)
        if scheme != "file" or not os.path.isdir(model_dir):
            continue
        program = container.environment.get(PROGRAM_VARIABLE) or "inference.py"
        program = program if program.endswith(".py") else program + ".py"
        path = os.path.join(model_dir, "code", program)
        field = "primaryContainer.modelDataUrl" if primary else f"containers.{index + 1}.member.modelDataUrl"
        problem = _handler_problem(path)
        if problem is not None:
            errors.append(FieldError(field, container.model_data_url, problem, message=f"Model '{model.name}': {problem}"))
    if errors:
        raise ValidationException(errors)


def _handler_problem(path: str) -> str | None:
    """What keeps the handler at `path` from loading, or None."""
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except FileNotFoundError:
        return (
            f"the model directory has no {os.path.join('code', os.path.basename(path))}: the Python runtime expects a "
            "SageMaker inference handler there, a module defining model_fn(model_dir) and optionally "
            "input_fn/predict_fn/output_fn or transform_fn"
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
