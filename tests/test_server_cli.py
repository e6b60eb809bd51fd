"""`conveyor server` as a user starts it: the banner only once it listens, a one-line refusal
when the port is taken, and one server per state directory unless `--shared-home` says so."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.server import free_port, start_server


def server(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `conveyor server` expected to refuse to start (a started one would run until the timeout)."""
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "conveyor", "server", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_taken_port_is_one_line_naming_it_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = server(tmp_path / "home", "--port", str(port))
    assert result.returncode == 1
    assert "serving" not in result.stdout and "console:" not in result.stdout, result.stdout
    assert result.stderr == f"conveyor server: cannot listen on 127.0.0.1:{port} (--host, --port): address already in use\n"


def test_a_second_server_on_the_same_home_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = start_server(tmp_path / "home")
    try:
        second = server(first.home, "--port", str(free_port()))
        assert second.returncode == 1 and "serving" not in second.stdout
        message = second.stderr.strip()
        assert message.startswith(f"conveyor server: {first.home} is already served by conveyor server process {first.process.pid} at {first.endpoint}")
        assert "--shared-home" in message and len(message.splitlines()) == 1
        shared = server(first.home, "--port", str(free_port()), "--shared-home")
        assert shared.returncode == 1 and "was not started with --shared-home" in shared.stderr
    finally:
        first.stop()
    restarted = start_server(first.home)  # the lock goes with the process
    restarted.stop()


def test_servers_started_with_shared_home_share_it(tmp_path: Path) -> None:
    first = start_server(tmp_path / "home", "--shared-home")
    try:
        second = start_server(first.home, "--shared-home")
        try:
            assert second.client().list_transform_jobs()["TransformJobSummaries"] == []
            assert "Conveyor is serving" in second.log()
        finally:
            second.stop()
        alone = server(first.home, "--port", str(free_port()))
        assert alone.returncode == 1 and "already served by" in alone.stderr
    finally:
        first.stop()
