"""The `conveyor` command: one sub-command per task (`transform`, `preview`, `server`, `jobs`, …).

Only the module of the sub-command being run is imported, so `conveyor transform` does not pay
for the server's or the AWS clients' imports before its job starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Sequence

COMMANDS = {
    "transform": "conveyor.cli.transform",
    "preview": "conveyor.cli.preview",
    "server": "conveyor.cli.server",
    "jobs": "conveyor.cli.jobs",
    "models": "conveyor.cli.models",
    "logs": "conveyor.cli.logs",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every sub-command, or for `only` that one."""
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Run SageMaker-style batch transform jobs on this machine, or serve SageMaker's API for them.",
    )
    parser.add_argument("--version", action=_Version, help="show Conveyor's version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(commands)
    return parser


class _Version(argparse.Action):
    """`--version`, looked up only when asked for: importlib.metadata costs every command time."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import importlib.metadata

        print(f"conveyor {importlib.metadata.version('conveyor')}")  # on stdout, as argparse's own version action
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments and arguments[0] in COMMANDS else None
    early = _early_instances(arguments) if command == "transform" else []
    try:
        args = build_parser(command).parse_args(arguments)
    except BaseException:
        from conveyor.engine.instance_process import stop_unused

        stop_unused(early)
        raise
    args.prestarted = early
    return int(args.handler(args) or 0)


def _early_instances(arguments: list[str]) -> list[Any]:
    """The instance processes of a local `conveyor transform`, started before the command's own
    imports, so that the two starts overlap (docs/benchmarks.md, "Start-up"): as many as
    `--instance-count` asks within CONVEYOR_CAPACITY, read off the arguments as they stand. The
    command starts any more it needs, and stops those it does not (a Ray job, a bad request)."""
    import os

    backend = arguments[arguments.index("--backend") + 1] if "--backend" in arguments[:-1] else os.environ.get("CONVEYOR_BACKEND")
    if backend == "ray" or "--ray-address" in arguments or os.environ.get("CONVEYOR_RAY_ADDRESS"):
        return []
    if {"-h", "--help", "--version"} & set(arguments):
        return []
    count = 1
    if "--instance-count" in arguments[:-1]:
        value = arguments[arguments.index("--instance-count") + 1]
        count = int(value) if value.isdigit() else 1
    capacity = os.environ.get("CONVEYOR_CAPACITY", "")
    count = max(min(count, int(capacity) if capacity.isdigit() else os.cpu_count() or 1), 1)
    from conveyor.engine.instance_process import InstanceProcess

    return [InstanceProcess(index) for index in range(count)]


if __name__ == "__main__":
    sys.exit(main())
