"""The Ray backend: each instance is a Ray actor (`engine.ray_host`) that loads the model once,
placed by Ray anywhere on the cluster, with the resources of its instance type.

The driver (the `conveyor` command or server) sends work items and hears messages; the actors
read their objects or shards and write their outputs themselves, so the driver moves no record
data. An actor that dies (killed, out of memory, its node lost) is one more lost instance: its
items are charged or handed back by the job's policy, as on the local backend, and it is
replaced by a new actor, which Ray places wherever there is room (docs/scale.md).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from conveyor.engine.backend import InstanceEvents, ItemSource, JobStartFailed
from conveyor.engine.instance import InstanceConfig
from conveyor.engine.instance_pool import InstancePool, PooledInstance, PoolRun
from conveyor.pipeline.work_item import WorkItem
from conveyor.sagemaker.instance_types import InstanceType, ProfileError, instance_types

RECEIVE_WAIT_SECONDS = 0.5
"""How long an actor waits for its worker's next message before answering with none."""
PLACEMENT_TIMEOUT_SECONDS = 60.0
"""How long a job waits for Ray to place at least one of its actors before it fails."""
CLOSE_WAIT_SECONDS = 10.0
MAX_LOSSES_BEFORE_READY = 3
"""Actors that may die before any of the job's instances has loaded the model."""
INSTALL_HINT = "pip install 'conveyor[ray]'"
CLIENT_CONNECT_TRIES = 3
"""Tries at a `ray://` address whose Ray Client server could not start the server it starts for
each new driver. Under load that process has been seen to exit as it started, with nothing in its
log; the next try gets a new one (Ray's client disconnects itself after a failed `ray.init`)."""

CLIENT_SERVER_FAILED = "Starting Ray client server failed"
"""What Ray Client answers when the server it starts for a driver exits at once."""

logger = logging.getLogger(__name__)


