"""An output that cannot be written for lack of space fails its object with a reason that names
the output object, not the line of Conveyor's code that met the error. The full disk is a small
tmpfs that the test mounts (the tests run as root, as CI does)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.models import BRACKET, write_model
from tests.test_transform_cli import conveyor


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_names_the_output_object(tmp_path: Path, small_disk: Path) -> None:
    model = write_model(tmp_path, BRACKET)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.csv").write_text(("y" * 1000 + "\n") * 300)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(small_disk / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--retries", "0", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"First: file://{small_disk}/out/big.csv.out: WriteFailed: No space left on device" in result.stderr, result.stderr
    assert ".py, line" not in result.stderr
    assert [path for path in small_disk.rglob("*") if path.is_file()] == []  # no output, no temporary
