"""pytest plugin: a Docker engine that answers, and a base image with Python, for the container tests.

Made once per machine and reused: if `docker info` fails, Debian's `docker.io` (and
`debootstrap`) are installed when `dockerd` is missing and `dockerd` is started in the
background (its log in /tmp/conveyor-dockerd.log; it keeps running after the tests). The base
image `conveyor-test-python` is made without any image registry: debootstrap a minimal bookworm
with python3, Flask and gunicorn from the Debian mirror apt already uses, then `docker import`
it (about a minute). Anything that does not work fails the tests loudly; nothing is skipped.
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

BASE_IMAGE = "conveyor-test-python"
BASE_PACKAGES = "python3,python3-flask,gunicorn"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DOCKERD_LOG = "/tmp/conveyor-dockerd.log"
SETUP_LOCK = "/tmp/conveyor-docker-setup.lock"
DAEMON_WAIT_SECONDS = 60


def _run(command: list[str], *, timeout: float, what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        pytest.fail(f"Docker setup: {what} (`{' '.join(command)}`) took longer than {timeout:g} s", pytrace=False)
    except FileNotFoundError as exc:
        pytest.fail(f"Docker setup: {what}: {exc}", pytrace=False)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        pytest.fail(f"Docker setup: {what} (`{' '.join(command)}`) exited with code {result.returncode}:\n{output}", pytrace=False)
    return result


def _daemon_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def debian_mirror() -> str:
    """The first Debian archive (not the security one) that apt's sources name."""
    texts = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            texts.append(Path(path).read_text())
        except OSError:
            continue
    for text in texts:
        candidates = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE) + re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        for uri in candidates:
            if "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _install_docker() -> None:
    if os.geteuid() != 0:
        pytest.fail("Docker setup: no Docker daemon answers and dockerd is not installed; installing docker.io needs root", pytrace=False)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], timeout=300, what="apt-get update", env=environment)
    _run(
        ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "docker.io", "debootstrap"],
        timeout=600, what="installing docker.io and debootstrap", env=environment,
    )


def _start_daemon() -> None:
    if shutil.which("dockerd") is None:
        _install_docker()
    with open(DOCKERD_LOG, "ab") as log:
        subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + DAEMON_WAIT_SECONDS
    while time.monotonic() < deadline:
        if _daemon_answers():
            return
        time.sleep(0.5)
    tail = Path(DOCKERD_LOG).read_text(errors="replace")[-2000:] if os.path.exists(DOCKERD_LOG) else ""
    pytest.fail(f"Docker setup: dockerd started but did not answer within {DAEMON_WAIT_SECONDS} s; the end of {DOCKERD_LOG}:\n{tail}", pytrace=False)


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, timeout=30).returncode == 0


def _build_base_image() -> None:
    if shutil.which("debootstrap") is None:
        _install_docker()
    with tempfile.TemporaryDirectory(prefix="conveyor-rootfs-", dir="/var/tmp") as root:
        rootfs = os.path.join(root, "rootfs")
        _run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, rootfs, debian_mirror()],
            timeout=600, what="debootstrap of the base image",
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["docker", "import", "-", BASE_IMAGE], timeout=300, what="docker import of the base image", stdin=tar.stdout)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """A Docker daemon that answers (started here if need be); yields the docker command."""
    with open(SETUP_LOCK, "a") as lock:  # xdist workers set up one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _daemon_answers():
            _start_daemon()
    yield "docker"


@pytest.fixture(scope="session")
def docker_base_image(docker_engine: str) -> str:
    """`conveyor-test-python`: a minimal Debian with python3, Flask and gunicorn, no registry used."""
    with open(SETUP_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _image_exists(BASE_IMAGE):
            _build_base_image()
    return BASE_IMAGE
