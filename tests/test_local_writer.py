"""Local outputs are written whole or not at all, whether they fit the writer's buffer or not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.storage.base import StorageError
from conveyor.storage.local import WRITE_BUFFER_BYTES, LocalStorage


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_a_small_output_appears_only_at_commit(tmp_path: Path) -> None:
    writer = LocalStorage().open_write(f"file://{tmp_path}/new/a.out")
    writer.write(b"1,2\n")
    writer.write(memoryview(b"3,4\n"))
    temporary = [name for name in os.listdir(tmp_path / "new") if name.startswith(".a.out")]
    assert len(temporary) == 1 and (tmp_path / "new" / temporary[0]).read_bytes() == b""  # buffered, in a temporary a crash would leave to sweep
    writer.commit()
    assert (tmp_path / "new" / "a.out").read_bytes() == b"1,2\n3,4\n"
    assert files_under(tmp_path) == ["new", "new/a.out"]


def test_a_large_output_goes_through_a_temporary_and_is_whole(tmp_path: Path) -> None:
    chunk = os.urandom(WRITE_BUFFER_BYTES // 3 + 1)
    writer = LocalStorage().open_write(f"file://{tmp_path}/b.out")
    for _ in range(7):
        writer.write(chunk)
    temporary = [name for name in os.listdir(tmp_path) if name.startswith(".b.out")]
    assert (tmp_path / temporary[0]).stat().st_size >= WRITE_BUFFER_BYTES  # past the buffer: written as it goes
    assert not (tmp_path / "b.out").exists()
    writer.commit()
    assert (tmp_path / "b.out").read_bytes() == chunk * 7
    assert os.listdir(tmp_path) == ["b.out"]


@pytest.mark.parametrize("written", [10, 3 * WRITE_BUFFER_BYTES])
def test_an_aborted_output_leaves_nothing_behind(tmp_path: Path, written: int) -> None:
    with pytest.raises(RuntimeError), LocalStorage().open_write(f"file://{tmp_path}/deep/er/c.out") as writer:
        writer.write(b"x" * written)
        raise RuntimeError("the model failed")
    assert files_under(tmp_path) == []  # no temporary, no folder made for it


def test_a_commit_that_fails_names_the_output_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "d.out").mkdir()  # the output's name is taken by a folder that is not empty
    (tmp_path / "d.out" / "keep").write_bytes(b"")
    writer = LocalStorage().open_write(f"file://{tmp_path}/d.out")
    writer.write(b"1\n")
    with pytest.raises(StorageError, match=rf"^file://{tmp_path}/d.out: WriteFailed: "):
        writer.commit()
    assert files_under(tmp_path) == ["d.out", "d.out/keep"]


def test_read_bytes_stops_past_most(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_bytes(b"y" * 5000)
    storage = LocalStorage()
    assert storage.read_bytes(f"file://{tmp_path}/e.csv") == b"y" * 5000
    assert len(storage.read_bytes(f"file://{tmp_path}/e.csv", most=100)) == 101
    with pytest.raises(StorageError, match="NoSuchKey: is a directory"):
        storage.read_bytes(f"file://{tmp_path}")
    with pytest.raises(StorageError, match="NoSuchKey: no such file"):
        storage.read_bytes(f"file://{tmp_path}/missing.csv")
