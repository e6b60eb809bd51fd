"""Local files as an object store: `file:///abs/path` and plain paths.

A key is an absolute path. Listing a path that names an existing folder takes that folder and
what is under it, as a user of local folders expects (`/data/csv` does not take
`/data/csv-old/`); any other path follows S3Prefix semantics over the filesystem: the prefix
`/data/inp` matches `/data/input1.csv` and everything under `/data/inp*/`. Writes go to a
temporary file beside the target and are renamed into place on commit, so a reader never
sees a partial object. A commit does not wait for the disk: `make_durable` does that once for
a group of objects (one `syncfs` per filesystem), before the job records them done.
"""

from __future__ import annotations

import ctypes
import errno
import os
from functools import cache
from typing import BinaryIO, Callable, Iterable, Iterator

from conveyor.storage.base import TEMP_MARKER, ObjectInfo, ObjectWriter, Storage, StorageError
from conveyor.storage.uri import parse_uri


def local_path(uri: str) -> str:
    """The absolute filesystem path a `file://` URI or plain path names."""
    return parse_uri(uri)[2]


def file_uri(path: str) -> str:
    return "file://" + os.path.abspath(path)


def _read_failure(uri: str, exc: OSError) -> StorageError | OSError:
    """An OS error while opening or reading `uri`, as a StorageError where it says the object
    cannot be read (any other error is a store's failure, raised as it is)."""
    if isinstance(exc, FileNotFoundError):
        return StorageError(uri, "NoSuchKey", "no such file")
    if isinstance(exc, IsADirectoryError):
        return StorageError(uri, "NoSuchKey", "is a directory, not a file")
    if isinstance(exc, PermissionError):
        return StorageError(uri, "AccessDenied", "permission denied")
    return exc


def write_failure(uri: str, exc: OSError) -> StorageError:
    """An OS error while writing `uri`, as a StorageError that names the object ("No space left
    on device" names the output, not the line of Conveyor that met it)."""
    code = "AccessDenied" if exc.errno in (errno.EACCES, errno.EPERM) else "WriteFailed"
    return StorageError(uri, code, exc.strerror or str(exc))


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
"""What `copy_file_range` answers where the filesystem or the kernel cannot copy."""


WRITE_BUFFER_BYTES = 1 << 20
"""What a writer holds before it writes to its temporary file. An output this small goes to it in
one write, at commit (many small objects)."""


