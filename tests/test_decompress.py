"""Reading objects as chunks: plain and gzip (multi-member, padded, corrupt, truncated, bombs)."""

from __future__ import annotations

import gzip
import io
import zlib

import pytest

from conveyor.pipeline.decompress import iter_chunks
from conveyor.pipeline.split import DataError

SOURCE = "s3://bucket/in/data.csv.gz"


class TrickleStream(io.RawIOBase):
    """A stream that returns at most `step` bytes per read, as sockets do."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001
        size = min(len(buffer), self._step, len(self._data) - self._position)
        buffer[:size] = self._data[self._position : self._position + size]
        self._position += size
        return size


def read_all(data: bytes, compression: str, chunk_size: int = 1 << 20, step: int | None = None) -> list[bytes]:
    stream = TrickleStream(data, step) if step else io.BytesIO(data)
    return list(iter_chunks(stream, compression=compression, chunk_size=chunk_size, source=SOURCE))


def test_plain_chunks_are_bounded_and_complete():
    data = bytes(range(256)) * 100
    chunks = read_all(data, "None", chunk_size=1000)
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= 1000 for c in chunks)
    assert all(type(c) is bytes for c in chunks)
    assert read_all(b"", "None") == []


@pytest.mark.parametrize("chunk_size,step", [(1 << 20, None), (7, None), (64, 5), (1, 3)])
def test_gzip_single_and_multi_member(chunk_size, step):
    first, second = b"a,1\nb,2\n" * 50, b"c,3\n" * 70
    assert b"".join(read_all(gzip.compress(first), "Gzip", chunk_size, step)) == first
    members = gzip.compress(first) + gzip.compress(second) + gzip.compress(b"")
    chunks = read_all(members, "Gzip", chunk_size, step)
    assert b"".join(chunks) == first + second
    assert all(len(c) <= chunk_size for c in chunks)


def test_gzip_zero_padding_between_and_after_members_is_ignored():
    data = gzip.compress(b"one\n") + bytes(10) + gzip.compress(b"two\n") + bytes(3)
    assert b"".join(read_all(data, "Gzip", chunk_size=4, step=2)) == b"one\ntwo\n"
    assert gzip.decompress(data) == b"one\ntwo\n"  # as the gzip module reads it


def test_gzip_bomb_is_inflated_in_bounded_chunks():
    data = gzip.compress(bytes(64 << 20), compresslevel=9)
    assert len(data) < 100_000
    total = 0
    for chunk in iter_chunks(io.BytesIO(data), compression="Gzip", chunk_size=1 << 20, source=SOURCE):
        assert len(chunk) <= 1 << 20
        total += len(chunk)
    assert total == 64 << 20


def test_corrupt_gzip_names_the_object():
    data = bytearray(gzip.compress(b"hello world\n" * 100))
    data[20] ^= 0xFF
    with pytest.raises(DataError) as caught:
        read_all(bytes(data), "Gzip")
    assert SOURCE in str(caught.value) and "gzip" in str(caught.value)


def test_corrupt_crc_in_gzip_trailer():
    data = bytearray(gzip.compress(b"hello world\n" * 100))
    data[-6] ^= 0x01
    with pytest.raises(DataError, match="not valid gzip"):
        read_all(bytes(data), "Gzip")


def test_not_gzip_at_all():
    with pytest.raises(DataError, match="not valid gzip"):
        read_all(b"a,b,c\n1,2,3\n", "Gzip")


def test_garbage_after_a_member():
    with pytest.raises(DataError, match="not valid gzip"):
        read_all(gzip.compress(b"ok\n") + b"trailing junk", "Gzip")


@pytest.mark.parametrize("cut", [5, 15, -4])
def test_truncated_gzip(cut):
    data = gzip.compress(b"0123456789\n" * 1000)
    with pytest.raises(DataError, match="truncated gzip") as caught:
        read_all(data[:cut], "Gzip", chunk_size=100)
    assert SOURCE in str(caught.value)


def test_empty_gzip_object_gives_no_chunks():
    assert read_all(b"", "Gzip") == []
    assert read_all(gzip.compress(b""), "Gzip") == []


def test_zlib_stream_is_accepted_too():
    assert b"".join(read_all(zlib.compress(b"abc"), "Gzip")) == b"abc"


def test_bad_arguments():
    with pytest.raises(ValueError, match="CompressionType"):
        iter_chunks(io.BytesIO(b""), compression="gzip")
    with pytest.raises(ValueError, match="chunk_size"):
        iter_chunks(io.BytesIO(b""), chunk_size=0)
