"""The one settings object, built at the edge (flags and environment) and passed down.

No module reads `os.environ` in the middle of the data path; this is where it is read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from conveyor.storage.base import Storage
    from conveyor.storage.s3 import S3Config


RUNTIME_CHOICES = ("builtin", "python", "process", "http", "docker")
"""The kinds of model a server may be allowed to run (`--runtimes`): SageMaker's built-in
algorithms in Conveyor's code, a user's Python handler, a local process, a remote HTTP model
server, a Docker image."""


class SettingsError(ValueError):
    """A setting's value is not one it can take; the message names the flag and the variable."""


def parse_runtimes(value: str) -> tuple[str, ...]:
    """`docker,http,builtin` → the kinds in RUNTIME_CHOICES order; an unknown or empty list is refused."""
    kinds = [kind.strip() for kind in value.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in RUNTIME_CHOICES]
    choices = ",".join(RUNTIME_CHOICES)
    if unknown:
        raise SettingsError(f"--runtimes (CONVEYOR_RUNTIMES) {value!r}: unknown kind {unknown[0]!r}; choose from {choices}")
    if not kinds:
        raise SettingsError(f"--runtimes (CONVEYOR_RUNTIMES) {value!r} names no kind; choose one or more of {choices}")
    return tuple(kind for kind in RUNTIME_CHOICES if kind in kinds)


def parse_gpus(value: str) -> tuple[str, ...]:
    """`0,1` → ("0", "1"); `none` → no GPUs. Devices are indices or UUIDs, as CUDA_VISIBLE_DEVICES takes them."""
    if value.strip().lower() == "none":
        return ()
    devices = tuple(device.strip() for device in value.split(","))
    if "" in devices:
        raise SettingsError(f"--gpus (CONVEYOR_GPUS) {value!r}: an empty device; give devices separated by commas (0,1), or none")
    repeated = [device for device in devices if devices.count(device) > 1]
    if repeated:
        raise SettingsError(f"--gpus (CONVEYOR_GPUS) {value!r}: device {repeated[0]!r} is listed twice; each device goes to one instance")
    return devices


def _visible_devices(value: str) -> tuple[str, ...]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: the devices before the first negative one."""
    devices = []
    for device in (device.strip() for device in value.split(",")):
        if not device or device.startswith("-"):
            break
        devices.append(device)
    return tuple(devices)


@lru_cache(maxsize=1)
def detected_gpus() -> tuple[str, ...]:
    """This machine's NVIDIA GPUs by index, from `nvidia-smi -L` (none without the command)."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    lines = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")] if listing.returncode == 0 else []
    return tuple(line[4:].split(":", 1)[0] for line in lines)


