"""A real `conveyor server` on 127.0.0.1 for the tests, started as its own process.

`conveyor_server` (one per session) serves most tests; `start_server()` starts a private one,
for tests that kill or restart it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import botocore.config
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    home: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials"

    def client_env(self) -> dict[str, str]:
        """Environment for boto3 / the AWS CLI in a child process, pointed at this server."""
        return {
            **os.environ,
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_SAGEMAKER": self.endpoint,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.endpoint,
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
        }

    def session(self) -> boto3.Session:
        keys = _read_keys(self.credentials_file)
        return boto3.Session(aws_access_key_id=keys[0], aws_secret_access_key=keys[1], region_name="us-east-1")

    def client(self, service: str = "sagemaker") -> Any:
        config = botocore.config.Config(retries={"max_attempts": 1})
        return self.session().client(service, endpoint_url=self.endpoint, config=config)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> "ServerProcess":
        return start_server(self.home, *self.extra_args, env=self.env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def progress(self, name: str) -> dict[str, Any]:
        """Conveyor's progress view of job `name` (`GET /conveyor/v1/jobs/{name}/progress`), signed."""
        url = f"{self.endpoint}/conveyor/v1/jobs/{name}/progress"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(self.session().get_credentials(), "sagemaker", "us-east-1").add_auth(request)
        response = httpx.get(url, headers=dict(request.headers.items()), timeout=10)
        response.raise_for_status()
        return response.json()


def _read_keys(path: Path) -> tuple[str, str]:
    import configparser

    parser = configparser.ConfigParser()
    parser.read(path)
    return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]


def start_server(
    home: Path, *args: str, env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
) -> ServerProcess:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / f"server-{port}.log"
    environment = {
        **os.environ,
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01",
        "CONVEYOR_CAPACITY": "2",
        **(env or {}),
    }
    with open(log_path, "wb") as log:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--port", str(port), *args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = ServerProcess(home, port, process, log_path, tuple(args), env or {})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"conveyor server exited:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"conveyor server did not start:\n{server.log()}")


@pytest.fixture(scope="session")
def conveyor_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("conveyor-home"))
    yield server
    server.stop()


def wait_for_status(client: Any, name: str, statuses: tuple[str, ...] = ("Completed", "Failed", "Stopped"), timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        description = client.describe_transform_job(TransformJobName=name)
        if description["TransformJobStatus"] in statuses:
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {description['TransformJobStatus']} after {timeout}s")
        time.sleep(0.2)
