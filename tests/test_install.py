"""The base install (`pip install .`, no extras) runs `conveyor --help` and every sub-command's.

The quick start's `.venv` holds only the demo's extra, and a wheel installed from PyPI holds
none: help, usage errors and the server-facing commands must not need `[s3]` or `[dev]`.
"""

from __future__ import annotations

import argparse
import subprocess
import venv
from pathlib import Path
from typing import Iterator

import pytest

from conveyor.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every sub-command of `parser`, as the words that name it (`("jobs", "list")`, …)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from command_paths(child, (*prefix, name))


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding Conveyor and its required dependencies only."""
    root = tmp_path_factory.mktemp("base-install")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "venv" / "bin" / "conveyor"


def run(executable: Path, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "CONVEYOR_HOME": str(home / ".conveyor"), "COLUMNS": "120"}
    return subprocess.run([str(executable), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_every_help_works_on_the_base_install(base_install: Path, tmp_path: Path) -> None:
    environment = subprocess.run(
        [str(base_install.parent / "python"), "-c", "import importlib.util as u; print(u.find_spec('boto3') is None)"],
        capture_output=True, text=True,
    )
    assert environment.stdout.strip() == "True", "the base install must not hold boto3 (it comes with [s3])"
    paths = [(), *command_paths(build_parser())]
    assert ("jobs", "list") in paths and ("logs",) in paths
    for words in paths:
        result = run(base_install, *words, "--help", home=tmp_path)
        assert result.returncode == 0, f"conveyor {' '.join(words)} --help:\n{result.stderr}"
        assert result.stdout.startswith("usage: conveyor"), result.stdout
    version = run(base_install, "--version", home=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("conveyor "), version.stdout + version.stderr


@pytest.mark.slow
def test_usage_errors_and_server_commands_need_no_extra_on_the_base_install(base_install: Path, tmp_path: Path) -> None:
    for args in ((), ("tranform",), ("jobs",)):
        result = run(base_install, *args, home=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("usage: conveyor") and "Traceback" not in result.stderr, result.stderr
    unreachable = run(base_install, "jobs", "list", "--endpoint", "http://127.0.0.1:9", home=tmp_path)
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr, unreachable.stderr
    assert unreachable.stderr.startswith("conveyor jobs list: "), unreachable.stderr
