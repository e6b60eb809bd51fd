"""A Python handler's code, prepared once per job before any instance starts.

Script mode's sources (`SAGEMAKER_SUBMIT_DIRECTORY` outside the model data) are fetched and
unpacked like model data, cached by location and ETag; the handler's `requirements.txt` is
installed where the user allows it, and otherwise reported in the job log with the way to
allow it (docs/semantics.md, "Script mode").
"""

from __future__ import annotations

import os
from typing import Callable

from conveyor.engine.model_data import model_directory
from conveyor.engine.requirements import install_requirements
from conveyor.runtimes.handler_code import SUBMIT_DIRECTORY_VARIABLE, HandlerCode, submit_directory
from conveyor.runtimes.registry import runs_handler_code
from conveyor.sagemaker.model import ContainerSpec
from conveyor.settings import Settings

INSTALL_HINT = "start Conveyor with --install-requirements (or CONVEYOR_INSTALL_REQUIREMENTS=true) to install it"


def prepare_handler_code(container: ContainerSpec, model_dir: str | None, settings: Settings, log: Callable[[str], None]) -> HandlerCode | None:
    """The container's handler sources and installed requirements; None for a container that
    runs no handler of the user's (a built-in algorithm, a server, a Docker image)."""
    if not runs_handler_code(container.image or ""):
        return None
    submit = submit_directory(container.environment)
    if submit is not None:
        cache = os.path.join(settings.home, "cache", "models")
        directory = model_directory(submit, cache, settings.storage_for, field=SUBMIT_DIRECTORY_VARIABLE)
    elif model_dir is not None:
        directory = os.path.join(model_dir, "code")
    else:
        return None
    requirements = os.path.join(directory, "requirements.txt")
    if not os.path.isfile(requirements):
        return HandlerCode(directory)
    shown = "requirements.txt of the model's code" if submit is None else f"requirements.txt of {submit}"
    if not settings.install_requirements:
        log(f"The {shown} was not installed: installing a model's requirements runs any code they name, so it is off; {INSTALL_HINT}.")
        return HandlerCode(directory)
    packages = install_requirements(requirements, os.path.join(settings.home, "cache", "environments"))
    log(f"Installed the {shown} (kept in {packages}).")
    return HandlerCode(directory, packages)
