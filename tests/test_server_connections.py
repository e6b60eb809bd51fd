"""Connection limits (api.connections) against a real `conveyor server` on 127.0.0.1, started
with a lowered file-descriptor limit: idle and half-sent connections are closed, a request past
the connection cap is answered 503, and running out of descriptors neither kills the server nor
fills its log with tracebacks."""

from __future__ import annotations

import resource
import socket
import time
from typing import Iterator

import orjson
import pytest

from tests.server import ServerProcess, start_server

FILE_LIMIT = 256


def _lower_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("connections-home"), "--max-connections", "40", "--header-timeout", "2",
        "--keep-alive-timeout", "1", preexec_fn=_lower_file_limit,
    )
    yield server
    server.stop()


def _get(port: int, path: str = "/console/static/console.css") -> tuple[int, bytes]:
    """One plain GET on a fresh connection: the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _open_idle(port: int, count: int, first_bytes: bytes = b"") -> list[socket.socket]:
    held = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first_bytes:
            connection.sendall(first_bytes)
        held.append(connection)
    return held


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _wait_until_answered(port: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = _get(port)
            if status == 200 or time.monotonic() > deadline:
                return status
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_idle_and_half_sent_connections_are_closed_after_the_header_timeout(limited_server: ServerProcess) -> None:
    idle, = _open_idle(limited_server.port, 1)
    half, = _open_idle(limited_server.port, 1, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    with idle, half:
        assert _closed_by_server(idle, within=6)
        assert _closed_by_server(half, within=6)


def test_a_request_past_the_connection_cap_gets_503_and_the_server_recovers(limited_server: ServerProcess) -> None:
    held = _open_idle(limited_server.port, 45)
    try:
        status, body = _get(limited_server.port)
        assert status == 503
        error = orjson.loads(body)
        assert error["__type"] == "ServiceUnavailable"
        assert "limit of 40 (--max-connections, CONVEYOR_MAX_CONNECTIONS)" in error["message"]
    finally:
        for connection in held:
            connection.close()
    assert _wait_until_answered(limited_server.port) == 200


def test_running_out_of_file_descriptors_is_survived_and_logged_in_one_line(limited_server: ServerProcess) -> None:
    before = limited_server.log()
    held: list[socket.socket] = []
    try:
        for _ in range(FILE_LIMIT + 100):
            held.append(socket.create_connection(("127.0.0.1", limited_server.port), timeout=5))
        time.sleep(1.5)
    finally:
        for connection in held:
            connection.close()
    assert limited_server.process.poll() is None
    assert _wait_until_answered(limited_server.port) == 200
    added = limited_server.log()[len(before):]
    assert "Traceback" not in added and "Too many open files" not in added.replace(
        "cannot accept connections: [Errno 24] Too many open files", ""
    ), added
    assert added.count(f"cannot accept connections: [Errno 24] Too many open files (the file-descriptor limit, ulimit -n, is {FILE_LIMIT})") == 1, added
