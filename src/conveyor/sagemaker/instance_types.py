"""Instance-type profiles: what each SageMaker transform instance type has (vCPUs, memory, NVIDIA
GPUs), so that an instance is given the GPUs of its type and a backend can ask for its resources.

The built-in profiles cover every `TransformInstanceType` of the botocore model Conveyor ships
with (AWS's published figures) plus Conveyor's `local` and `local_gpu`, which stand for this
machine (no vCPU or memory bound). A profiles file overrides fields of built-in types or adds
types, as JSON (docs/containers.md, "GPUs and instance types"):

    {"ml.g5.xlarge": {"gpus": 0}, "ml.g7.xlarge": {"vcpus": 4, "memory_gib": 16, "gpus": 1, "gpu_kind": "B200"}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

LOCAL_TYPES = ("local", "local_gpu")
"""Conveyor's own instance types: this machine, without GPUs or with one GPU per instance."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int | None  # None: this machine's (the local types)
    memory_gib: float | None  # None: this machine's
    gpus: int = 0  # NVIDIA GPUs; Inferentia and Trainium accelerators are not GPUs
    gpu_kind: str | None = None


def _types(gpu_kind: str | None, rows: str) -> dict[str, InstanceType]:
    """`name vcpus memory_gib gpus` per line, all of one GPU kind (or none)."""
    types = {}
    for line in rows.strip().splitlines():
        name, vcpus, memory, gpus = line.split()
        types[name] = InstanceType(name, int(vcpus), float(memory), int(gpus), gpu_kind if int(gpus) else None)
    return types


BUILT_IN: dict[str, InstanceType] = {
    "local": InstanceType("local", None, None),
    "local_gpu": InstanceType("local_gpu", None, None, 1),
    **_types(None, """
        ml.m4.xlarge 4 16 0
        ml.m4.2xlarge 8 32 0
        ml.m4.4xlarge 16 64 0
        ml.m4.10xlarge 40 160 0
        ml.m4.16xlarge 64 256 0
        ml.c4.xlarge 4 7.5 0
        ml.c4.2xlarge 8 15 0
        ml.c4.4xlarge 16 30 0
        ml.c4.8xlarge 36 60 0
        ml.c5.xlarge 4 8 0
        ml.c5.2xlarge 8 16 0
        ml.c5.4xlarge 16 32 0
        ml.c5.9xlarge 36 72 0
        ml.c5.18xlarge 72 144 0
        ml.m5.large 2 8 0
        ml.m5.xlarge 4 16 0
        ml.m5.2xlarge 8 32 0
        ml.m5.4xlarge 16 64 0
        ml.m5.12xlarge 48 192 0
        ml.m5.24xlarge 96 384 0
        ml.m6i.large 2 8 0
        ml.m6i.xlarge 4 16 0
        ml.m6i.2xlarge 8 32 0
        ml.m6i.4xlarge 16 64 0
        ml.m6i.8xlarge 32 128 0
        ml.m6i.12xlarge 48 192 0
        ml.m6i.16xlarge 64 256 0
        ml.m6i.24xlarge 96 384 0
        ml.m6i.32xlarge 128 512 0
        ml.c6i.large 2 4 0
        ml.c6i.xlarge 4 8 0
        ml.c6i.2xlarge 8 16 0
        ml.c6i.4xlarge 16 32 0
        ml.c6i.8xlarge 32 64 0
        ml.c6i.12xlarge 48 96 0
        ml.c6i.16xlarge 64 128 0
        ml.c6i.24xlarge 96 192 0
        ml.c6i.32xlarge 128 256 0
        ml.r6i.large 2 16 0
        ml.r6i.xlarge 4 32 0
        ml.r6i.2xlarge 8 64 0
        ml.r6i.4xlarge 16 128 0
        ml.r6i.8xlarge 32 256 0
        ml.r6i.12xlarge 48 384 0
        ml.r6i.16xlarge 64 512 0
        ml.r6i.24xlarge 96 768 0
        ml.r6i.32xlarge 128 1024 0
        ml.m7i.large 2 8 0
        ml.m7i.xlarge 4 16 0
        ml.m7i.2xlarge 8 32 0
        ml.m7i.4xlarge 16 64 0
        ml.m7i.8xlarge 32 128 0
        ml.m7i.12xlarge 48 192 0
        ml.m7i.16xlarge 64 256 0
        ml.m7i.24xlarge 96 384 0
        ml.m7i.48xlarge 192 768 0
        ml.c7i.large 2 4 0
        ml.c7i.xlarge 4 8 0
        ml.c7i.2xlarge 8 16 0
        ml.c7i.4xlarge 16 32 0
        ml.c7i.8xlarge 32 64 0
        ml.c7i.12xlarge 48 96 0
        ml.c7i.16xlarge 64 128 0
        ml.c7i.24xlarge 96 192 0
        ml.c7i.48xlarge 192 384 0
        ml.r7i.large 2 16 0
        ml.r7i.xlarge 4 32 0
        ml.r7i.2xlarge 8 64 0
        ml.r7i.4xlarge 16 128 0
        ml.r7i.8xlarge 32 256 0
        ml.r7i.12xlarge 48 384 0
        ml.r7i.16xlarge 64 512 0
        ml.r7i.24xlarge 96 768 0
        ml.r7i.48xlarge 192 1536 0
        ml.trn1.2xlarge 8 32 0
        ml.trn1.32xlarge 128 512 0
        ml.inf2.xlarge 4 16 0
        ml.inf2.8xlarge 32 128 0
        ml.inf2.24xlarge 96 384 0
        ml.inf2.48xlarge 192 768 0
    """),
    **_types("K80", """
        ml.p2.xlarge 4 61 1
        ml.p2.8xlarge 32 488 8
        ml.p2.16xlarge 64 732 16
    """),
    **_types("V100", """
        ml.p3.2xlarge 8 61 1
        ml.p3.8xlarge 32 244 4
        ml.p3.16xlarge 64 488 8
    """),
    **_types("T4", """
        ml.g4dn.xlarge 4 16 1
        ml.g4dn.2xlarge 8 32 1
        ml.g4dn.4xlarge 16 64 1
        ml.g4dn.8xlarge 32 128 1
        ml.g4dn.12xlarge 48 192 4
        ml.g4dn.16xlarge 64 256 1
    """),
    **_types("A10G", """
        ml.g5.xlarge 4 16 1
        ml.g5.2xlarge 8 32 1
        ml.g5.4xlarge 16 64 1
        ml.g5.8xlarge 32 128 1
        ml.g5.12xlarge 48 192 4
        ml.g5.16xlarge 64 256 1
        ml.g5.24xlarge 96 384 4
        ml.g5.48xlarge 192 768 8
    """),
    **_types("L4", """
        ml.g6.xlarge 4 16 1
        ml.g6.2xlarge 8 32 1
        ml.g6.4xlarge 16 64 1
        ml.g6.8xlarge 32 128 1
        ml.g6.12xlarge 48 192 4
        ml.g6.16xlarge 64 256 1
        ml.g6.24xlarge 96 384 4
        ml.g6.48xlarge 192 768 8
    """),
    **_types("L40S", """
        ml.g6e.xlarge 4 32 1
        ml.g6e.2xlarge 8 64 1
        ml.g6e.4xlarge 16 128 1
        ml.g6e.8xlarge 32 256 1
        ml.g6e.12xlarge 48 384 4
        ml.g6e.16xlarge 64 512 1
        ml.g6e.24xlarge 96 768 4
        ml.g6e.48xlarge 192 1536 8
    """),
}