class LocalFileWriter(ObjectWriter):
    """Writes to a temporary file beside the target, renamed into place on commit. The writer
    buffers itself (WRITE_BUFFER_BYTES) and writes with the system's calls rather than through
    `open()`, whose file objects cost more than a small output's whole write."""

    def __init__(self, path: str) -> None:
        """`path`: absolute."""
        self.uri = "file://" + path
        self._path = path
        directory, _, name = path.rpartition("/")
        self._temp_path = f"{directory}/.{name}{TEMP_MARKER}{os.urandom(16).hex()}"
        self._pending = bytearray()
        self._created: str | None = None  # the outermost folder this writer made, removed again on abort
        self._descriptor: int | None = self._create()  # at once: a crash mid-object leaves a temporary for the resume to sweep
        self._open = True

    def write(self, data: bytes | memoryview) -> None:
        assert self._open, "write after commit or abort"
        if len(self._pending) + len(data) <= WRITE_BUFFER_BYTES:
            self._pending += data
            return
        try:
            self._write_pending()
            self._write_all(data)  # a large write goes as it is, not through the buffer
        except OSError as exc:
            raise write_failure(self.uri, exc) from None

    def commit(self) -> None:
        assert self._open, "commit after commit or abort"
        try:
            self._write_pending()
            assert self._descriptor is not None
            os.close(self._descriptor)
            self._descriptor = None
            os.replace(self._temp_path, self._path)
        except OSError as exc:
            self.abort()
            raise write_failure(self.uri, exc) from None
        self._open = False

    def _write_pending(self) -> None:
        if self._pending:
            self._write_all(self._pending)
            self._pending.clear()

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        assert self._descriptor is not None
        with memoryview(data) as view:
            written = 0
            while written < len(view):
                written += os.write(self._descriptor, view[written:])

    def _create(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            return os.open(self._temp_path, flags, 0o666)
        except FileNotFoundError:  # a new folder: made here, and removed again if the write is aborted
            directory = os.path.dirname(self._path)
            self._created = _first_missing(directory)
            os.makedirs(directory, exist_ok=True)
            return os.open(self._temp_path, flags, 0o666)

    def smallest_copy(self) -> int | None:
        return 0 if hasattr(os, "copy_file_range") else None

    def copy_range(self, uri: str, start: int, end: int) -> None:
        """Append bytes [start, end) of a local file with `copy_file_range`: the kernel copies them
        (or shares their blocks, on a filesystem that can), without them passing through here."""
        assert self._open, "copy after commit or abort"
        try:
            self._write_pending()
            assert self._descriptor is not None
            with open(local_path(uri), "rb") as source:
                offset = start
                while offset < end:
                    try:
                        copied = os.copy_file_range(source.fileno(), self._descriptor, end - offset, offset)
                    except OSError as exc:
                        if exc.errno not in _NO_KERNEL_COPY:
                            raise
                        source.seek(offset)  # a filesystem that cannot: through this process, as any write
                        copied = os.write(self._descriptor, source.read(min(end - offset, 8 << 20)))
                    if copied == 0:
                        raise OSError(errno.EIO, f"{uri} ended at byte {offset}, before byte {end}")
                    offset += copied
        except OSError as exc:
            raise write_failure(self.uri, exc) from None

    def abort(self) -> None:
        self._open = False
        self._pending.clear()
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        try:
            os.unlink(self._temp_path)
        except FileNotFoundError:
            pass
        self._remove_created_folders()

    def _remove_created_folders(self) -> None:
        """A failed object leaves no empty output sub-folder behind (nor does it remove one that
        another object has since written into)."""
        if self._created is None:
            return
        directory = os.path.dirname(self._path)
        while True:
            try:
                os.rmdir(directory)
            except OSError:  # not empty, or already gone
                return
            if directory == self._created:
                return
            directory = os.path.dirname(directory)


class LocalStorage(Storage):
    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        prefix = local_path(prefix_uri)
        if (prefix_uri.endswith("/") or os.path.isdir(prefix)) and not prefix.endswith("/"):
            prefix += "/"
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        """In key order as the walk finds them: a job can start on the first objects while the
        rest are listed (docs/semantics.md, "Listing")."""
        if os.path.isfile(prefix):  # the prefix names a file: it comes before every other key it is a prefix of
            yield self._info(prefix)
        directory = prefix if prefix.endswith("/") else os.path.dirname(prefix)
        if os.path.isdir(directory):
            for entry in _walk_files(directory, under=prefix):
                if entry.path != prefix:
                    yield self._info(entry.path, entry)

    def stat(self, uri: str) -> ObjectInfo:
        path = local_path(uri)
        if not os.path.isfile(path):
            raise StorageError(uri, "NoSuchKey", "no such file")
        return self._info(path)

    def open_read(self, uri: str, *, start: int = 0) -> BinaryIO:
        path = local_path(uri)
        try:
            stream = open(path, "rb", buffering=0)
            if start:
                stream.seek(start)
            return stream
        except OSError as exc:
            raise _read_failure(uri, exc) from None

    def read_bytes(self, uri: str, *, most: int | None = None) -> bytes:
        """With the system's calls, not a file object: for a small object, one open, one `fstat`,
        two reads and one close, and little else (many small objects)."""
        try:
            descriptor = os.open(local_path(uri), os.O_RDONLY | os.O_CLOEXEC)
            try:
                wanted = os.fstat(descriptor).st_size + 1  # one byte more: a read that fills it has not met the end
                if most is not None:
                    wanted = min(wanted, most + 1)
                parts: list[bytes] = []
                size = 0
                while chunk := os.read(descriptor, wanted):
                    parts.append(chunk)
                    size += len(chunk)
                    if most is not None and size > most:
                        break
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise _read_failure(uri, exc) from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def open_write(self, uri: str, *, kms_key_id: str | None = None) -> ObjectWriter:
        try:
            return LocalFileWriter(local_path(uri))
        except OSError as exc:
            raise write_failure(uri, exc) from None

    def make_durable(self, uris: Iterable[str]) -> None:
        """One `syncfs` per filesystem the objects are on: their data and their renames reach
        the disk together, for a fraction of an `fsync` per object (docs/semantics.md,
        "Durability of outputs")."""
        synced: set[int] = set()
        folders = {uri.rpartition("/")[0]: uri for uri in uris}  # a folder's URI is a prefix of its objects': no path work per object
        for uri in folders.values():
            directory = os.path.dirname(local_path(uri))
            try:
                device = os.stat(directory).st_dev
                if device not in synced:
                    _sync_filesystem(directory)
                    synced.add(device)
            except OSError as exc:
                raise write_failure(uri, exc) from None

    def piece_uri(self, uri: str, index: int) -> str:
        """A hidden file beside the output, named as the output's own temporaries are."""
        directory, name = os.path.split(local_path(uri))
        return file_uri(os.path.join(directory, f".{name}{TEMP_MARKER}shard-{index:05d}"))

    def delete(self, uri: str) -> None:
        try:
            os.unlink(local_path(uri))
        except FileNotFoundError:
            pass

    def sweep_temporaries(self, prefix_uri: str) -> int:
        """Under a folder, every temporary; for one object's URI, that object's temporaries."""
        root = local_path(prefix_uri)
        if not os.path.isdir(root):
            directory, name = os.path.split(root)
            if not os.path.isdir(directory):
                return 0
            own = [entry.path for entry in os.scandir(directory) if entry.name.startswith(f".{name}{TEMP_MARKER}")]
            for path in own:
                os.unlink(path)
            return len(own)
        removed = 0
        for entry in _walk_files(root, include_temporaries=True):
            if TEMP_MARKER in entry.name:
                os.unlink(entry.path)
                removed += 1
        return removed

    @staticmethod
    def _info(path: str, entry: os.DirEntry[str] | None = None) -> ObjectInfo:
        """The object at the absolute `path` (found as `entry` by a listing): its size and
        version. A dangling symbolic link or an unreadable entry is a StorageError naming the
        path and the cause, not an OSError from the middle of a listing."""
        try:
            stat = entry.stat() if entry is not None else os.stat(path)
        except FileNotFoundError:
            target = os.readlink(path) if os.path.islink(path) else None
            cause = f"a symbolic link to {target}, which does not exist" if target is not None else "no such file"
            raise StorageError(file_uri(path), "NoSuchKey", cause) from None
        except OSError as exc:
            raise StorageError(file_uri(path), "AccessDenied" if exc.errno in (errno.EACCES, errno.EPERM) else "InvalidObjectState", exc.strerror or str(exc)) from None
        return ObjectInfo(
            uri="file://" + path, key=path, size=stat.st_size, etag=f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
        )


@cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2), where there is one (Linux); None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs  # this process's libc
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


