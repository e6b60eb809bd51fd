"""AWS JSON 1.1 framing: how boto3 and the AWS CLI call SageMaker and CloudWatch Logs.

A call is `POST /` with `X-Amz-Target: <Prefix>.<Operation>` and a JSON object body; the answer
is JSON with an `x-amzn-RequestId` header, and an error is `{"__type": code, "message": text}`
with the HTTP status of the exception. This module parses and builds exactly that, and bounds
the memory a request may take; what an operation does is the service layer's business.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from conveyor.api.sigv4 import verify_sigv4
from conveyor.errors import (
    AuthError,
    ConveyorError,
    InternalFailure,
    RequestEntityTooLargeException,
    SerializationException,
    UnknownOperationException,
    UnsupportedMediaTypeException,
)

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = frozenset({CONTENT_TYPE, "application/json"})
REQUEST_ID_HEADER = "x-amzn-RequestId"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DRAIN_FACTOR = 8

TARGET_PREFIXES: Mapping[str, str] = {"SageMaker": "sagemaker", "Logs_20140328": "logs"}
"""`X-Amz-Target` prefix → the SigV4 signing name its clients use (botocore service metadata)."""

SIGNED_HEADERS = ("host", "x-amz-date", "x-amz-target", "content-type")
"""Headers an AWS JSON call must sign when it sends them, as botocore always does: unsigned, the
target could be changed (DescribeModel → DeleteModel) under a still valid signature."""


def new_request_id() -> str:
    """The `x-amzn-RequestId` of one response (botocore's `ResponseMetadata.RequestId`)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class AwsRequest:
    """One parsed call: who (access key), what (target) and with which input (body)."""

    target_prefix: str
    operation: str
    body: dict[str, Any]
    raw: bytes
    request_id: str = field(default_factory=new_request_id)
    access_key_id: str | None = None

    @property
    def target(self) -> str:
        return f"{self.target_prefix}.{self.operation}"


async def read_aws_request(
    request: Request,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    credentials: Callable[[str], str | None] | None = None,
    now: datetime | None = None,
    request_id: str | None = None,
) -> AwsRequest:
    """Parse an AWS JSON 1.1 call, authenticating it first when `credentials` is given.

    Order matters: the target and media type are checked from headers, the body is read under
    `max_body_bytes`, the signature is checked over the raw bytes (scoped to the target's
    signing name), and only then is the JSON parsed, so unauthenticated input is never decoded.
    Without `credentials` nothing is authenticated: that is for callers that did it already.
    """
    if request.method != "POST":
        raise UnknownOperationException(f"AWS JSON operations are called with POST, not {request.method}.")
    prefix, operation = parse_target(request.headers.get("x-amz-target"))
    check_content_type(request.headers.get("content-type"))
    raw = await read_body(request, max_body_bytes=max_body_bytes)
    access_key_id = None
    if credentials is not None:
        access_key_id = verify_sigv4(
            method=request.method,
            path=raw_path(request.scope),
            query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=request.headers,
            body=raw,
            credentials=credentials,
            now=now,
            services=(TARGET_PREFIXES[prefix],),
            required_headers=SIGNED_HEADERS,
        )
    return AwsRequest(
        target_prefix=prefix,
        operation=operation,
        body=parse_json_body(raw),
        raw=raw,
        request_id=request_id or new_request_id(),
        access_key_id=access_key_id,
    )


def parse_target(value: str | None) -> tuple[str, str]:
    """`SageMaker.CreateTransformJob` → (`SageMaker`, `CreateTransformJob`), known prefixes only."""
    if not value:
        raise UnknownOperationException("Missing X-Amz-Target header: expected '<Service>.<Operation>'.")
    prefix, dot, operation = value.strip().rpartition(".")
    if not dot or not prefix or not operation:
        raise UnknownOperationException(f"Malformed X-Amz-Target '{value}': expected '<Service>.<Operation>'.")
    if prefix not in TARGET_PREFIXES:
        known = ", ".join(sorted(TARGET_PREFIXES))
        raise UnknownOperationException(f"Unknown service '{prefix}' in X-Amz-Target; this server answers {known}.")
    return prefix, operation


def check_content_type(value: str | None) -> None:
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaTypeException(
            f"Content-Type '{value or ''}' is not supported; send {CONTENT_TYPE} (or application/json)."
        )


async def read_body(request: Request, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """The whole body, refused as soon as it is known to exceed `max_body_bytes`.

    A declared Content-Length over the limit is refused without keeping a byte; a chunked body
    is counted while it streams, so a client cannot make the server buffer more than the limit.
    A refused body of up to DRAIN_FACTOR times the limit is read and dropped first, so that the
    client, still sending, reads the 413 rather than a connection reset.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_body_bytes:
        if int(declared) <= DRAIN_FACTOR * max_body_bytes:
            async for _ in request.stream():
                pass
        raise RequestEntityTooLargeException(
            f"Request body of {int(declared)} bytes exceeds the limit of {max_body_bytes} bytes."
        )
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_body_bytes:
            raise RequestEntityTooLargeException(f"Request body exceeds the limit of {max_body_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a dict; an empty body is `{}` (what an operation without arguments means)."""
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise SerializationException(f"The request body is not valid JSON: {error}.") from None
    if not isinstance(body, dict):
        raise SerializationException(
            f"The request body must be a JSON object, not {_json_kind(body)}."
        )
    return body


def aws_response(data: Mapping[str, Any] | None = None, *, request_id: str | None = None, status: int = 200) -> Response:
    """A JSON 1.1 answer; datetimes anywhere in `data` become epoch seconds (see `to_epoch`)."""
    content = orjson.dumps(
        data if data is not None else {}, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
    )
    return Response(
        content,
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={REQUEST_ID_HEADER: request_id or new_request_id()},
    )


def aws_error(exc: ConveyorError, *, request_id: str | None = None) -> Response:
    """`{"__type": code, "message": text}` with the exception's status, as botocore parses it.

    A refused oversized body has not been read to its end, so the connection is closed rather
    than drained for the next request.
    """
    response = aws_response({"__type": exc.code, "message": exc.message}, request_id=request_id, status=exc.status)
    if exc.status == 413:
        response.headers["connection"] = "close"
    return response


def to_epoch(value: datetime) -> float:
    """Epoch seconds with millisecond precision, the JSON protocol's timestamp format.

    A naive datetime is taken to be UTC, as everything Conveyor stores is.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return round(value.timestamp(), 3)


Output = Mapping[str, Any] | None
Handler = Callable[[AwsRequest], Output | Awaitable[Output]]


class AwsJsonEndpoint:
    """An ASGI app answering AWS JSON 1.1 calls by dispatching on `X-Amz-Target`.

    `operations` maps a full target (`SageMaker.DescribeTransformJob`) to a handler taking the
    `AwsRequest` and returning the output members (a coroutine, or a plain function that is run
    in a thread so a blocking store does not stall the event loop). Every outcome, including a
    crash, becomes an AWS-shaped response with a request id; a crash never shows a traceback.
    """

    def __init__(
        self,
        operations: Mapping[str, Handler],
        *,
        credentials: Callable[[str], str | None],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.operations = dict(operations)
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = new_request_id()
        try:
            call = await read_aws_request(
                request,
                max_body_bytes=self.max_body_bytes,
                credentials=self.credentials,
                now=self.clock() if self.clock else None,
                request_id=request_id,
            )
            handler = self.operations.get(call.target)
            if handler is None:
                raise UnknownOperationException(f"Unknown operation '{call.operation}' for {call.target_prefix}.")
            result = await _invoke(handler, call)
            response = aws_response(result, request_id=request_id)
        except ClientDisconnect:
            # Nothing to answer, and nothing wrong on this side: anyone can hang up mid-body.
            logger.debug("Request %s: the client disconnected before sending its whole body", request_id)
            return
        except AuthError as error:
            logger.info("Request %s refused: %s: %s", request_id, error.code, error.message.split("\n", 1)[0])
            response = aws_error(error, request_id=request_id)
        except ConveyorError as error:
            if error.status >= 500:
                logger.error("Request %s failed: %s: %s", request_id, error.code, error.message)
            response = aws_error(error, request_id=request_id)
        except Exception:
            logger.exception("Request %s failed with an unexpected error", request_id)
            response = aws_error(InternalFailure(), request_id=request_id)
        await response(scope, receive, send)


async def _invoke(handler: Handler, call: AwsRequest) -> Output:
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(type(handler).__call__):
        result = handler(call)
    else:
        result = await run_in_threadpool(handler, call)
    if inspect.isawaitable(result):
        result = await result
    return result


def raw_path(scope: Scope) -> str:
    """The path as the client sent (and signed) it, still percent-encoded."""
    raw = scope.get("raw_path")
    if raw:
        return raw.decode("latin-1").split("?", 1)[0]
    return quote(scope.get("path", "/"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_epoch(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
