"""The HTTP runtime against real model servers: /ping, /execution-parameters, /invocations.

The servers are small standard-library programs written by the tests (`SCRIPTED_SERVER`), each
misbehaving as its environment says; they run as real processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from conveyor.runtimes.base import ExecutionParameters, InvocationError, RuntimeStartError
from conveyor.runtimes.http_server import HttpServerRuntime
from conveyor.runtimes.registry import create_runtime
from conveyor.sagemaker.model import parse_model
from tests.test_transform_cli import conveyor

# A model server speaking the container contract, its behaviour chosen by environment variables:
#   NEVER_HEALTHY=1          /ping answers 503 "model is still loading"
#   EXECUTION_PARAMETERS=... the body of GET /execution-parameters (404 when unset)
#   FAIL_FIRST=N             the first N invocations answer 500
#   STATUS_ON=word:code      a body containing `word` gets status `code`, with a message
#   SLEEP_ON=word            a body containing `word` sleeps SLEEP_SECONDS (default 30)
#   MODE=upper|describe|env|echo  upper-cases the body, describes the request, shows the
#                            environment (SAGEMAKER_*, SM_*, MY_*), or echoes the body
#   RESPONSE_TYPE=...        the response's Content-Type (default: the request's)
#   DROP_IDLE=1              closes each connection after its response, without saying so
#   EXIT_AT_START=N          prints a complaint and exits with code N instead of serving
#   PID_FILE=path            writes its process id there
# It listens on BIND_HOST (127.0.0.1) port SAGEMAKER_BIND_TO_PORT (8080), puts `prefix.txt` of
# SM_MODEL_DIR (or /opt/ml/model) before each response, and prints one line per invocation.
SCRIPTED_SERVER = r'''#!/usr/bin/env python3
import http.server, json, os, signal, sys, threading, time

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # also as a container's process 1

if os.environ.get("EXIT_AT_START"):
    print("cannot load the model: weights.bin is missing", file=sys.stderr, flush=True)
    sys.exit(int(os.environ["EXIT_AT_START"]))
if os.environ.get("PID_FILE"):
    with open(os.environ["PID_FILE"], "w") as f:
        f.write(str(os.getpid()))

PORT = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
MODEL_DIR = os.environ.get("SM_MODEL_DIR") or "/opt/ml/model"
PREFIX = b""
if os.path.exists(os.path.join(MODEL_DIR, "prefix.txt")):
    PREFIX = open(os.path.join(MODEL_DIR, "prefix.txt"), "rb").read().strip()
state = {"invocations": 0, "in_flight": 0, "most_in_flight": 0, "connections": set()}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if os.environ.get("DROP_IDLE"):
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True

    def do_GET(self):
        if self.path == "/ping":
            if os.environ.get("NEVER_HEALTHY"):
                return self.answer(503, b"model is still loading")
            return self.answer(200, b"")
        if self.path == "/execution-parameters" and "EXECUTION_PARAMETERS" in os.environ:
            return self.answer(200, os.environ["EXECUTION_PARAMETERS"].encode(), "application/json")
        if self.path == "/stats":
            with lock:
                stats = {k: (len(v) if isinstance(v, set) else v) for k, v in state.items()}
            return self.answer(200, json.dumps(stats).encode(), "application/json")
        self.answer(404, b"not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            state["invocations"] += 1
            number = state["invocations"]
            state["in_flight"] += 1
            state["most_in_flight"] = max(state["most_in_flight"], state["in_flight"])
            state["connections"].add(self.client_address)
        try:
            print(f"invocation {number}: {len(body)} bytes", flush=True)
            if number <= int(os.environ.get("FAIL_FIRST", "0")):
                return self.answer(500, f"temporary failure {number}".encode())
            word, _, code = os.environ.get("STATUS_ON", "").partition(":")
            if word and word.encode() in body:
                return self.answer(int(code), b"cannot score this record: " + body[:40])
            if os.environ.get("SLEEP_ON") and os.environ["SLEEP_ON"].encode() in body:
                time.sleep(float(os.environ.get("SLEEP_SECONDS", "30")))
            time.sleep(float(os.environ.get("DELAY_SECONDS", "0")))
            content_type = self.headers.get("Content-Type")
            mode = os.environ.get("MODE", "echo")
            if mode == "upper":
                out = body.upper()
            elif mode == "describe":
                out = f"{content_type}|{self.headers.get('Accept')}|{os.getpid()}|".encode() + body
            elif mode == "env":
                out = json.dumps({k: v for k, v in os.environ.items() if k.startswith(("SAGEMAKER_", "SM_", "MY_"))}, sort_keys=True).encode()
            else:
                out = body
            self.answer(200, PREFIX + out, os.environ.get("RESPONSE_TYPE") or content_type or "application/octet-stream")
        finally:
            with lock:
                state["in_flight"] -= 1


http.server.ThreadingHTTPServer.daemon_threads = True
server = http.server.ThreadingHTTPServer((os.environ.get("BIND_HOST", "127.0.0.1"), PORT), Handler)
print(f"serving on port {PORT} as process {os.getpid()}", flush=True)
server.serve_forever()
'''


def write_server(directory: Path) -> Path:
    path = directory / "scripted_server.py"
    path.write_text(SCRIPTED_SERVER)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningServer:
    """A scripted server started by a test: `url`, and `stats()` from its /stats."""

    def __init__(self, directory: Path, **environment: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **environment, "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        self.process = subprocess.Popen([sys.executable, str(write_server(directory))], env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("the scripted server did not start")

    def stats(self) -> dict[str, int]:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[type[RunningServer]]:
    started: list[RunningServer] = []

    def start(**environment: str) -> RunningServer:
        running = RunningServer(tmp_path, **environment)
        started.append(running)
        return running

    yield start  # type: ignore[misc]
    for running in started:
        running.stop()


def started(url: str, **options: float) -> HttpServerRuntime:
    runtime = HttpServerRuntime(url, **options)
    runtime.start()
    return runtime


# -- start-up ------------------------------------------------------------------------------


def test_server_without_execution_parameters_states_no_wishes(server) -> None:
    runtime = started(server().url)
    try:
        assert runtime.execution_parameters() == ExecutionParameters()
    finally:
        runtime.close()


def test_server_with_execution_parameters(server) -> None:
    wishes = {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 2}
    runtime = started(server(EXECUTION_PARAMETERS=json.dumps(wishes)).url)
    try:
        assert runtime.execution_parameters() == ExecutionParameters(3, "SingleRecord", 2)
    finally:
        runtime.close()


def test_malformed_execution_parameters_fail_the_start_with_the_answer(server) -> None:
    url = server(EXECUTION_PARAMETERS='{"MaxConcurrentTransforms": "lots"}').url
    with pytest.raises(RuntimeStartError, match=r"MaxConcurrentTransforms must be a positive integer, got 'lots'") as caught:
        started(url)
    assert '{"MaxConcurrentTransforms": "lots"}' in str(caught.value)


def test_never_healthy_server_fails_at_the_start_up_limit_quoting_its_last_answer(server) -> None:
    url = server(NEVER_HEALTHY="1").url
    began = time.monotonic()
    with pytest.raises(RuntimeStartError) as caught:
        started(url, startup_timeout=1.5)
    assert 1.4 < time.monotonic() - began < 5
    assert "did not answer GET /ping with 200 within 1.5 s" in str(caught.value)
    assert "last answer: HTTP 503: model is still loading" in str(caught.value)


def test_nothing_listening_is_reported_as_the_last_answer() -> None:
    with pytest.raises(RuntimeStartError, match=r"last answer: ConnectionRefusedError"):
        started(f"http://127.0.0.1:{free_port()}", startup_timeout=0.5)


def test_a_bad_address_is_refused() -> None:
    with pytest.raises(RuntimeStartError, match="is not an http:// or https:// URL"):
        started("ftp://example")


# -- invocations -----------------------------------------------------------------------------


def test_content_type_and_accept_are_sent_and_omitted_when_unset(server) -> None:
    runtime = started(server(MODE="describe").url)
    try:
        body = runtime.invoke(b"x", content_type="text/csv", accept="application/json", timeout=5)
        assert body.startswith(b"text/csv|application/json|")
        body = runtime.invoke(b"x", content_type=None, accept=None, timeout=5)
        assert body.startswith(b"None|None|")  # decision 6: no header at all
    finally:
        runtime.close()


def test_error_statuses_carry_the_container_message_and_retry_only_5xx_and_429(server) -> None:
    runtime = started(server(STATUS_ON="bad:400").url)
    try:
        with pytest.raises(InvocationError) as caught:
            runtime.invoke(b"a bad record", content_type="text/plain", accept=None, timeout=5)
        assert caught.value.status == 400 and not caught.value.retryable
        assert caught.value.message == "ClientError: 400 Bad Request from the model server. Message: cannot score this record: a bad record"
    finally:
        runtime.close()
    for status, retryable in (("429", True), ("500", True), ("503", True), ("404", False), ("413", False)):
        runtime = started(server(STATUS_ON=f"x:{status}").url)
        try:
            with pytest.raises(InvocationError) as caught:
                runtime.invoke(b"x", content_type=None, accept=None, timeout=5)
            assert (caught.value.status, caught.value.retryable) == (int(status), retryable)
        finally:
            runtime.close()


def test_a_response_past_the_timeout_is_a_retryable_error(server) -> None:
    runtime = started(server(SLEEP_ON="slow", SLEEP_SECONDS="5").url)
    try:
        began = time.monotonic()
        with pytest.raises(InvocationError, match=r"did not answer within InvocationsTimeoutInSeconds=0.5") as caught:
            runtime.invoke(b"slow", content_type=None, accept=None, timeout=0.5)
        assert time.monotonic() - began < 2
        assert caught.value.retryable
        assert runtime.invoke(b"quick", content_type=None, accept=None, timeout=5) == b"quick"
    finally:
        runtime.close()


def test_a_server_that_went_away_is_a_retryable_error(server) -> None:
    running = server()
    runtime = started(running.url)
    try:
        running.stop()
        with pytest.raises(InvocationError, match="could not reach the model server") as caught:
            runtime.invoke(b"x", content_type=None, accept=None, timeout=2)
        assert caught.value.retryable
    finally:
        runtime.close()


def test_concurrent_invocations_use_kept_alive_connections(server) -> None:
    running = server(DELAY_SECONDS="0.02")
    runtime = started(running.url)
    try:
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda i: runtime.invoke(b"%d" % i, content_type=None, accept=None, timeout=5), range(80)))
        assert bodies == [b"%d" % i for i in range(80)]
        stats = running.stats()
        assert stats["invocations"] == 80
        assert stats["most_in_flight"] == 4
        assert stats["connections"] <= 4  # four connections, each kept alive for ~20 requests
    finally:
        runtime.close()


def test_a_kept_alive_connection_the_server_dropped_is_replaced_unnoticed(server) -> None:
    running = server(DROP_IDLE="1")
    runtime = started(running.url)
    try:
        for index in range(5):
            assert runtime.invoke(b"%d" % index, content_type=None, accept=None, timeout=5) == b"%d" % index
        assert running.stats()["invocations"] == 5  # each sent once
    finally:
        runtime.close()


def test_large_payloads_round_trip(server) -> None:
    runtime = started(server().url)
    try:
        payload = os.urandom(6 << 20)
        assert runtime.invoke(payload, content_type="application/octet-stream", accept=None, timeout=30) == payload
    finally:
        runtime.close()


def test_registry_picks_the_http_runtime_for_an_address(server) -> None:
    model = parse_model({"ModelName": "remote", "PrimaryContainer": {"Image": server().url}})
    runtime = create_runtime(model, [], {"SAGEMAKER_BATCH": "true"})
    assert isinstance(runtime, HttpServerRuntime)
    runtime.start()
    try:
        assert runtime.invoke(b"hello", content_type=None, accept=None, timeout=5) == b"hello"
    finally:
        runtime.close()


# -- end to end ----------------------------------------------------------------------------


def write_model_request(path: Path, name: str, image: str, model_data: Path | None = None, **environment: str) -> Path:
    container: dict[str, object] = {"Image": image, "Environment": environment}
    if model_data is not None:
        container["ModelDataUrl"] = str(model_data)
    path.write_text(json.dumps({"ModelName": name, "PrimaryContainer": container}))
    return path


def test_transform_against_an_already_running_server(tmp_path: Path, server) -> None:
    running = server(MODE="upper", STATUS_ON="poison:422")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "in" / "b.txt").write_text("three\npoison\n")
    request = write_model_request(tmp_path / "model.json", "remote", running.url)
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--content-type", "text/plain",
        home=tmp_path / "home",
    )
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "a.txt.out").read_text() == "ONE\nTWO\n"
    assert not (tmp_path / "out" / "b.txt.out").exists()
    # the container's own message reaches the failure reason; a 4xx is not retried
    assert "ClientError: 422 Unprocessable Entity from the model server. Message: cannot score this record: poison" in result.stderr
    assert "after 1 attempt" in result.stderr and "retry 1 of" not in result.stderr
    assert "MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=SINGLE_RECORD" in result.stderr


def test_execution_parameters_apply_below_the_job_values(tmp_path: Path, server) -> None:
    wishes = {"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 2}
    running = server(EXECUTION_PARAMETERS=json.dumps(wishes))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("".join(f"line {i}\n" for i in range(50)))
    request = write_model_request(tmp_path / "model.json", "remote", running.url)
    arguments = [
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"),
        "--split-type", "Line", "--assemble-with", "Line",
    ]
    result = conveyor(*arguments, "--output", str(tmp_path / "out1"), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "MaxConcurrentTransforms=3, MaxPayloadInMB=2, BatchStrategy=SINGLE_RECORD" in result.stderr
    assert (tmp_path / "out1" / "a.txt.out").read_text() == "".join(f"line {i}\n" for i in range(50))
    result = conveyor(*arguments, "--output", str(tmp_path / "out2"), "--max-concurrent", "2", "--strategy", "MultiRecord", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "MaxConcurrentTransforms=2, MaxPayloadInMB=2, BatchStrategy=MULTI_RECORD" in result.stderr


# -- how responses may be framed ---------------------------------------------------------------


class CannedServer:
    """Answers GET /ping with 200, GET /execution-parameters with 404, and each POST with the
    next of `answers` (raw bytes), closing the connection after an answer when asked."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self.answers = list(answers)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        with connection, reader:
            while True:
                request_line = reader.readline()
                if not request_line:
                    return
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                reader.read(length)
                if request_line.startswith(b"GET /ping"):
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                if request_line.startswith(b"GET"):
                    connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                answer, close = self.answers.pop(0)
                connection.sendall(answer)
                if close:
                    return

    def close(self) -> None:
        self.listener.close()