def _gpus_from(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """CONVEYOR_GPUS, else this process's CUDA_VISIBLE_DEVICES, else None (detected when a job asks)."""
    if env.get("CONVEYOR_GPUS"):
        return parse_gpus(env["CONVEYOR_GPUS"])
    if "CUDA_VISIBLE_DEVICES" in env:
        return _visible_devices(env["CUDA_VISIBLE_DEVICES"])
    return None


DEFAULT_SHARD_SIZE_MB = 64.0


def parse_shard_size(value: str, name: str) -> float:
    """A shard size in MiB: a number from 0 (never shard) up; fractions allowed (0.001 is 1,048 bytes)."""
    try:
        size = float(value)
    except ValueError:
        size = -1.0
    if not size >= 0 or size == float("inf"):
        raise SettingsError(f"{name}={value!r} is not a shard size: give a number of MiB, 0 or more (0 never cuts objects)")
    return size


BACKEND_CHOICES = ("local", "ray")


def parse_backend(value: str, name: str) -> str:
    if value not in BACKEND_CHOICES:
        raise SettingsError(f"{name}={value!r} is not a backend; choose local (processes on this machine) or ray (a Ray cluster)")
    return value


def parse_local_roots(values: list[str] | tuple[str, ...]) -> tuple[Path, ...]:
    """Each root as an absolute path with symlinks and `..` resolved, as locations are compared."""
    return tuple(Path(os.path.realpath(os.path.expanduser(value))) for value in values if value)


@dataclass(frozen=True)
class Settings:
    home: Path
    region: str = "us-east-1"
    account_id: str = "000000000000"
    capacity: int = 1
    """Instances that may run at once on this machine (the scheduler's bound)."""
    retry_backoff_seconds: float = 1.0
    """First delay between invocation retries; doubles on each retry (docs/semantics.md, decision 8)."""
    s3_endpoint_url: str | None = None
    s3_read_strategy: str = "auto"
    container_startup_timeout_seconds: float = 600.0
    """How long a model server may take to answer /ping with 200 before the job fails."""
    install_requirements: bool = False
    """Whether a handler's requirements.txt is installed (it runs whatever code it names)."""
    host: str = "127.0.0.1"
    """The address `conveyor server` listens on; off loopback, `file://` needs `local_roots`."""
    local_roots: tuple[Path, ...] = ()
    """The trees `file://` inputs, outputs, model data and capture may use (docs/security.md)."""
    runtimes: tuple[str, ...] = RUNTIME_CHOICES
    """The model kinds the server runs: a subset of RUNTIME_CHOICES (docs/security.md)."""
    log_quota_mb: int = 100
    """How much log one job may store; later lines are counted and dropped (one line says so)."""
    max_connections: int = 1000
    """Connections `conveyor server` keeps open; a request on one past it is answered 503."""
    header_timeout_seconds: float = 10.0
    """How long a new connection may take to send a request's headers before it is closed."""
    keep_alive_seconds: float = 5.0
    """How long an idle keep-alive connection is kept between requests."""
    instance_types_file: Path | None = None
    """A JSON file of instance-type profiles that override or add to the built-in ones."""
    gpus: tuple[str, ...] | None = None
    """This machine's GPU devices that instances are given; None: detected (`machine_gpus`)."""
    require_gpus: bool = False
    """Whether a job whose instance type has more GPUs than the machine gives fails at start, rather than running on CPU."""
    shard_size_mb: float | None = None
    """Objects larger than this (MiB) are cut into byte-range shards, each a work item of its own,
    where their records allow (docs/semantics.md, "Shards"); 0 never cuts. Fractions are allowed.
    None: DEFAULT_SHARD_SIZE_MB for a job of more than one instance, and no cut for one instance,
    which gains nothing from shards and would pay for their assembly."""
    backend: str = "local"
    """Where instances run: `local` (processes on this machine) or `ray` (actors on a Ray cluster, docs/scale.md)."""
    ray_address: str | None = None
    """The Ray cluster of the `ray` backend (`auto`, `HOST:PORT`, `ray://HOST:PORT`); None starts a local Ray runtime."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if environ is None else environ
        settings = cls(
            home=Path(env.get("CONVEYOR_HOME") or Path.home() / ".conveyor").expanduser(),
            region=env.get("CONVEYOR_REGION", "us-east-1"),
            account_id=env.get("CONVEYOR_ACCOUNT_ID", "000000000000"),
            capacity=int(env.get("CONVEYOR_CAPACITY") or os.cpu_count() or 1),
            retry_backoff_seconds=float(env.get("CONVEYOR_RETRY_BACKOFF_SECONDS", "1.0")),
            s3_endpoint_url=env.get("CONVEYOR_S3_ENDPOINT") or None,
            s3_read_strategy=env.get("CONVEYOR_S3_READ_STRATEGY", "auto"),
            container_startup_timeout_seconds=float(env.get("CONVEYOR_CONTAINER_STARTUP_TIMEOUT", "600")),
            install_requirements=env.get("CONVEYOR_INSTALL_REQUIREMENTS", "").strip().lower() in ("1", "true", "yes"),
            host=env.get("CONVEYOR_HOST") or "127.0.0.1",
            local_roots=parse_local_roots(env.get("CONVEYOR_LOCAL_ROOTS", "").split(os.pathsep)),
            runtimes=parse_runtimes(env["CONVEYOR_RUNTIMES"]) if env.get("CONVEYOR_RUNTIMES") else RUNTIME_CHOICES,
            log_quota_mb=int(env.get("CONVEYOR_LOG_QUOTA_MB") or 100),
            max_connections=int(env.get("CONVEYOR_MAX_CONNECTIONS") or 1000),
            header_timeout_seconds=float(env.get("CONVEYOR_HEADER_TIMEOUT") or 10),
            keep_alive_seconds=float(env.get("CONVEYOR_KEEP_ALIVE_TIMEOUT") or 5),
            instance_types_file=Path(env["CONVEYOR_INSTANCE_TYPES"]).expanduser() if env.get("CONVEYOR_INSTANCE_TYPES") else None,
            gpus=_gpus_from(env),
            require_gpus=env.get("CONVEYOR_REQUIRE_GPUS", "").strip().lower() in ("1", "true", "yes"),
            shard_size_mb=parse_shard_size(env["CONVEYOR_SHARD_SIZE_MB"], "CONVEYOR_SHARD_SIZE_MB") if env.get("CONVEYOR_SHARD_SIZE_MB") else None,
            backend=parse_backend(env.get("CONVEYOR_BACKEND") or ("ray" if env.get("CONVEYOR_RAY_ADDRESS") else "local"), "CONVEYOR_BACKEND"),
            ray_address=env.get("CONVEYOR_RAY_ADDRESS") or None,
        )
        return replace(settings, **{key: value for key, value in overrides.items() if value is not None})

    def shard_size_bytes(self, instances: int) -> int:
        """The shard size in bytes of a job that runs `instances` instances; 0: objects are not cut."""
        size = self.shard_size_mb if self.shard_size_mb is not None else (DEFAULT_SHARD_SIZE_MB if instances > 1 else 0)
        return max(int(size * (1 << 20)), 1) if size > 0 else 0

    def machine_gpus(self) -> tuple[str, ...]:
        """The GPU devices this machine gives instances: the setting, else those `nvidia-smi -L` lists."""
        return self.gpus if self.gpus is not None else detected_gpus()

    def s3_config(self) -> "S3Config | None":
        """The S3 client settings chosen at the edge; None leaves everything to botocore's chain."""
        if self.s3_endpoint_url is None and self.s3_read_strategy == "auto":
            return None
        from conveyor.storage.s3 import S3Config

        return S3Config(endpoint_url=self.s3_endpoint_url, read_strategy=self.s3_read_strategy)

    def storage_for(self, uri: str) -> "Storage":
        """The store for a URI, with this configuration's S3 settings."""
        from conveyor.storage import storage_for

        return storage_for(uri, s3_config=self.s3_config())

    def arn(self, resource: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource}/{name}"
