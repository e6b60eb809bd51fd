"""The HTTP runtime: a model server speaking SageMaker's container contract at a base URL.

`GET /ping` until it answers 200 (2 s per probe, within a start-up limit), `GET
/execution-parameters` once, then `POST /invocations` with the job's Content-Type and Accept
(docs/containers.md). Up to MaxConcurrentTransforms calls run at once, each on a kept-alive connection
taken from a pool that grows to the number of callers. The GETs use the standard library's
`http.client`; the POSTs a lean HTTP/1.1 exchange (`_Connection`), because measured through
the job's invocation path against an echo server (benchmarks/http_runtime.py) pooled
`http.client` connections reached 60 % and httpx 20–30 % of a plain `http.client` loop's
requests/s on small records, while `_Connection` reaches 165–190 % (and 110–125 % of its MB/s
on 6 MB payloads, where httpx reached 70 %).

Where the server comes from is the business of subclasses (`process_server`, `docker_server`):
they start it in `_launch`, say in `_exit_reason` when it died, and stop it in `_shutdown`.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from collections import deque
from typing import BinaryIO
from urllib.parse import urlsplit

import orjson

from conveyor.runtimes.base import DEFAULT_STARTUP_TIMEOUT_SECONDS, ExecutionParameters, InvocationError, Runtime, RuntimeStartError

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 2.0  # per probe, as SageMaker probes (docs/containers.md)
EXECUTION_PARAMETERS_TIMEOUT_SECONDS = 10.0
MAX_BODY_SHOWN = 1024
"""Bytes of a container's error body quoted in a failure reason and the job log."""
_SEPARATE_BODY_BYTES = 64 << 10
"""Bodies at least this large are sent after the headers instead of copied behind them."""
_MAX_LINE = 65536
_MAX_HEADERS = 100
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _Endpoint:
    """Scheme, host, port and path prefix of a base URL, and connections to it."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RuntimeStartError(f"model server address {base_url!r} is not an http:// or https:// URL")
        try:
            port = parts.port
        except ValueError:
            raise RuntimeStartError(f"model server address {base_url!r} has an invalid port") from None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.authority = parts.netloc.rpartition("@")[2]  # the Host header: [::1]:8080 keeps its brackets
        self.url = f"{parts.scheme}://{self.authority}{self.prefix}"

    def request_head(self, content_type: str | None, accept: str | None) -> bytes:
        """`POST /invocations` and its headers, up to the Content-Length value."""
        lines = [f"POST {self.prefix}/invocations HTTP/1.1", f"Host: {self.authority}"]
        for name, value in (("Content-Type", content_type), ("Accept", accept)):
            if value:
                if "\r" in value or "\n" in value or not value.isascii():
                    raise InvocationError(f"the {name} {value!r} cannot be sent as an HTTP header", retryable=False)
                lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("ascii")

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """One GET on a fresh connection: (status, body). Raises OSError or HTTPException."""
        connection = self.connection(timeout)
        try:
            connection.request("GET", self.prefix + path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


class HttpServerRuntime(Runtime):
    """Calls a model server that is already running at `base_url` (Image `http://host:port`)."""

    enforces_timeout = True

    def __init__(self, base_url: str | None, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS, name: str = "model server") -> None:
        self.base_url = base_url
        self.startup_timeout = startup_timeout
        self.name = name
        self._endpoint: _Endpoint | None = None
        self._idle: deque[_Connection] = deque()
        self._parameters = ExecutionParameters()
        self._closed = False

    # hooks for servers this runtime starts itself ---------------------------------------------

    def _launch(self) -> None:
        """Start the server and set `base_url`; nothing to do for a server already running."""

    def _exit_reason(self) -> str | None:
        """Why the server can no longer answer (it exited), or None while it may."""
        return None

    def _shutdown(self) -> None:
        """Stop the server this runtime started."""

    # start -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._endpoint is not None:
            return
        try:
            self._launch()
            if self.base_url is None:
                raise RuntimeStartError(f"{self.name} has no address")
            endpoint = _Endpoint(self.base_url)
            self._wait_until_healthy(endpoint)
            self._parameters = self._read_execution_parameters(endpoint)
            self._endpoint = endpoint
        except BaseException:
            self.close()
            raise

    def _wait_until_healthy(self, endpoint: _Endpoint) -> None:
        """Probe /ping until it answers 200; fail with the last answer quoted."""
        started = time.monotonic()
        deadline = started + self.startup_timeout
        pause = 0.02
        last_answer = "no answer yet"
        while True:
            exit_reason = self._exit_reason()
            if exit_reason is not None:
                raise RuntimeStartError(f"{self.name} stopped before it became healthy: {exit_reason}")
            try:
                status, body = endpoint.get("/ping", min(PING_TIMEOUT_SECONDS, max(deadline - time.monotonic(), 0.1)))
            except TimeoutError:
                last_answer = f"no answer within {PING_TIMEOUT_SECONDS:g} s"
            except (OSError, http.client.HTTPException) as exc:
                last_answer = _describe_error(exc)
            else:
                if status == 200:
                    logger.info("%s at %s is healthy after %.1f s", self.name, endpoint.url, time.monotonic() - started)
                    return
                last_answer = f"HTTP {status}" + (f": {_quote(body)}" if body.strip() else "")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                exit_reason = self._exit_reason()
                if exit_reason is not None:
                    raise RuntimeStartError(f"{self.name} stopped before it became healthy: {exit_reason}")
                raise RuntimeStartError(
                    f"{self.name} at {endpoint.url} did not answer GET /ping with 200 within {self.startup_timeout:g} s "
                    f"(the start-up limit); last answer: {last_answer}"
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 1.5, 1.0)

    def _read_execution_parameters(self, endpoint: _Endpoint) -> ExecutionParameters:
        """The container's wishes from GET /execution-parameters; none unless it answers 200."""
        try:
            status, body = endpoint.get("/execution-parameters", EXECUTION_PARAMETERS_TIMEOUT_SECONDS)
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("%s: GET /execution-parameters failed (%s); using the job's values and the defaults", self.name, _describe_error(exc))
            return ExecutionParameters()
        if status != 200:
            return ExecutionParameters()
        return parse_execution_parameters(body, self.name)

    def execution_parameters(self) -> ExecutionParameters:
        return self._parameters

    # invoke ----------------------------------------------------------------------------------

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        return self.invoke_with_content_type(payload, content_type=content_type, accept=accept, timeout=timeout)[0]

    def invoke_with_content_type(
        self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float
    ) -> tuple[bytes, str | None]:
        """POST /invocations; the response body and its Content-Type (a pipeline passes it on)."""
        endpoint = self._endpoint
        if endpoint is None:
            raise RuntimeError(f"{type(self).__name__}.invoke() before start()")
        head = endpoint.request_head(content_type, accept)
        resent = False
        while True:
            try:
                connection: _Connection | None = None if resent else self._idle.pop()
            except IndexError:
                connection = None
            reused = connection is not None
            try:
                if connection is None:
                    connection = _Connection(endpoint, timeout)
                status, body, response_type, keep_alive = connection.post(head, payload, timeout)
            except (OSError, http.client.HTTPException) as exc:
                if connection is not None:
                    connection.close()
                if reused and isinstance(exc, _STALE_CONNECTION):  # the server closed a kept-alive connection:
                    resent = True  # send again, once, on a new one
                    continue
                raise self._invocation_error(exc, endpoint, timeout) from None
            if keep_alive and not self._closed:
                self._idle.append(connection)
            else:
                connection.close()
            if 200 <= status < 300:
                return body, response_type
            raise InvocationError(
                _status_message(status, body, self.name),
                retryable=status >= 500 or status == 429,
                status=status,
            )

    def _invocation_error(self, exc: BaseException, endpoint: _Endpoint, timeout: float) -> InvocationError:
        if isinstance(exc, TimeoutError):
            return InvocationError(f"the {self.name} did not answer within InvocationsTimeoutInSeconds={timeout:g}", retryable=True)
        reason = self._exit_reason()
        detail = f" ({reason})" if reason else ""
        return InvocationError(f"could not reach the {self.name} at {endpoint.url}: {_describe_error(exc)}{detail}", retryable=True)

    # close -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        self._endpoint = None
        while self._idle:
            self._idle.pop().close()
        self._shutdown()