class RayUnavailable(Exception):
    """Ray is not installed, or its cluster cannot be reached; the message says what to do."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--backend ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


class RayCluster:
    """The driver's connection to a Ray cluster: `address` (`auto`, `HOST:PORT`, `ray://HOST:PORT`),
    or None for a local Ray runtime started here and shut down by `shutdown()`."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._connected = False

    def connect(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            self._connected = True
            return
        # Ray warns, on every start of a local runtime, that it protects the runtime with a token.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        options: dict[str, Any] = {"namespace": "conveyor", "logging_level": logging.WARNING, "log_to_driver": False}
        if self.address is None:  # a runtime of this machine alone: on loopback only, and reporting no usage to Ray's makers
            options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        for attempt in range(1, CLIENT_CONNECT_TRIES + 1):
            try:
                ray.init(address=self.address or "local", **options)  # "local": a new runtime, not one `ray start` left running
                break
            except (ConnectionError, RuntimeError, ValueError) as exc:
                if attempt == CLIENT_CONNECT_TRIES or CLIENT_SERVER_FAILED not in str(exc):
                    raise RayUnavailable(f"--ray-address {self.address}: cannot connect to the Ray cluster: {exc}") from None
                logger.warning("--ray-address %s: the Ray Client server failed to start a server for this driver; trying again (%d of %d)", self.address, attempt + 1, CLIENT_CONNECT_TRIES)
        self._connected = True

    def shutdown(self) -> None:
        if self._connected:
            _ray().shutdown()
            self._connected = False

    def nodes(self) -> list[dict[str, float]]:
        """The resources of each live node (CPU, GPU, memory in bytes)."""
        self.connect()
        return [node["Resources"] for node in _ray().nodes() if node.get("Alive")]

    def total_cpus(self) -> int:
        return max(int(sum(node.get("CPU", 0) for node in self.nodes())), 1)


@dataclass(frozen=True)
class ActorResources:
    """What each of a job's actors asks Ray for."""

    cpus: float
    gpus: int
    memory_bytes: int | None

    def text(self) -> str:
        memory = f", {self.memory_bytes / (1 << 30):.3g} GiB of memory" if self.memory_bytes else ""
        return f"{self.cpus:g} CPU, {self.gpus} GPU{memory}"


def actor_resources(profile: InstanceType, instances: int, nodes: list[dict[str, float]], log: Callable[[str], None]) -> ActorResources:
    """An instance type's resources as Ray requests: its GPUs as they are (a cluster without a
    node that has them fails the job now, rather than leave its actors waiting), its CPUs and
    memory capped at what the largest node has and at a share of the cluster for each of the
    job's instances, so that `ml.c4.xlarge` (4 vCPUs) still runs on a 2-CPU laptop (the job
    log says so)."""
    most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    if profile.gpus > most_gpus:
        described = "; ".join(f"{node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU" for node in nodes) or "none alive"
        raise JobStartFailed(
            f"InstanceType {profile.name} needs {profile.gpus} GPU per instance, and no node of the Ray cluster has "
            f"{profile.gpus} GPU (its nodes: {described}); its instances could never be placed."
        )
    largest_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    share_cpus = sum(node.get("CPU", 0) for node in nodes) / instances
    largest_memory = max((node.get("memory", 0) for node in nodes), default=0)
    share_memory = sum(node.get("memory", 0) for node in nodes) / instances
    cpus = float(profile.vcpus) if profile.vcpus is not None else 1.0
    capped_cpus = _down(min(cpus, largest_cpus, share_cpus))
    memory = int(profile.memory_gib * (1 << 30)) if profile.memory_gib is not None else None
    capped_memory = int(min(memory, largest_memory, share_memory)) if memory is not None else None
    resources = ActorResources(capped_cpus, profile.gpus, capped_memory or None)
    if capped_cpus < cpus or (memory is not None and (capped_memory or 0) < memory):
        asked = f"{profile.vcpus} vCPUs and {profile.memory_gib:g} GiB" if profile.vcpus and profile.memory_gib else f"{cpus:g} CPU"
        log(
            f"InstanceType {profile.name} has {asked} per instance; the Ray cluster's largest node has {largest_cpus:g} CPU and "
            f"{largest_memory / (1 << 30):.3g} GiB, and {instances} instances share {sum(n.get('CPU', 0) for n in nodes):g} CPU: "
            f"each instance asks Ray for {resources.text()}."
        )
    return resources


def _down(cpus: float) -> float:
    """Ray takes CPU requests in hundredths; never below one hundredth."""
    return max(math.floor(cpus * 100) / 100, 0.01)


@dataclass
class _Actor(PooledInstance):
    handle: Any = None
    receiving: Any = None  # the pending `receive` call
    sending: Any = None  # the pending `send` call: one at a time, so that items arrive in order
    outbox: list[WorkItem] = field(default_factory=list)
    placed: bool = False  # it has answered once: Ray found it a place


class RayBackend(InstancePool):
    def __init__(self, cluster: RayCluster, instance_types_file: Path | None = None) -> None:
        """`instance_types_file`: the profiles file whose types override or add to the built-in
        ones (`sagemaker.instance_types`)."""
        self._cluster = cluster
        self._instance_types_file = instance_types_file
        self._resources: ActorResources | None = None
        self._host_class: Any = None
        self._since = 0.0
        self._losses_before_ready = 0

    def run(self, config: InstanceConfig, instance_count: int, items: ItemSource, events: InstanceEvents, stop: threading.Event) -> None:
        self._cluster.connect()
        log = lambda line: events.on_log(0, line)  # noqa: E731
        try:
            profile = instance_types(self._instance_types_file).get(config.instance_type)
        except ProfileError as exc:
            raise JobStartFailed(str(exc)) from None
        if profile is None:
            log(f"InstanceType {config.instance_type} has no profile (built in or in --instance-types FILE); each instance asks Ray for 1 CPU.")
            profile = InstanceType(config.instance_type, 1, None)
        nodes = self._cluster.nodes()
        self._resources = actor_resources(profile, instance_count, nodes, log)
        where = self._cluster.address or "started for this command"
        log(f"Ray cluster {where}: {len(nodes)} node{'s' if len(nodes) != 1 else ''}; each instance asks Ray for {self._resources.text()}")
        self._since = time.monotonic()
        self._losses_before_ready = 0
        super().run(config, instance_count, items, events, stop)

    def _start(self, run: PoolRun, index: int) -> _Actor:
        ray = _ray()
        if self._host_class is None:
            from conveyor.engine.ray_host import InstanceHost

            self._host_class = ray.remote(InstanceHost)
        resources = self._resources
        assert resources is not None
        options: dict[str, Any] = {
            "num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_concurrency": 3, "scheduling_strategy": "SPREAD",
        }
        if resources.memory_bytes:
            options["memory"] = resources.memory_bytes
        handle = self._host_class.options(**options).remote(index, run.config)
        actor = _Actor(index, handle=handle)
        actor.receiving = handle.receive.remote(RECEIVE_WAIT_SECONDS)
        return actor

    def _send(self, instance: PooledInstance, items: list[WorkItem]) -> None:
        assert isinstance(instance, _Actor)
        instance.outbox += items
        self._flush(instance)

    @staticmethod
    def _flush(actor: _Actor) -> None:
        if actor.sending is None and actor.outbox:
            actor.sending = actor.handle.send.remote(actor.outbox)
            actor.outbox = []

    def _wait(self, run: PoolRun) -> None:
        ray = _ray()
        pending: dict[Any, tuple[_Actor, str]] = {}
        for instance in run.instances:
            if isinstance(instance, _Actor) and not instance.closed:
                pending[instance.receiving] = (instance, "receive")
                if instance.sending is not None:
                    pending[instance.sending] = (instance, "send")
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
        if ready:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in ready:
            actor, call = pending[ref]
            if actor.closed:
                continue
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._actor_lost(run, actor, exc)
                continue
            if call == "send":
                actor.sending = None
                self._flush(actor)
                continue
            actor.placed = True
            said, exited, exit_code, running = answer
            for message in said:
                self._handle(run, actor, message)
            if exited:
                ray.kill(actor.handle)
                self._lost(run, actor, exit_code, running=running)
            else:
                actor.receiving = actor.handle.receive.remote(RECEIVE_WAIT_SECONDS)
        self._check_placed(run)

    def _actor_lost(self, run: PoolRun, actor: _Actor, error: Exception) -> None:
        """An actor died under its worker (killed, out of memory, its node lost). One that keeps
        dying before any instance has loaded the model fails the job, rather than be replaced forever."""
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        run.events.on_log(actor.index, f"Instance {actor.index + 1}'s Ray actor died: {why}")
        if not any(instance.ready for instance in run.instances):
            self._losses_before_ready += 1
            if self._losses_before_ready >= MAX_LOSSES_BEFORE_READY:
                raise JobStartFailed(f"The job's Ray actors died {self._losses_before_ready} times before any loaded the model; the last: {why}")
        self._lost(run, actor, None, while_loading_fails_job=False)

    def _check_placed(self, run: PoolRun) -> None:
        """A job none of whose actors Ray has placed within PLACEMENT_TIMEOUT_SECONDS fails,
        naming what they ask for; it never waits for resources no node will free."""
        if any(isinstance(instance, _Actor) and instance.placed for instance in run.instances):
            return
        if time.monotonic() - self._since < PLACEMENT_TIMEOUT_SECONDS:
            return
        assert self._resources is not None
        nodes = "; ".join(f"{node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU" for node in self._cluster.nodes())
        raise JobStartFailed(
            f"Ray placed none of the job's {len(run.instances)} instances within {PLACEMENT_TIMEOUT_SECONDS:g} seconds: each asks for "
            f"{self._resources.text()}, and the cluster's nodes have {nodes or 'none alive'}."
        )

    def _shutdown(self, run: PoolRun, *, graceful: bool) -> None:
        """Every actor closes its model (`graceful`; its last log lines reach the job log), then
        is killed, which frees its resources at once."""
        ray = _ray()
        actors = [instance for instance in run.instances if isinstance(instance, _Actor) and not instance.closed]
        if graceful:  # an actor Ray never placed has nothing to say
            placed = [actor for actor in actors if actor.placed]
            closing = {actor.handle.close.remote(CLOSE_WAIT_SECONDS): actor for actor in placed}
            finishing = {actor.receiving: actor for actor in placed}
            for calls in (finishing, closing):
                for ref, actor in calls.items():
                    try:
                        answer = ray.get(ref, timeout=CLOSE_WAIT_SECONDS + 5)
                    except (ray.exceptions.RayError, TimeoutError):
                        continue
                    for message in answer[0] if calls is finishing else answer:
                        self._handle(run, actor, message)
        for actor in actors:
            try:
                ray.kill(actor.handle)
            except ray.exceptions.RayError:
                pass
