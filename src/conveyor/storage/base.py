"""The one small interface every object store implements (local files, S3).

URIs are plain strings everywhere (`s3://b/k`, `file:///p`, `/p`); a `Storage` is picked by
scheme (`conveyor.storage.storage_for`). Reads stream; writes are atomic: an object appears
whole on `commit()` or not at all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Iterable, Iterator

TEMP_MARKER = ".conveyor-tmp-"
"""Part of every temporary object's name; never ends in `.out`, swept on resume."""


class StorageError(Exception):
    """A store failed on one object: names the URI and the store's error code."""

    def __init__(self, uri: str, code: str, message: str) -> None:
        super().__init__(f"{uri}: {code}: {message}")
        self.uri = uri
        self.code = code
        self.detail = message


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    key: str  # the path or key inside its bucket/root, as used for naming outputs
    size: int
    etag: str | None = None


class ObjectWriter(ABC):
    """A streaming, all-or-nothing writer. Use as a context manager: an exception aborts."""

    uri: str

    @abstractmethod
    def write(self, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Make the object visible under its name, whole."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written; leave nothing behind. Safe to call twice."""

    def smallest_copy(self) -> int | None:
        """The fewest bytes `copy_range` may append before more bytes follow, or None where the
        store cannot copy inside itself (the caller reads and writes the bytes)."""
        return None

    def bytes_before_copy(self) -> int:
        """How many bytes must be written before the next `copy_range` (a store whose copies
        are parts of their own needs what is pending to make a whole part)."""
        return 0

    def copy_range(self, uri: str, start: int, end: int) -> None:
        """Append bytes [start, end) of the object at `uri`, in the same store, without them
        passing through this process."""
        raise NotImplementedError(f"{type(self).__name__} cannot copy inside its store")

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Storage(ABC):
    """An object store addressed by URI."""

    @abstractmethod
    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with the prefix's key (S3Prefix semantics), sorted by key.
        Folder placeholders (keys ending in `/`) and temporaries are skipped."""

    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """The object's size and etag; `StorageError` with code `NoSuchKey` if absent."""

    @abstractmethod
    def open_read(self, uri: str, *, start: int = 0) -> BinaryIO:
        """A stream of the object's bytes from offset `start` to its end (`read(n)`), read ahead
        where the store allows; a shard's reader starts mid-object and stops where it likes."""

    def read_bytes(self, uri: str, *, most: int | None = None) -> bytes:
        """The whole object; with `most`, reading stops once it has more than `most` bytes (an
        object that grew past a limit is not read whole to learn that)."""
        parts: list[bytes] = []
        size = 0
        with self.open_read(uri) as stream:
            while chunk := stream.read(1 << 20):
                parts.append(chunk)
                size += len(chunk)
                if most is not None and size > most:
                    break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @abstractmethod
    def open_write(self, uri: str, *, kms_key_id: str | None = None) -> ObjectWriter:
        """A writer whose object appears at `uri` only on commit."""

    def make_durable(self, uris: Iterable[str]) -> None:
        """Make committed objects survive a crash of the machine, not only of the process; a
        no-op where `commit()` already does (docs/semantics.md, "Durability of outputs")."""
        return None  # a completed S3 upload is durable already

    @abstractmethod
    def delete(self, uri: str) -> None: ...

    def piece_uri(self, uri: str, index: int) -> str:
        """Where shard `index` of the object whose output is `uri` writes its piece: a temporary,
        which `sweep_temporaries(uri)` removes and listings skip."""
        return f"{uri}{TEMP_MARKER}shard-{index:05d}"

    @abstractmethod
    def sweep_temporaries(self, prefix_uri: str) -> int:
        """Remove temporaries (and pending uploads) a crashed writer left under the prefix; an
        object's own URI as the prefix removes what its writers left."""
