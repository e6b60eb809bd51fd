"""Which model kinds a server runs (`--runtimes`): a model of another kind is refused at
CreateModel (and at CreateTransformJob, for models created before the server was restricted).

The registry's matchers decide a model's kind; this module only names what they decide in the
setting's words (`xgboost` and `kmeans` are `builtin`) and refuses what the setting leaves out.
Some matchers look inside the model data (a framework image runs the user's `code/inference.py`
when the model data holds one). Model data in a local folder is looked at now; other model data
(S3, an archive) cannot be, so such a container must be allowed both with and without a handler.
"""

from __future__ import annotations

import os
import tempfile

from conveyor.errors import FieldError, ValidationException
from conveyor.runtimes.registry import RuntimeTarget, kind_for
from conveyor.sagemaker.model import ModelSpec
from conveyor.settings import RUNTIME_CHOICES
from conveyor.storage.uri import parse_uri

BUILTIN_KINDS = frozenset({"xgboost", "kmeans"})
"""Registered kinds that run SageMaker's built-in algorithms in Conveyor's own code."""

WHAT_EACH_RUNS = {
    "builtin": "SageMaker's built-in algorithms in Conveyor's code",
    "python": "the user's Python handler code on the server's host",
    "process": "a command on the server's host",
    "http": "calls to a model server at the URL in Image",
    "docker": "a Docker image on the server's host",
}


def setting_kind(registered: str) -> str:
    """The `--runtimes` name of a registered kind."""
    return "builtin" if registered in BUILTIN_KINDS else registered


def check_allowed_runtimes(model: ModelSpec, allowed: tuple[str, ...], *, primary: bool) -> None:
    """Raise ValidationException naming each container whose kind `allowed` leaves out, and why."""
    if tuple(allowed) == RUNTIME_CHOICES:
        return
    errors = []
    environment = {key: value for container in model.containers for key, value in container.environment.items()}
    for index, stage in enumerate(RuntimeTarget.for_model(model, [], environment).stages()):
        container = stage.container
        refused = sorted({kind for kind in _possible_kinds(stage) if kind not in allowed}, key=_order)
        if not refused:
            continue
        field = "primaryContainer.image" if primary else f"containers.{index + 1}.member.image"
        runs = "; ".join(f"'{kind}' runs {WHAT_EACH_RUNS.get(kind, 'a runtime plugged into this server')}" for kind in refused)
        problem = (
            f"Image '{container.image or ''}' runs as the {' or '.join(map(repr, refused))} kind, which this server does "
            f"not run ({runs}); it runs only {','.join(allowed)} (--runtimes, CONVEYOR_RUNTIMES)"
        )
        errors.append(FieldError(field, container.image or "", problem, message=f"Model '{model.name}': {problem}"))
    if errors:
        raise ValidationException(errors)


def _order(kind: str) -> int:
    return RUNTIME_CHOICES.index(kind) if kind in RUNTIME_CHOICES else len(RUNTIME_CHOICES)


def _possible_kinds(stage: RuntimeTarget) -> set[str]:
    """The kinds the container may run as: decided now when its model data is a local folder,
    else both with and without a handler in the model data."""
    url = stage.container.model_data_url
    if url:
        scheme, _, path = parse_uri(url)
        if scheme == "file" and os.path.isdir(path):
            return {setting_kind(kind_for(_with_dir(stage, path)).name)}
    kinds = {setting_kind(kind_for(_with_dir(stage, None)).name)}
    with tempfile.TemporaryDirectory(prefix="conveyor-kind-") as stand_in:
        os.makedirs(os.path.join(stand_in, "code"))
        open(os.path.join(stand_in, "code", "inference.py"), "wb").close()
        kinds.add(setting_kind(kind_for(_with_dir(stage, stand_in)).name))
    return kinds


def _with_dir(stage: RuntimeTarget, model_dir: str | None) -> RuntimeTarget:
    return RuntimeTarget(stage.model, stage.containers, (model_dir,), stage.environment, stage.options, stage.stage)
