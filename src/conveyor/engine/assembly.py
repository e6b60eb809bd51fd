"""One sharded object's output assembled from its shards' pieces, whole or not at all.

Each shard writes its piece as a temporary beside the output (`Storage.piece_uri`). When the
last shard is done, the pieces are appended in shard order through one `open_write` of the
output, each copied inside its store where the store can (`ObjectWriter.copy_range`), so the
pieces' bytes do not pass through this process: for local files one temporary, appended to by
the kernel (`copy_file_range`) and renamed into place; for S3 one multipart upload whose parts S3
copies from the pieces (UploadPartCopy), except where S3's 5 MiB minimum part makes a small
piece, or the head of the next one, travel here to join what is pending. A failure or a Stop aborts the writer (the temporary
removed, the upload aborted): nothing partial is left, and the pieces are removed by the
caller's sweep (docs/semantics.md, "Shards").
"""

from __future__ import annotations

import threading
from typing import Callable

from conveyor.pipeline.work_item import WorkItem
from conveyor.storage.base import ObjectWriter, Storage, StorageError

COPY_CHUNK = 8 << 20


class AssemblyStopped(Exception):
    """The job was stopped while the object was being assembled; nothing of it was written."""


def assemble(item: WorkItem, storage_for: Callable[[str], Storage], stop: threading.Event, *, kms_key_id: str | None = None) -> int:
    """Concatenate the pieces of `item`'s object into its output, make it durable, remove the
    pieces; returns the output's size. Raises StorageError or AssemblyStopped, leaving no output."""
    storage = storage_for(item.output_uri)
    pieces = [storage.piece_uri(item.output_uri, shard) for shard in range(item.shards)]
    written = 0
    with storage.open_write(item.output_uri, kms_key_id=kms_key_id) as writer:
        for number, piece in enumerate(pieces):
            smallest = writer.smallest_copy()
            size = storage.stat(piece).size if smallest is not None else 0
            head = writer.bytes_before_copy() if smallest is not None else 0
            last = number == len(pieces) - 1
            if smallest is not None and size - head > 0 and (size - head >= smallest or last):
                written += _stream(storage, piece, writer, stop, until=head)
                writer.copy_range(piece, head, size)
                written += size - head
            else:
                written += _stream(storage, piece, writer, stop)
            if stop.is_set():
                raise AssemblyStopped(item.output_uri)
    storage.make_durable([item.output_uri])
    for piece in pieces:
        try:
            storage.delete(piece)
        except StorageError:
            pass  # a temporary: the next sweep of the output's location removes it
    return written


def _stream(storage: Storage, piece: str, writer: ObjectWriter, stop: threading.Event, *, until: int | None = None) -> int:
    """Read the piece (its first `until` bytes) and write it; the number of bytes."""
    written = 0
    if until == 0:
        return 0
    with storage.open_read(piece) as stream:
        while chunk := stream.read(COPY_CHUNK if until is None else min(COPY_CHUNK, until - written)):
            if stop.is_set():
                raise AssemblyStopped(writer.uri)
            writer.write(chunk)
            written += len(chunk)
            if until is not None and written >= until:
                break
    return written


__all__ = ["AssemblyStopped", "assemble"]