class _Connection:
    """One kept-alive HTTP/1.1 connection for POST /invocations.

    The request goes out in one write (two for a large body) and the response is read with a
    lean parser: status line, the few headers that matter, then a Content-Length, chunked or
    close-delimited body. http.client does the same with a header parser of the email package
    and a write per header, which cost a quarter of the time of a small record
    (benchmarks/http_runtime.py); its GETs (/ping, /execution-parameters) still use it."""

    def __init__(self, endpoint: _Endpoint, timeout: float) -> None:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def post(self, head: bytes, payload: bytes, timeout: float) -> tuple[int, bytes, str | None, bool]:
        """Send one request; (status, body, Content-Type, whether the connection stays open)."""
        self.sock.settimeout(timeout)
        length = b"%d\r\n\r\n" % len(payload)
        if len(payload) < _SEPARATE_BODY_BYTES:
            self.sock.sendall(head + length + payload)
        else:
            self.sock.sendall(head + length)
            self.sock.sendall(payload)
        return _read_response(self.reader)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _read_response(reader: BinaryIO) -> tuple[int, bytes, str | None, bool]:
    while True:
        line = reader.readline(_MAX_LINE)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection without a response")
        version, _, rest = line.partition(b" ")
        status_text = rest[:3]
        if not version.startswith(b"HTTP/1.") or not status_text.isdigit():
            raise http.client.BadStatusLine(line.decode("latin-1").rstrip())
        status = int(status_text)
        headers = _read_headers(reader)
        if not 100 <= status < 200:  # skip interim responses (100 Continue)
            break
    keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
    content_type = headers.get(b"content-type")
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _read_chunked(reader)
    elif b"content-length" in headers:
        size = int(headers[b"content-length"])
        body = reader.read(size)
        if len(body) != size:
            raise http.client.IncompleteRead(body, size - len(body))
    elif status in (204, 304):
        body = b""
    else:  # delimited by the end of the connection
        body, keep_alive = reader.read(), False
    return status, body, content_type.decode("latin-1") if content_type is not None else None, keep_alive


