"""Model artifacts: directories as they are, tar archives extracted once, safely, atomically."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from conveyor.runtimes.artifacts import MARKER_SUFFIX, ModelArtifactError, prepare_model_dir
from conveyor.runtimes.base import RuntimeStartError


def write_archive(path: Path, members: dict[str, bytes], *, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def add_link(path: Path, name: str, target: str, *, hard: bool = False) -> None:
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        info.linkname = target
        archive.addfile(info)


def add_device(path: Path, name: str) -> None:
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE
        archive.addfile(info)


MODEL = {"model.pkl": b"weights", "code/inference.py": b"def model_fn(d):\n    return d\n"}


def test_a_directory_is_returned_as_is(tmp_path):
    (tmp_path / "model").mkdir()
    assert prepare_model_dir(str(tmp_path / "model"), str(tmp_path / "unused")) == str(tmp_path / "model")
    assert not (tmp_path / "unused").exists()


def test_tar_gz_is_extracted_with_exactly_its_files(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", MODEL)
    dest = tmp_path / "work" / "model"
    assert prepare_model_dir(str(archive), str(dest)) == str(dest)
    assert (dest / "model.pkl").read_bytes() == b"weights"
    assert (dest / "code" / "inference.py").exists()
    assert sorted(os.listdir(dest)) == ["code", "model.pkl"]  # the marker lives beside, not inside
    assert Path(str(dest) + MARKER_SUFFIX).exists()
    assert sorted(os.listdir(dest.parent)) == ["model", "model.extracted.json", "model.lock"]


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_plain_and_other_compressed_tars(tmp_path, mode):
    archive = write_archive(tmp_path / "model.tar", MODEL, mode=mode)
    dest = prepare_model_dir(str(archive), str(tmp_path / "model"))
    assert Path(dest, "model.pkl").read_bytes() == b"weights"


def test_file_uri(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", MODEL)
    dest = prepare_model_dir(archive.as_uri(), str(tmp_path / "model"))
    assert Path(dest, "model.pkl").exists()
    assert prepare_model_dir((tmp_path).as_uri(), str(tmp_path / "x")) == str(tmp_path)


def test_extraction_is_skipped_when_already_done(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", MODEL)
    dest = tmp_path / "model"
    prepare_model_dir(str(archive), str(dest))
    (dest / "model.pkl").write_bytes(b"touched")  # a second extraction would restore it
    prepare_model_dir(str(archive), str(dest))
    assert (dest / "model.pkl").read_bytes() == b"touched"


def test_a_changed_archive_is_extracted_again_replacing_the_old_files(tmp_path):
    archive = tmp_path / "model.tar.gz"
    write_archive(archive, MODEL)
    dest = tmp_path / "model"
    prepare_model_dir(str(archive), str(dest))
    write_archive(archive, {"other.bin": b"v2-and-longer"})
    os.utime(archive, ns=(1, 1))
    prepare_model_dir(str(archive), str(dest))
    assert sorted(os.listdir(dest)) == ["other.bin"]
    assert sorted(os.listdir(tmp_path)) == ["model", "model.extracted.json", "model.lock", "model.tar.gz"]


def test_a_directory_without_marker_is_replaced_and_crash_leftovers_swept(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", MODEL)
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "stale").write_text("from an interrupted run")
    (tmp_path / "model.extracting-abc").mkdir()
    prepare_model_dir(str(archive), str(dest))
    assert sorted(os.listdir(dest)) == ["code", "model.pkl"]
    assert not (tmp_path / "model.extracting-abc").exists()


def test_concurrent_callers_extract_once_and_all_see_the_whole_directory(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", {f"f{i}": b"x" * 1000 for i in range(50)})
    dest = tmp_path / "model"
    results: list[str] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            path = prepare_model_dir(str(archive), str(dest))
            assert len(os.listdir(path)) == 50
            results.append(path)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and results == [str(dest)] * 6


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda path: write_archive(path, {"../escaped.txt": b"evil"}), r"unsafe member.*escaped\.txt"),
        (lambda path: add_device(path, "console"), r"unsafe member.*console"),
        (lambda path: add_link(path, "link", "../../escaped.txt"), r"unsafe member.*link"),
        (lambda path: add_link(path, "link", "/etc/passwd"), r"unsafe member.*link"),
        (lambda path: add_link(path, "hard", "/etc/passwd", hard=True), r"unsafe member.*hard"),
    ],
)
def test_members_escaping_the_directory_are_refused(tmp_path, build, match):
    archive = tmp_path / "in" / "model.tar.gz"
    archive.parent.mkdir()
    build(archive)
    dest = tmp_path / "out" / "model"
    with pytest.raises(ModelArtifactError, match=match) as caught:
        prepare_model_dir(str(archive), str(dest))
    assert str(archive) in str(caught.value)
    assert not dest.exists()
    assert sorted(os.listdir(dest.parent)) == ["model.lock"]  # the staging directory is gone
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "in" / "escaped.txt").exists()


def test_an_absolute_member_name_lands_inside(tmp_path):
    archive = write_archive(tmp_path / "model.tar.gz", {"/abs/inside.txt": b"ok"})
    dest = prepare_model_dir(str(archive), str(tmp_path / "model"))
    assert Path(dest, "abs", "inside.txt").read_bytes() == b"ok"  # tarfile's data filter strips the "/"


def test_not_a_tar_archive(tmp_path):
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"this is no archive")
    with pytest.raises(ModelArtifactError, match=rf"model data {bogus} is not a readable tar archive"):
        prepare_model_dir(str(bogus), str(tmp_path / "model"))


def test_missing_model_data(tmp_path):
    with pytest.raises(ModelArtifactError, match=r"model data .*nowhere\.tar\.gz does not exist"):
        prepare_model_dir(str(tmp_path / "nowhere.tar.gz"), str(tmp_path / "model"))


def test_remote_uri_is_refused_and_the_error_is_a_start_error(tmp_path):
    with pytest.raises(RuntimeStartError, match=r"s3://bucket/model\.tar\.gz is not a local path"):
        prepare_model_dir("s3://bucket/model.tar.gz", str(tmp_path / "model"))
