"""A model server in a Docker container, run as SageMaker runs it: `docker run <image> serve`.

Per instance: `docker create` with the model directory mounted read-only at /opt/ml/model, the
job's environment, container port 8080 published on a free port of 127.0.0.1, and the GPUs the
job assigned the instance (`--gpus "device=…"`); then `docker start`, the container's output
followed into the job log, and the HTTP runtime against the published port. The container is
removed (`docker rm -f`) when the instance closes, and by a `Guard` if the instance is killed.

The docker command line rather than the Python SDK: it is what the daemon's packages ship,
honours the user's contexts and DOCKER_HOST as `docker run` does, reports errors in the words
users know, and keeps a dependency out of Conveyor's core for five calls off the data path.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from typing import Mapping

from conveyor.runtimes.base import DEFAULT_STARTUP_TIMEOUT_SECONDS, RuntimeStartError
from conveyor.runtimes.http_server import HttpServerRuntime
from conveyor.runtimes.process_server import Guard, OutputForwarder, describe_exit
from conveyor.sagemaker.instance_types import BUILT_IN

CONTAINER_PORT = 8080
MODEL_MOUNT = "/opt/ml/model"
DAEMON_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 3
"""Seconds `docker stop` waits after SIGTERM before SIGKILL when a job ends normally."""
LABEL_JOB = "conveyor.job"
LABEL_MODEL = "conveyor.model"


def has_gpus(instance_type: str | None) -> bool:
    """Whether the built-in profile of `instance_type` has NVIDIA GPUs (ml.p3.2xlarge, ml.g5.xlarge, local_gpu, …)."""
    profile = BUILT_IN.get(instance_type or "")
    return profile is not None and profile.gpus > 0


def container_name(job_name: str | None, instance: int | None) -> str:
    """`conveyor-<job>-<instance>-<random>`, within Docker's name alphabet (the process id
    stands in for an instance number not given)."""
    job = re.sub(r"[^a-zA-Z0-9_.-]+", "-", job_name or "job").strip("-.")[:80] or "job"
    return f"conveyor-{job}-{instance if instance is not None else os.getpid()}-{secrets.token_hex(3)}"


def _docker(*arguments: str, timeout: float | None = DAEMON_TIMEOUT_SECONDS, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def check_daemon() -> None:
    """Raise RuntimeStartError saying why, unless a Docker daemon answers."""
    if shutil.which("docker") is None:
        raise RuntimeStartError("the docker command is not installed; Docker images need a Docker engine (docker.io on Debian)")
    try:
        result = _docker("version", "--format", "{{.Server.Version}}")
    except subprocess.TimeoutExpired:
        raise RuntimeStartError(f"no Docker daemon answered `docker version` within {DAEMON_TIMEOUT_SECONDS:g} s") from None
    if result.returncode != 0 or not result.stdout.strip():
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise RuntimeStartError("no Docker daemon answers: " + (message[-1] if message else f"`docker version` exited with code {result.returncode}"))


def _host_has_nvidia() -> bool:
    return os.path.exists("/dev/nvidiactl")


class DockerServerRuntime(HttpServerRuntime):
    """Runs `image` as `docker run <image> serve` and calls it over HTTP."""

    def __init__(
        self,
        image: str,
        *,
        model_dir: str | None,
        environment: Mapping[str, str],
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
        name: str = "model container",
        job_name: str | None = None,
        model_name: str | None = None,
        instance: int | None = None,
        instance_type: str | None = None,
        gpus: tuple[str, ...] | None = None,
        container_port: int = CONTAINER_PORT,
        output_prefix: str = "",
    ) -> None:
        super().__init__(None, startup_timeout=startup_timeout, name=name)
        self.image = image
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.job_name = job_name
        self.model_name = model_name
        self.instance = instance
        self.instance_type = instance_type
        self.gpus = gpus  # the devices the job assigned (the job log said why any are missing); None: not assigned
        self.container_port = container_port
        self.container: str | None = None
        self._guard: Guard | None = None
        self._logs: subprocess.Popen[bytes] | None = None
        self._output = OutputForwarder(output_prefix)
        self._last_state_check = 0.0
        self._exited: str | None = None

    # start -----------------------------------------------------------------------------------

    def create_arguments(self, name: str) -> list[str]:
        """`docker create …` for this model (what SageMaker's `docker run <image> serve` means)."""
        arguments = ["create", "--name", name, "--label", f"{LABEL_JOB}={self.job_name or ''}", "--label", f"{LABEL_MODEL}={self.model_name or ''}"]
        arguments += ["--publish", f"127.0.0.1::{self.container_port}"]
        if self.model_dir is not None:
            arguments += ["--volume", f"{os.path.abspath(self.model_dir)}:{MODEL_MOUNT}:ro"]
        for key in self.environment:
            arguments += ["--env", key]  # the value comes from docker's own environment, not its command line
        if self.gpus:
            arguments += ["--gpus", f'"device={",".join(self.gpus)}"']  # quoted: docker reads the value as CSV
        elif self.gpus is None and has_gpus(self.instance_type):  # no assignment: all of this machine's, if any
            if _host_has_nvidia():
                arguments += ["--gpus", "all"]
            else:
                print(f"InstanceType {self.instance_type} has GPUs but this machine has none; the container runs without GPUs", flush=True)
        return arguments + [self.image, "serve"]

    def _launch(self) -> None:
        check_daemon()
        name = container_name(self.job_name or self.model_name, self.instance)
        self._guard = Guard(["run", "docker", "rm", "--force", name])  # before the container exists
        self.container = name
        environment = {**os.environ, **self.environment}
        try:
            created = _docker(*self.create_arguments(name), timeout=max(self.startup_timeout, DAEMON_TIMEOUT_SECONDS), env=environment)
        except subprocess.TimeoutExpired:
            raise RuntimeStartError(f"`docker create` for image {self.image} did not finish within {self.startup_timeout:g} s") from None
        if created.returncode != 0:
            raise RuntimeStartError(f"cannot create a container from image {self.image}: {_last_line(created.stderr)}")
        started = _docker("start", name)
        if started.returncode != 0:
            raise RuntimeStartError(f"cannot start `docker run {self.image} serve`: {_last_line(started.stderr)}")
        self._logs = subprocess.Popen(
            ["docker", "logs", "--follow", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._logs.stdout is not None and self._logs.stderr is not None
        self._output.follow(self._logs.stdout, to_stderr=False)
        self._output.follow(self._logs.stderr, to_stderr=True)
        self.base_url = f"http://{self._published_address(name)}"

    def _published_address(self, name: str) -> str:
        result = _docker("port", name, f"{self.container_port}/tcp")
        for line in result.stdout.splitlines():
            address = line.strip()
            if address.startswith("127.0.0.1:"):
                return address
        reason = self._exit_reason()
        if reason is not None:
            raise RuntimeStartError(f"{self.name} stopped before it became healthy: {reason}")
        raise RuntimeStartError(f"container {name} publishes no port for {self.container_port}/tcp: {_last_line(result.stderr) or result.stdout.strip()}")

    def _exit_reason(self) -> str | None:
        """Checked at most once a second: a `docker inspect` is a process start."""
        if self._exited is not None or self.container is None:
            return self._exited
        now = time.monotonic()
        if now - self._last_state_check < 1.0:
            return None
        self._last_state_check = now
        result = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", self.container)
        if result.returncode != 0:
            self._exited = f"container {self.container} is gone: {_last_line(result.stderr)}"
            return self._exited
        status, code, oom_killed = (result.stdout.split() + ["", "", ""])[:3]
        if status in ("running", "created", "restarting"):
            return None
        self._output.join(timeout=1.0)
        how = "was killed for running out of memory" if oom_killed == "true" else describe_exit(int(code) if code.lstrip("-").isdigit() else -1)
        self._exited = f"the container `docker run {self.image} serve` {how}{self._output.last_output()}"
        return self._exited

    # close -----------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        name, self.container = self.container, None
        if name is not None:
            try:
                _docker("stop", "--time", str(STOP_TIMEOUT_SECONDS), name, timeout=STOP_TIMEOUT_SECONDS + DAEMON_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        if self._logs is not None:
            try:
                self._logs.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._logs.kill()
                self._logs.wait()
            self._output.join(timeout=2.0)
            self._logs = None
        if self._guard is not None:
            self._guard.trigger()  # `docker rm --force`, whether or not the stop worked
            self._guard = None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
