"""Object storage chosen by URI scheme: `s3://` → S3, `file://` or a plain path → local files.

A back end is a factory registered under its scheme; `storage_for` picks one. The S3 back end
is built once per `S3Config` (per process), so its connection pool is shared by every reader and
writer that uses the same settings.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Callable

from conveyor.storage.base import TEMP_MARKER, ObjectInfo, ObjectWriter, Storage, StorageError
from conveyor.storage.uri import parse_uri

if TYPE_CHECKING:
    from conveyor.storage.s3 import S3Config

__all__ = [
    "TEMP_MARKER",
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "StorageError",
    "parse_uri",
    "register_storage",
    "storage_for",
]


@functools.cache
def _local_storage() -> Storage:
    from conveyor.storage.local import LocalStorage

    return LocalStorage()


def _local(**_options: Any) -> Storage:
    return _local_storage()


def _s3(*, s3_config: S3Config | None = None, **_options: Any) -> Storage:
    from conveyor.storage.s3 import S3Config

    return _s3_storage(s3_config or S3Config(), os.getpid())


@functools.lru_cache(maxsize=32)
def _s3_storage(config: S3Config, pid: int) -> Storage:
    """One S3Storage per config and process (a forked child must not share the parent's sockets)."""
    from conveyor.storage.s3 import S3Storage

    return S3Storage(config)


_FACTORIES: dict[str, Callable[..., Storage]] = {"file": _local, "s3": _s3}


def register_storage(scheme: str, factory: Callable[..., Storage]) -> Callable[..., Storage] | None:
    """Plug in a back end: `factory(**options)` gets `storage_for`'s keyword options. Returns
    the factory it replaces, if any, for a caller that puts it back."""
    replaced = _FACTORIES.get(scheme.lower())
    _FACTORIES[scheme.lower()] = factory
    return replaced


def storage_for(uri: str, *, s3_config: S3Config | None = None) -> Storage:
    """The store that serves `uri`; `StorageError("InvalidURI")` for an unknown scheme."""
    scheme = "file" if uri.startswith("file://") else parse_uri(uri)[0]  # the first test: once per object read and written
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(_FACTORIES))
        raise StorageError(uri, "InvalidURI", f"no storage for the scheme {scheme}:// (known: {known}, or a plain path)")
    return factory(s3_config=s3_config)
