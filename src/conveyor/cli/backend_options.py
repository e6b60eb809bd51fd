"""The flags that choose the backend, shared by `conveyor server` and `conveyor transform`."""

from __future__ import annotations

import argparse
from typing import Any

from conveyor.settings import parse_backend


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", metavar="NAME",
        help="where instances run: local (processes on this machine) or ray (actors on a Ray "
        "cluster; pip install 'conveyor[ray]'); default $CONVEYOR_BACKEND or local; see docs/scale.md",
    )
    parser.add_argument(
        "--ray-address", metavar="ADDRESS",
        help="the Ray cluster of --backend ray: auto, HOST:PORT or ray://HOST:PORT (default $CONVEYOR_RAY_ADDRESS; "
        "without one, a local Ray runtime is started and stopped with the command)",
    )


def backend_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give (raises SettingsError for an unknown --backend)."""
    overrides: dict[str, Any] = {"ray_address": args.ray_address}
    if args.backend is not None:
        overrides["backend"] = parse_backend(args.backend, "--backend")
    if args.ray_address and args.backend is None:
        overrides["backend"] = "ray"  # an address says which backend
    return overrides
