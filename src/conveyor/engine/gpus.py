"""Which GPUs each instance of a job sees: its instance type's count, from this machine's devices.

Instance i of a type with k GPUs gets devices [i*k, (i+1)*k) of the machine's list, so the
instances of one job never share a device. A machine with fewer devices than the job asks for
runs the instances left short on fewer GPUs or on CPU, and the job log says so in one line;
with `require_gpus` the job fails at start instead (docs/containers.md, "GPUs and instance types").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from conveyor.engine.backend import JobStartFailed
from conveyor.sagemaker.instance_types import ProfileError, instance_types
from conveyor.settings import Settings


def assign_gpus(gpus_per_instance: int, instances: int, devices: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Each instance's devices: instance i gets devices[i*k:(i+1)*k], fewer or none when the list runs out."""
    k = gpus_per_instance
    return tuple(tuple(devices[i * k : (i + 1) * k]) for i in range(instances))


def _gpus(count: int, kind: str | None = None) -> str:
    return f"{count} {kind + ' ' if kind else ''}GPU{'' if count == 1 else 's'}"


def _machine(devices: Sequence[str]) -> str:
    return f"this machine has {_gpus(len(devices))} ({','.join(devices)})" if devices else "this machine has no GPU"


def plan_gpus(instance_type: str, instances: int, settings: Settings, log: Callable[[str], None]) -> tuple[tuple[str, ...], ...]:
    """The devices of each of a job's `instances`; raises JobStartFailed when the profiles file is
    broken, or when GPUs are short and the settings require them."""
    try:
        profile = instance_types(settings.instance_types_file).get(instance_type)
    except ProfileError as exc:
        raise JobStartFailed(str(exc)) from None
    if profile is None:
        log(f"InstanceType {instance_type} has no profile (built in or in --instance-types FILE); its instances run without GPUs.")
        return assign_gpus(0, instances, ())
    devices = settings.machine_gpus()
    assignment = assign_gpus(profile.gpus, instances, devices)
    short = [number for number, given in enumerate(assignment, 1) if len(given) < profile.gpus]
    if not short:
        return assignment
    wanted = f"InstanceType {instance_type} has {_gpus(profile.gpus, profile.gpu_kind)} per instance"
    if instances > 1:
        wanted += f" ({profile.gpus * instances} for {instances} instances)"
    if settings.require_gpus:
        raise JobStartFailed(f"{wanted}, but {_machine(devices)}, and --require-gpus (CONVEYOR_REQUIRE_GPUS) is set.")
    shares = "; ".join(
        f"instance {number} runs on " + (f"GPU {','.join(given)}" if given else "CPU") for number, given in enumerate(assignment, 1)
    )
    log(f"{wanted}, but {_machine(devices)}: {shares}.")
    return assignment
