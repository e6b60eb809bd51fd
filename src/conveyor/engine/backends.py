"""Which backend a command runs its jobs on (`--backend`, CONVEYOR_BACKEND), opened once for
the command's life: the local backend needs nothing; the Ray backend connects to its cluster
(or starts a local Ray runtime) and shuts down what it started at the end."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from conveyor.engine.backend import Backend
from conveyor.engine.local import LocalBackend
from conveyor.settings import Settings


@dataclass
class OpenBackend:
    settings: Settings  # with the capacity of the Ray cluster where no capacity was given
    new_backend: Callable[[], Backend]  # one per job
    close: Callable[[], None]


def open_backend(settings: Settings, *, capacity_given: bool) -> OpenBackend:
    """Raises RayUnavailable (engine.ray_backend) when Ray is missing or its cluster cannot be reached."""
    if settings.backend != "ray":
        return OpenBackend(settings, LocalBackend, lambda: None)
    from conveyor.engine.ray_backend import RayBackend, RayCluster

    cluster = RayCluster(settings.ray_address)
    cluster.connect()
    if not capacity_given:  # as many instances at once as the cluster has CPUs, as this machine's count is the local default
        settings = replace(settings, capacity=cluster.total_cpus())
    return OpenBackend(settings, lambda: RayBackend(cluster, settings.instance_types_file), cluster.shutdown)


def cluster_nodes(settings: Settings) -> int:
    """How many machines a job's instances may run on: more than one only on a Ray cluster."""
    if settings.backend != "ray":
        return 1
    from conveyor.engine.ray_backend import RayCluster

    return len(RayCluster(settings.ray_address).nodes())
