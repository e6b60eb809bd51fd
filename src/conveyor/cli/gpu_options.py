"""The flags of instance-type profiles and GPUs, shared by `conveyor server` and `conveyor transform`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conveyor.settings import parse_gpus


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance-types", metavar="FILE",
        help="a JSON file of instance-type profiles (vcpus, memory_gib, gpus, gpu_kind) that override or add to the "
        "built-in ones (default $CONVEYOR_INSTANCE_TYPES); see docs/containers.md",
    )
    parser.add_argument(
        "--gpus", metavar="DEVICES",
        help="this machine's GPUs that instances are given, e.g. 0,1, or none (default $CONVEYOR_GPUS, else "
        "$CUDA_VISIBLE_DEVICES, else those nvidia-smi -L lists)",
    )
    parser.add_argument(
        "--require-gpus", action="store_true", default=None,
        help="fail a job at start when its instance type has more GPUs than this machine gives, rather than running it "
        "on CPU (default $CONVEYOR_REQUIRE_GPUS)",
    )


def gpu_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give (raises SettingsError for a bad --gpus)."""
    return {
        "instance_types_file": Path(args.instance_types).expanduser() if args.instance_types else None,
        "gpus": parse_gpus(args.gpus) if args.gpus is not None else None,
        "require_gpus": args.require_gpus,
    }
