"""A job's output objects as the console shows them: names relative to S3OutputPath, sizes,
and a preview of the first lines of one object (read from the store, never trusted as HTML)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from conveyor.sagemaker.locations import normalize_location
from conveyor.settings import Settings
from conveyor.storage import Storage, StorageError, parse_uri

MAX_LISTED = 200
PREVIEW_LINES = 20
PREVIEW_BYTES = 64 * 1024


@dataclass(frozen=True)
class OutputObject:
    name: str  # relative to the job's S3OutputPath
    size: int


@dataclass(frozen=True)
class OutputListing:
    objects: list[OutputObject]
    truncated: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Preview:
    name: str
    text: str
    lines: int
    truncated: bool
    binary: bool

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "text": self.text, "lines": self.lines, "truncated": self.truncated, "binary": self.binary}


class OutputError(Exception):
    """The object is not one of the job's outputs, or cannot be read."""


def _prefix(output_path: str) -> str:
    location = normalize_location(output_path)
    return location if location.endswith("/") else location + "/"


def _storage(uri: str, settings: Settings) -> Storage:
    return settings.storage_for(uri)


def list_outputs(output_path: str, settings: Settings, limit: int = MAX_LISTED) -> OutputListing:
    prefix = _prefix(output_path)
    root = parse_uri(prefix)[2]
    objects: list[OutputObject] = []
    try:
        for info in _storage(prefix, settings).list(prefix):
            if len(objects) == limit:
                return OutputListing(objects, truncated=True)
            objects.append(OutputObject(parse_uri(info.uri)[2][len(root):].lstrip("/"), info.size))
    except (StorageError, ImportError) as exc:
        return OutputListing(objects, error=str(exc))
    return OutputListing(objects)


def preview(output_path: str, name: str, settings: Settings, written: Collection[str], lines: int = PREVIEW_LINES) -> Preview:
    """The first `lines` lines (at most PREVIEW_BYTES) of one output object that the job wrote
    (`written`: their URIs); any other object under the output path, which may hold files the
    job never wrote, is refused."""
    prefix = _prefix(output_path)
    uri = prefix + name.lstrip("/")
    if not name or uri not in written or any(part in ("..", ".") for part in name.split("/")):
        raise OutputError(f"{name!r} is not an output that this job wrote")
    try:
        with _storage(uri, settings).open_read(uri) as stream:
            data = stream.read(PREVIEW_BYTES + 1)
    except (StorageError, ImportError) as exc:
        raise OutputError(str(exc)) from None
    truncated = len(data) > PREVIEW_BYTES
    data = data[:PREVIEW_BYTES]
    binary = b"\x00" in data
    if binary:
        text = " ".join(f"{byte:02x}" for byte in data[:512])
        return Preview(name, text, 0, truncated or len(data) > 512, True)
    kept = data.splitlines(keepends=True)
    if len(kept) > lines:
        kept, truncated = kept[:lines], True
    return Preview(name, b"".join(kept).decode("utf-8", "replace"), len(kept), truncated, False)
