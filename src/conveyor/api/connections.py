"""Connection limits: a deadline for a request's headers, and a cap on open connections.

uvicorn times out idle keep-alive connections but never one that sends nothing or half its
headers, and it accepts until the process runs out of file descriptors. This protocol closes a
connection whose headers have not arrived within the header timeout, answers every request on a
connection past the cap with a 503 naming the setting, and turns "out of file descriptors" at
accept into one warning a minute instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("conveyor.server")

WARNING_INTERVAL_SECONDS = 60.0
"""At most one warning a minute about file descriptors running out at accept."""


def connection_limit(max_connections: int) -> int:
    """The cap actually applied: `max_connections`, lowered to three quarters of the process's
    file-descriptor limit so that the database, logs and workers keep theirs, and a connection
    past the cap can still be accepted and answered 503."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft * 3 // 4))


def unavailable_body(open_connections: int, limit: int) -> bytes:
    """AWS's JSON error shape, so that botocore reads the code and retries it with back-off."""
    return orjson.dumps({
        "__type": "ServiceUnavailable",
        "message": f"The server has {open_connections} connections open, more than its limit of {limit} "
        "(--max-connections, CONVEYOR_MAX_CONNECTIONS); try again shortly.",
    })


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap (see the module)."""

    max_connections: int = 1000
    header_timeout_seconds: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = _unavailable(len(self.connections), self.max_connections)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()
        elif self._header_deadline is None and self.timeout_keep_alive_task is None:
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        """No complete request line and headers in time: close, as the keep-alive timeout does."""
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def _unavailable(open_connections: int, limit: int) -> Any:
    body = unavailable_body(open_connections, limit)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/x-amz-json-1.1"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})

    return app


def protocol_class(max_connections: int, header_timeout_seconds: float) -> type[LimitedH11Protocol]:
    """The protocol uvicorn builds for each connection, with this server's limits."""
    return type(
        "ConveyorH11Protocol", (LimitedH11Protocol,),
        {"max_connections": max_connections, "header_timeout_seconds": header_timeout_seconds},
    )


class AcceptErrorLog:
    """The event loop's exception handler: running out of file descriptors at accept is logged
    once a minute, in one line; anything else goes to asyncio's default handler."""

    def __init__(self) -> None:
        self._last_warning = float("-inf")
        self._suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last_warning < WARNING_INTERVAL_SECONDS:
            self._suppressed += 1
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        more = f" ({self._suppressed} more since the last warning)" if self._suppressed else ""
        logger.warning(
            "cannot accept connections: %s (the file-descriptor limit, ulimit -n, is %d); "
            "new connections wait until open ones close%s",
            context.get("exception"), soft, more,
        )
        self._last_warning, self._suppressed = now, 0
