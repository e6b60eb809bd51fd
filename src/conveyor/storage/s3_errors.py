"""How a failed S3 call becomes a `StorageError` that names the object and S3's error code."""

from __future__ import annotations

from botocore.exceptions import ClientError

from conveyor.storage.base import StorageError

_STATUS_CODES = {"400": "BadRequest", "403": "AccessDenied", "404": "NoSuchKey", "412": "PreconditionFailed"}
"""HEAD responses have no body, so botocore reports the bare status; these are S3's names for them."""


def storage_error(uri: str, exc: Exception, *, action: str) -> StorageError:
    """`StorageError(uri, code, "<action>: <S3's message>")` for a botocore exception."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        code = _STATUS_CODES.get(code, code)
        message = error.get("Message") or _default_message(code)
        return StorageError(uri, code, f"{action}: {message}")
    return StorageError(uri, type(exc).__name__, f"{action}: {exc}")  # BotoCoreError: EndpointConnectionError, …


def error_code(exc: Exception) -> str | None:
    """S3's error code of a `ClientError` (`NoSuchKey`, `SlowDown`, …), else None."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        return _STATUS_CODES.get(code, code) or None
    return None


def _default_message(code: str) -> str:
    return {
        "AccessDenied": "access denied",
        "NoSuchKey": "the object does not exist",
        "NoSuchBucket": "the bucket does not exist",
        "PreconditionFailed": "the object changed while it was being read",
    }.get(code, code)