def _read_headers(reader: BinaryIO) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for _ in range(_MAX_HEADERS):
        line = reader.readline(_MAX_LINE)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    raise http.client.HTTPException(f"more than {_MAX_HEADERS} response headers")


def _read_chunked(reader: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = reader.readline(_MAX_LINE)
        try:
            size = int(size_line.split(b";", 1)[0], 16)
        except ValueError:
            raise http.client.HTTPException(f"bad chunk size line {size_line!r}") from None
        if size == 0:
            _read_headers(reader)  # trailers
            return b"".join(parts)
        chunk = reader.read(size + 2)  # the chunk and its CRLF
        if len(chunk) != size + 2:
            raise http.client.IncompleteRead(chunk, size + 2 - len(chunk))
        parts.append(chunk[:size])


def parse_execution_parameters(body: bytes, name: str = "model server") -> ExecutionParameters:
    """`{"MaxConcurrentTransforms": 8, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}`,
    each key optional; a malformed answer fails the start with the answer quoted."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RuntimeStartError(f"{name} answered GET /execution-parameters with something that is not JSON: {_quote(body)}") from None
    if not isinstance(answer, dict):
        raise RuntimeStartError(f"{name} answered GET /execution-parameters with {_quote(body)}; expected a JSON object")
    try:
        return ExecutionParameters.from_answer(answer)
    except ValueError as exc:
        raise RuntimeStartError(f"{name} answered GET /execution-parameters with {_quote(body)}: {exc}") from None


def _status_message(status: int, body: bytes, name: str) -> str:
    """As SageMaker's data log words it: `ClientError: 400`, then the container's message."""
    phrase = http.client.responses.get(status, "")
    head = f"ClientError: {status}{' ' + phrase if phrase else ''} from the {name}"
    return f"{head}. Message: {_quote(body)}" if body.strip() else f"{head} (empty body)"


def _quote(body: bytes) -> str:
    text = body[:MAX_BODY_SHOWN].decode("utf-8", errors="replace").strip()
    return text + (f" … ({len(body):,} bytes in all)" if len(body) > MAX_BODY_SHOWN else "")


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
