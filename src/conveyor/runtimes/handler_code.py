"""Where a Python handler's code lives, as SageMaker's framework containers find it.

The SageMaker SDK tells a framework container where the user's code is through two variables
of the container's Environment (script mode): `SAGEMAKER_PROGRAM`, the handler module's file,
and `SAGEMAKER_SUBMIT_DIRECTORY`, the source directory, which is either an archive or folder of
sources (`s3://…/sourcedir.tar.gz`, as SDK 2.x sets it for SKLearnModel and XGBoostModel) or
`/opt/ml/model/code`, the `code/` folder inside the model data (as it sets it for PyTorchModel
and any model it repacks). A submit directory elsewhere wins over `code/`, as the scikit-learn
and XGBoost containers import from what they downloaded (docs/semantics.md, "Script mode").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PROGRAM_VARIABLE = "SAGEMAKER_PROGRAM"
SUBMIT_DIRECTORY_VARIABLE = "SAGEMAKER_SUBMIT_DIRECTORY"
MODEL_CODE_DIRECTORY = "/opt/ml/model/code"
DEFAULT_PROGRAM = "inference.py"


@dataclass(frozen=True)
class HandlerCode:
    """A handler's source directory, and the packages installed from its requirements.txt."""

    directory: str
    packages: str | None = None


def program(environment: Mapping[str, str]) -> str:
    """The handler's file name: SAGEMAKER_PROGRAM, or `inference.py`."""
    name = environment.get(PROGRAM_VARIABLE) or DEFAULT_PROGRAM
    return name if name.endswith(".py") else f"{name}.py"


def submit_directory(environment: Mapping[str, str]) -> str | None:
    """The sources SAGEMAKER_SUBMIT_DIRECTORY names outside the model data; None when it is
    unset or names `code/` inside the model data."""
    value = (environment.get(SUBMIT_DIRECTORY_VARIABLE) or "").strip()
    if not value or value.rstrip("/") == MODEL_CODE_DIRECTORY:
        return None
    return value