def test_response_framings() -> None:
    big = os.urandom(3 << 20)
    chunked_big = b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in (big[: 1 << 20], big[1 << 20 :])) + b"0\r\n\r\n"
    canned = CannedServer([
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\n4;ext=1\r\nab,c\r\n3\r\nd\r\n\r\n0\r\nX-Trailer: t\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n" + chunked_big, False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlast", True),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\n\r\nbusy, sorry", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True),
        (b"garbage\r\n\r\n", True),
    ])
    runtime = started(canned.url)

    def call() -> tuple[bytes, str | None]:
        return runtime.invoke_with_content_type(b"x", content_type="text/plain", accept=None, timeout=5)

    try:
        assert call() == (b"ab,cd\r\n", "text/csv")
        assert call() == (big, None)
        assert call() == (b"after", None)
        assert call() == (b"", None)
        assert call() == (b"until the end", "text/plain")
        assert call() == (b"last", None)
        with pytest.raises(InvocationError, match=r"ClientError: 503 Service Unavailable .* Message: busy, sorry") as caught:
            call()
        assert caught.value.retryable
        with pytest.raises(InvocationError, match=r"could not reach the model server .*IncompleteRead"):
            call()
        with pytest.raises(InvocationError, match=r"could not reach the model server .*BadStatusLine"):
            call()
    finally:
        runtime.close()
        canned.close()


def test_a_header_that_cannot_be_sent_is_refused(server) -> None:
    runtime = started(server().url)
    try:
        with pytest.raises(InvocationError, match="cannot be sent as an HTTP header") as caught:
            runtime.invoke(b"x", content_type="text/csv\r\nX-Injected: 1", accept=None, timeout=5)
        assert not caught.value.retryable
    finally:
        runtime.close()
