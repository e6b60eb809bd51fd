"""The `conveyor` command: one sub-command per task (`transform`, `preview`, `server`, `jobs`, …)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from conveyor.cli import jobs, logs, models, preview, server, transform


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Run SageMaker-style batch transform jobs on this machine, or serve SageMaker's API for them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    transform.register(commands)
    preview.register(commands)
    server.register(commands)
    jobs.register(commands)
    models.register(commands)
    logs.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