def _sync_filesystem(directory: str) -> None:
    """Flush everything written to the filesystem that holds `directory`."""
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(descriptor) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), directory)
    finally:
        os.close(descriptor)


def _first_missing(directory: str) -> str | None:
    """The outermost folder of `directory` that does not exist yet, or None."""
    missing = None
    directory = os.path.abspath(directory)
    while not os.path.exists(directory):
        missing = directory
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing


def _walk_files(root: str, *, under: str = "", include_temporaries: bool = False) -> Iterator[os.DirEntry[str]]:
    """The files under the folder `root` whose paths start with `under`, in the order of their
    paths (a listing's key order, found as it goes: each folder is read when the walk reaches
    it), as `os.walk` finds them (a symbolic link to a folder is not followed; an unreadable
    folder is skipped), without a `stat` of its own for each."""
    folders = [_entries_in_order(root, under, include_temporaries)]
    while folders:
        found = next(folders[-1], None)
        if found is None:
            folders.pop()
        elif found[1]:
            folders.append(_entries_in_order(found[0].path, under, include_temporaries))
        else:
            yield found[0]


def _entries_in_order(folder: str, under: str, include_temporaries: bool) -> Iterator[tuple[os.DirEntry[str], bool]]:
    """A folder's entries as (entry, is a folder), in the order of the paths under them: a
    folder sorts as its name and a `/`, so `a-b` comes before `a/x`, and `a/x` before `a0`."""
    try:
        with os.scandir(folder) as scanned:
            entries = list(scanned)
    except OSError:
        return iter(())
    kept: list[tuple[str, os.DirEntry[str], bool]] = []
    for entry in entries:
        if not entry.path.startswith(under) and not under.startswith(entry.path + "/"):
            continue
        if not include_temporaries and TEMP_MARKER in entry.name:
            continue
        try:
            is_folder = entry.is_dir()
        except OSError:
            is_folder = False
        if is_folder and entry.is_symlink():
            continue
        kept.append((entry.name + "/" if is_folder else entry.name, entry, is_folder))
    kept.sort(key=lambda found: found[0])
    return ((entry, is_folder) for _, entry, is_folder in kept)
