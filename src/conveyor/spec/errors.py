"""Conveyor's one exception family: each error carries the AWS error code and SageMaker's wording.

Front ends (the API, the console, the CLI) translate these; they never invent messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConveyorError(Exception):
    """An error a client sees: an AWS error code, an HTTP status and a message."""

    code = "InternalFailure"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldError:
    """One failed constraint: where (field path), what (value) and which rule.

    `path` is the wire path as SageMaker writes it in messages, lowerCamelCase joined by dots
    (`transformInput.dataSource.s3DataSource.s3Uri`), so the console can place the error next
    to its field. `rule` is the constraint text (`Member must have length less than or equal
    to 63`). `message`, when given, replaces the generic sentence for rules SageMaker words
    differently (cross-field checks, filters).
    """

    path: str
    value: Any
    rule: str
    message: str | None = None

    def render(self) -> str:
        if self.message is not None:
            return self.message
        return f"Value {render_value(self.value)} at '{self.path}' failed to satisfy constraint: {self.rule}"


def render_value(value: Any) -> str:
    """Quote a value the way AWS validation messages do (`'x'`, `null`, numbers bare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, (int, float)):
        return f"'{value}'"
    if isinstance(value, (dict, list)):
        return f"'{value}'"
    return f"'{value}'"


class ValidationException(ConveyorError):
    """The request broke a rule; lists every broken rule, as SageMaker does."""

    code = "ValidationException"
    status = 400

    def __init__(self, errors: list[FieldError] | str) -> None:
        if isinstance(errors, str):
            self.errors: list[FieldError] = []
            super().__init__(errors)
            return
        self.errors = list(errors)
        super().__init__(render_errors(self.errors))


def render_errors(errors: list[FieldError]) -> str:
    """`1 validation error detected: …` / `N validation errors detected: a; b` for generic
    constraint failures; a single custom-worded error is shown on its own."""
    if len(errors) == 1 and errors[0].message is not None:
        return errors[0].message
    count = len(errors)
    noun = "validation error" if count == 1 else "validation errors"
    return f"{count} {noun} detected: " + "; ".join(e.render() for e in errors)


class ResourceInUse(ConveyorError):
    code = "ResourceInUse"
    status = 400


class ResourceNotFound(ConveyorError):
    code = "ResourceNotFound"
    status = 400


class ResourceLimitExceeded(ConveyorError):
    code = "ResourceLimitExceeded"
    status = 400
