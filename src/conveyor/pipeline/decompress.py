"""Reading an input object as a stream of chunks, gunzipping it on the way when CompressionType is Gzip.

Memory stays bounded by `chunk_size` whatever the object's size or compression ratio: each
decompression step is capped (`max_length`), so a small gzip bomb cannot inflate into memory.
"""

from __future__ import annotations

import zlib
from typing import Iterator, Protocol

from conveyor.pipeline.split import DataError

COMPRESSION_TYPES = ("None", "Gzip")
DEFAULT_CHUNK_SIZE = 1 << 20

# 32 + 15: a gzip (or zlib) header is detected, with the largest window.
_GZIP_WBITS = 47


class ByteStream(Protocol):
    """What chunks are read from: a binary file, a store's reader, a counting wrapper of either."""

    def read(self, size: int = -1, /) -> bytes: ...


def iter_chunks(
    stream: ByteStream,
    *,
    compression: str = "None",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    source: str = "<input>",
) -> Iterator[bytes]:
    """Yield the (decompressed) bytes of `stream` in chunks of at most `chunk_size` bytes.

    Gzip input may hold several members (as `cat a.gz b.gz` makes); they are read one after the
    other, and zero padding after a member is ignored, as `gzip` does. Corrupt or truncated gzip
    data raises DataError naming `source` and the compressed byte offset.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    if compression == "None":
        return _plain_chunks(stream, chunk_size)
    if compression == "Gzip":
        return _gunzipped_chunks(stream, chunk_size, source)
    raise ValueError(f"unknown CompressionType {compression!r}; expected one of {', '.join(COMPRESSION_TYPES)}")


def _plain_chunks(stream: ByteStream, chunk_size: int) -> Iterator[bytes]:
    read = stream.read
    while True:
        chunk = read(chunk_size)
        if not chunk:
            return
        yield chunk if type(chunk) is bytes else bytes(chunk)


def _gunzipped_chunks(stream: ByteStream, chunk_size: int, source: str) -> Iterator[bytes]:
    read = stream.read
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    in_member = False  # whether the current member has been handed any input yet
    consumed = 0  # compressed bytes handed to the decompressor (and padding skipped)
    pending = b""  # compressed input not yet handed to the decompressor
    capped = False  # the last call filled its output cap, so zlib may hold more output
    at_end = False
    while True:
        if pending:
            data = pending
        elif capped:
            data = b""
        elif at_end:
            break
        else:
            data = read(chunk_size)
            if not data:
                at_end = True
                continue
            if type(data) is not bytes:
                data = bytes(data)
        if not in_member:
            # Between members gzip tolerates (and skips) zero padding.
            stripped = data.lstrip(b"\x00")
            consumed += len(data) - len(stripped)
            data = pending = stripped
            if not data:
                continue
            in_member = True
        try:
            out = decompressor.decompress(data, chunk_size)
        except zlib.error as exc:
            raise DataError(f"{source} is not valid gzip data (near compressed byte offset {consumed}): {exc}") from None
        capped = len(out) == chunk_size
        if decompressor.eof:
            # The member ended inside `data`: what follows is the next member, or padding.
            pending = decompressor.unused_data
            consumed += len(data) - len(pending)
            decompressor = zlib.decompressobj(_GZIP_WBITS)
            in_member = capped = False
        else:
            pending = decompressor.unconsumed_tail
            consumed += len(data) - len(pending)
        if out:
            yield out
    if in_member:
        raise DataError(
            f"{source} is truncated gzip data: it ends inside a gzip member, after {consumed} compressed bytes"
        )


__all__ = ["COMPRESSION_TYPES", "DEFAULT_CHUNK_SIZE", "iter_chunks"]
