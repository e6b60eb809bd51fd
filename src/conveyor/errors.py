"""Conveyor's one exception family: every error a client can see, with its AWS error code, its
HTTP status and SageMaker's (or CloudWatch Logs') wording.

Front ends (the API, the console, the CLI) translate these; they never invent messages. Errors
that stay inside a layer (a storage fault, a failed invocation) are that layer's own exceptions
and become a `FailureReason` or one of these at the edge.
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


MAX_LISTED_ERRORS = 10
"""Broken rules spelt out in one message; the rest are counted ("and N more"), as AWS does, so
a request with 60,000 unknown members gets a short answer, not a 16 MB one."""
MAX_VALUE_CHARACTERS = 2048
"""How much of a value a message quotes."""


def render_value(value: Any) -> str:
    """Quote a value the way AWS validation messages do (`'x'`, `null`, numbers bare), cut at
    MAX_VALUE_CHARACTERS."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    text = str(value)
    if len(text) > MAX_VALUE_CHARACTERS:
        text = f"{text[:MAX_VALUE_CHARACTERS]}... ({len(text)} characters)"
    return f"'{text}'"


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
    listed = "; ".join(e.render() for e in errors[:MAX_LISTED_ERRORS])
    more = f"; and {count - MAX_LISTED_ERRORS} more" if count > MAX_LISTED_ERRORS else ""
    return f"{count} {noun} detected: {listed}{more}"


# -- SageMaker's operations ------------------------------------------------------------------


def job_not_found(name: str) -> ValidationException:
    """SageMaker's answer for a transform job name it does not know (400, not a 404 code)."""
    return ValidationException(f'Could not find requested job with name "{name}".')


class ResourceInUse(ConveyorError):
    code = "ResourceInUse"
    status = 400


class ResourceNotFound(ConveyorError):
    code = "ResourceNotFound"
    status = 400


# -- the AWS JSON 1.1 protocol ----------------------------------------------------------------


class SerializationException(ConveyorError):
    """The body is not a JSON object (or a value in it has the wrong type)."""

    code = "SerializationException"
    status = 400


class UnknownOperationException(ConveyorError):
    code = "UnknownOperationException"
    status = 400


class UnsupportedMediaTypeException(ConveyorError):
    code = "UnsupportedMediaTypeException"
    status = 415


class RequestEntityTooLargeException(ConveyorError):
    code = "RequestEntityTooLargeException"
    status = 413


class InternalFailure(ConveyorError):
    code = "InternalFailure"
    status = 500

    def __init__(
        self,
        message: str = "The request processing has failed because of an unknown error, exception or failure.",
    ) -> None:
        super().__init__(message)


# -- SigV4 authentication ---------------------------------------------------------------------


class AuthError(ConveyorError):
    """The request could not be authenticated; nothing of the operation ran."""

    status = 400


class MissingAuthenticationTokenException(AuthError):
    # AWS Common Errors list MissingAuthenticationToken as 403; JSON services name it with the
    # `Exception` suffix (`com.amazon.coral.service#MissingAuthenticationTokenException`).
    code = "MissingAuthenticationTokenException"
    status = 403

    def __init__(self, message: str = "Request is missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignatureException(AuthError):
    """The Authorization header or the date is malformed, so no signature can be computed."""

    code = "IncompleteSignatureException"


class UnrecognizedClientException(AuthError):
    code = "UnrecognizedClientException"

    def __init__(self, message: str = "The security token included in the request is invalid.") -> None:
        super().__init__(message)


class InvalidSignatureException(AuthError):
    """The signature is well formed but wrong, stale, or scoped to another service."""

    code = "InvalidSignatureException"


# -- CloudWatch Logs (the job log's API) ------------------------------------------------------


class LogsResourceNotFound(ConveyorError):
    code = "ResourceNotFoundException"
    status = 400


class LogsInvalidParameter(ConveyorError):
    code = "InvalidParameterException"
    status = 400


FAILURE_REASON_LIMIT = 1024
"""SageMaker's longest FailureReason, in characters."""


def cut_failure_reason(text: str) -> str:
    """A FailureReason within SageMaker's 1,024 characters, a cut marked with "…"; the one rule
    for every front end (the CLI prints what the server would store)."""
    return text if len(text) <= FAILURE_REASON_LIMIT else text[: FAILURE_REASON_LIMIT - 1] + "…"