class ProfileError(ValueError):
    """A profiles file that cannot be read or breaks a rule; the message names the file, the
    type, the field, the value and the rule."""


_REQUIRED_FOR_NEW = ("vcpus", "memory_gib", "gpus")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_rule(field: str, value: Any) -> str | None:
    """Why `value` cannot be `field`'s value, or None when it can."""
    if field == "vcpus" and value is not None and not (_is_int(value) and value >= 1):
        return "must be an integer of at least 1, or null for this machine's"
    if field == "memory_gib":
        number = _is_int(value) or isinstance(value, float)
        if value is not None and not (number and math.isfinite(value) and value > 0):
            return "must be a number of GiB above 0, or null for this machine's"
    if field == "gpus" and not (_is_int(value) and value >= 0):
        return "must be an integer of at least 0"
    if field == "gpu_kind" and value is not None and not (isinstance(value, str) and value.strip()):
        return "must be a non-empty string, or null"
    return None


def load_profiles(path: Path) -> dict[str, InstanceType]:
    """The built-in profiles with a profiles file's overrides (fields it gives replace the
    built-in ones) and additions (which must give vcpus, memory_gib and gpus)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"instance types file {path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"instance types file {path}: is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"instance types file {path}: must be a JSON object mapping instance types to their profiles, not {type(document).__name__}")
    profiles = dict(BUILT_IN)
    for name, fields in document.items():
        where = f"instance types file {path}: instance type {name!r}"
        if not name.strip():
            raise ProfileError(f"{where}: the name must not be empty")
        if not isinstance(fields, dict):
            raise ProfileError(f"{where}: {fields!r} must be an object with vcpus, memory_gib, gpus and gpu_kind")
        unknown = sorted(set(fields) - {"vcpus", "memory_gib", "gpus", "gpu_kind"})
        if unknown:
            raise ProfileError(f"{where}: unknown field {unknown[0]!r}; the fields are vcpus, memory_gib, gpus and gpu_kind")
        for field, value in fields.items():
            rule = _field_rule(field, value)
            if rule is not None:
                raise ProfileError(f"{where}: {field} {json.dumps(value)} {rule}")
        if name not in BUILT_IN:
            missing = [field for field in _REQUIRED_FOR_NEW if field not in fields]
            if missing:
                raise ProfileError(f"{where}: {missing[0]} is missing; a type that is not built in must give vcpus, memory_gib and gpus")
        base = BUILT_IN.get(name, InstanceType(name, None, None))
        profiles[name] = replace(base, **fields)
    return profiles


def instance_types(path: Path | None) -> dict[str, InstanceType]:
    """Every profile: the built-in ones, with the profiles file's when one is set."""
    return load_profiles(path) if path is not None else dict(BUILT_IN)
