"""A model's `requirements.txt`, installed once into a directory of its own, where allowed.

SageMaker's framework containers pip-install the handler's `requirements.txt` when they start.
Conveyor does so only when the user allows it (`Settings.install_requirements`), since it runs
whatever the file names: the packages go into `<CONVEYOR_HOME>/cache/environments/<hash>`, one
directory per distinct file (and Python version), installed by pip with its own configuration
(`PIP_INDEX_URL`, `PIP_FIND_LINKS`, …), so offline and private indexes work. The instance puts
that directory ahead of Conveyor's own packages on `sys.path`.

Packages that Conveyor's runtime has already imported cannot be swapped inside the instance: a
requirement that installs another version of one of Conveyor's own dependencies is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from packaging.requirements import Requirement

INSTALLED_MARKER = ".conveyor-installed"
MESSAGE_LIMIT = 2000


class RequirementsError(Exception):
    """The requirements cannot be installed, or cannot run beside Conveyor; the message says why."""


def install_requirements(requirements: str, cache_root: str) -> str:
    """The directory holding `requirements`' packages, installed now unless an earlier job did."""
    with open(requirements, "rb") as handle:
        digest = hashlib.sha256(handle.read() + sys.version.encode()).hexdigest()[:24]
    target = os.path.join(cache_root, digest)
    if not os.path.exists(os.path.join(target, INSTALLED_MARKER)):
        _install(requirements, target)
    _check_coexistence(requirements, target)
    return target


def _install(requirements: str, target: str) -> None:
    partial = f"{target}.{uuid.uuid4().hex}.partial"
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
        "--no-warn-script-location", "--target", partial, "--requirement", requirements,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise RequirementsError(f"installing {requirements} failed (pip exited with code {result.returncode}): {output[-MESSAGE_LIMIT:]}")
        open(os.path.join(partial, INSTALLED_MARKER), "w").close()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.rename(partial, target)
        except OSError:  # another job installed the same file meanwhile: keep theirs
            if not os.path.exists(os.path.join(target, INSTALLED_MARKER)):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_coexistence(requirements: str, target: str) -> None:
    """Refuse a package of Conveyor's own runtime installed at another version than Conveyor's."""
    import importlib.metadata  # here, with packaging: most jobs have no requirements.txt, and both cost every command's start

    from packaging.utils import canonicalize_name

    ours = {canonicalize_name(requirement.name): requirement for requirement in _conveyor_requirements()}
    for distribution in importlib.metadata.distributions(path=[target]):
        name = canonicalize_name(distribution.metadata["Name"])
        if name not in ours:
            continue
        try:
            running = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if distribution.version != running:
            raise RequirementsError(
                f"{requirements} installs {distribution.metadata['Name']} {distribution.version}, but Conveyor's runtime "
                f"needs {ours[name]} ({running} installed) in the same process; pin {distribution.metadata['Name']}=={running} "
                "or run this model in a container model (its own image) instead"
            )


def _conveyor_requirements() -> list[Requirement]:
    """The packages Conveyor's base install needs (extras left out)."""
    import importlib.metadata

    from packaging.requirements import Requirement

    requirements = [Requirement(text) for text in importlib.metadata.requires("conveyor") or []]
    return [requirement for requirement in requirements if requirement.marker is None]
