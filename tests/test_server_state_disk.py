"""A full state disk, against a real `conveyor server` whose CONVEYOR_HOME is a small tmpfs:
the job whose write failed fails with a reason naming the disk, the API still answers reads, and
the scheduler logs one line a minute rather than a traceback per tick. Needs root to mount."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.models import sleepy
from tests.server import start_server, wait_for_status
from tests.test_server_api import create_model, job_request, unique, write_inputs

FULL = "the disk holding the state directory is full"


def _wait_for_log(server, text: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{server.log()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_full_state_disk_fails_the_job_keeps_reads_and_logs_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs as the state directory needs root")
    mount = tmp_path / "state-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    server = None
    try:
        server = start_server(mount / "home")
        sm = server.client()
        model = create_model(sm, tmp_path, sleepy(0.05))
        name = unique("full")
        inputs = write_inputs(tmp_path / "in", {f"{index}.csv": "".join(f"{line}\n" for line in range(40)) for index in range(20)})
        sm.create_transform_job(**job_request(name, model, inputs, str(tmp_path / "out"), BatchStrategy="SingleRecord"))
        wait_for_status(sm, name, ("InProgress",))
        time.sleep(1)
        filled = subprocess.run(["dd", "if=/dev/zero", f"of={mount / 'filler'}", "bs=64k"], capture_output=True, text=True)
        assert "No space left on device" in filled.stderr

        _wait_for_log(server, f"job {name} failed: {FULL}")
        assert sm.describe_transform_job(TransformJobName=name)["TransformJobName"] == name
        assert [job["TransformJobName"] for job in sm.list_transform_jobs()["TransformJobSummaries"]] == [name]
        time.sleep(12)  # a few of the scheduler's back-off periods
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("retrying every") <= 1, log[-3000:]

        os.remove(mount / "filler")
        description = wait_for_status(sm, name, ("Failed",), timeout=30)
        assert FULL in description["FailureReason"]
        assert str(mount / "home" / "conveyor.db") in description["FailureReason"]
        assert server.process.poll() is None
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", str(mount)], check=True)
