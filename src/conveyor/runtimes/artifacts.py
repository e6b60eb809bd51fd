"""Model artifacts: a model directory as is, or a `model.tar.gz` extracted once, safely.

SageMaker extracts `ModelDataUrl` into `/opt/ml/model` before the container starts; here the
archive is extracted into a directory of our choosing. Extraction refuses members that would land
outside it (`..`, absolute names, links pointing out, devices: tarfile's "data" filter), happens
in a temporary sibling renamed into place (a model directory is whole or absent), runs once per
archive (a marker beside the directory records which archive it holds), and is serialised by a
file lock so instances starting together extract it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tarfile
import tempfile
from typing import Iterator
from urllib.parse import urlparse

from conveyor.runtimes.base import RuntimeStartError

MARKER_SUFFIX = ".extracted.json"
"""`<dest_dir>.extracted.json` names the archive `dest_dir` holds (so the directory holds
exactly the archive's files, as /opt/ml/model does)."""
_EXTRACTING = ".extracting-"
_REPLACED = ".replaced-"


class ModelArtifactError(RuntimeStartError, ValueError):
    """The model data cannot be used: missing, not a tar archive, or holding an unsafe member.

    A RuntimeStartError (the instance cannot start) and a ValueError (the value is bad)."""


def prepare_model_dir(model_data: str, dest_dir: str) -> str:
    """The model directory for `model_data`: a local directory is returned as is; a local tar
    archive (`model.tar.gz`, `.tar`, any compression tarfile reads) is extracted into `dest_dir`
    unless `dest_dir` already holds that very archive, and `dest_dir` is returned."""
    path = _local_path(model_data)
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        raise ModelArtifactError(f"model data {model_data} does not exist")
    if not os.path.isfile(path):
        raise ModelArtifactError(f"model data {model_data} is neither a directory nor a file")
    stat = os.stat(path)
    source = {"archive": os.path.realpath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    target = os.path.abspath(dest_dir)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    with _locked(target + ".lock"):
        if os.path.isdir(target) and _read_marker(target) == source:
            return dest_dir
        for leftover in glob.glob(glob.escape(target) + _EXTRACTING + "*") + glob.glob(glob.escape(target) + _REPLACED + "*"):
            shutil.rmtree(leftover, ignore_errors=True)  # from a crash; we hold the lock
        staging = tempfile.mkdtemp(prefix=os.path.basename(target) + _EXTRACTING, dir=parent)
        try:
            os.chmod(staging, 0o755)
            _extract(path, staging)
            with contextlib.suppress(FileNotFoundError):
                os.remove(target + MARKER_SUFFIX)
            _move_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _write_marker(target, source)
    return dest_dir


def _local_path(model_data: str) -> str:
    if model_data.startswith("file://"):
        parsed = urlparse(model_data)
        if parsed.netloc not in ("", "localhost"):
            raise ModelArtifactError(f"model data {model_data} names another host; file:// URIs must be local")
        from urllib.request import url2pathname  # here: urllib.request imports http.client and ssl, a start-up cost

        return url2pathname(parsed.path)
    if "://" in model_data:
        raise ModelArtifactError(f"model data {model_data} is not a local path; copy it to local disk first")
    return model_data


def _extract(archive_path: str, destination: str) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise ModelArtifactError("extracting model data safely needs Python 3.11.4 or later (tarfile's data filter)")
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            archive.extractall(destination, filter="data")
    except tarfile.FilterError as exc:
        raise ModelArtifactError(f"model data {archive_path} holds an unsafe member, refused: {exc}") from None
    except tarfile.TarError as exc:
        raise ModelArtifactError(
            f"model data {archive_path} is not a readable tar archive (expected a model directory or a model.tar.gz): {exc}"
        ) from None
    except (OSError, EOFError) as exc:
        raise ModelArtifactError(f"model data {archive_path} could not be extracted: {exc}") from None


def _move_into_place(staging: str, target: str) -> None:
    """Rename `staging` to `target`; an existing `target` is set aside first, then removed."""
    try:
        os.rename(staging, target)  # also replaces an empty directory
        return
    except OSError:
        if not os.path.lexists(target):
            raise
    aside = tempfile.mkdtemp(prefix=os.path.basename(target) + _REPLACED, dir=os.path.dirname(target))
    os.rename(target, os.path.join(aside, "old"))
    os.rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def _read_marker(target: str) -> dict[str, object] | None:
    try:
        with open(target + MARKER_SUFFIX, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _write_marker(target: str, source: dict[str, object]) -> None:
    temporary = f"{target}{MARKER_SUFFIX}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(source, file)
    os.replace(temporary, target + MARKER_SUFFIX)


@contextlib.contextmanager
def _locked(lock_path: str) -> Iterator[None]:
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
