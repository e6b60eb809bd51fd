"""Byte-range shards of one object: which bytes a shard's records occupy, found by its own reader.

A shard is a nominal range [start, end) of an object. It holds the records whose first byte lies
in that range (Hadoop's rule), so every record is in exactly one shard and the shards' records,
in shard order, are the object's records in order. Planning cuts nothing: each shard's reader
starts at `read_start`, skips to the first record boundary at or after `start`, and reads past
`end` to the end of the record that straddles it. What it yields is a run of whole records that
the ordinary splitter reads unchanged. A shard in which no record starts yields nothing.

Boundaries (docs/semantics.md, "Shards"): Line, the byte after a `\\n`; TFRecord, a header whose
length CRC checks and whose record is followed by another such header (or the object's end);
RecordIO, the magic number at a 4-byte aligned offset with a record-starting continuation flag
and a plausible length, followed by another frame header (or the end).
"""

from __future__ import annotations

import re
import struct
from typing import Iterable, Iterator

from conveyor.pipeline.split import RECORDIO_MAGIC, masked_crc32c

SHARDABLE_SPLIT_TYPES = ("Line", "RecordIO", "TFRecord")

_TFRECORD_HEADER = struct.Struct("<QI")
_RECORDIO_HEADER = struct.Struct("<II")
_RECORDIO_LENGTH_MASK = (1 << 29) - 1


def can_shard(split_type: str, compression: str) -> bool:
    """Only records that can be found from any byte position are cut: not Gzip (a stream is read
    from its start), not SplitType None (the object is one record)."""
    return split_type in SHARDABLE_SPLIT_TYPES and compression == "None"


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """The nominal ranges of an object of `size` bytes; one range when it is not larger than a shard."""
    if shard_size <= 0 or size <= shard_size:
        return [(0, size)]
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


def read_start(split_type: str, start: int) -> int:
    """Where a shard's reader starts: one byte early for Line, to see whether a line ends just
    before the shard (then a record starts exactly at `start`)."""
    return start - 1 if split_type == "Line" and start > 0 else start


class ShardReader:
    """The bytes of the records that start in [start, end), from chunks that begin at `read_start`.

    `begin` is the object offset of the first byte yielded (None while unknown, and when the
    shard holds no record): a record's offset in the shard's stream plus `begin` is its offset
    in the object."""

    def __init__(self, chunks: Iterable[bytes], split_type: str, *, start: int, end: int, size: int) -> None:
        self._chunks = chunks
        self.split_type = split_type
        self.start, self.end, self.size = start, end, size
        self.begin: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self.split_type == "Line":
            return self._lines()
        return self._frames()

    def _lines(self) -> Iterator[bytes]:
        chunks = iter(self._chunks)
        position = read_start("Line", self.start)  # the object offset of the next chunk's first byte
        rest = b""
        if self.start > 0:
            for chunk in chunks:
                index = chunk.find(b"\n")
                if index != -1:
                    rest, position = chunk[index + 1 :], position + index + 1
                    break
                position += len(chunk)
            else:
                return  # no line ends after the shard's start: its bytes belong to an earlier record
        if position >= self.end:
            return
        self.begin = position
        last = self.end - 1  # the record holding this byte is the shard's last
        for chunk in _prepend(rest, chunks):
            index = chunk.find(b"\n", max(0, last - position))
            if index != -1:
                yield chunk[: index + 1]
                return
            yield chunk
            position += len(chunk)

    def _frames(self) -> Iterator[bytes]:
        """Frame by frame from the first boundary, each handed on as soon as it is read, until a
        record starts at or after `end`. A frame that cannot be read hands on the rest of the
        object, so that the splitter meets it and names the fault."""
        window = _Window(self._chunks, self.start)
        position = self._first_boundary(window) if self.start > 0 else 0
        if position is None or position >= self.end or position >= self.size:
            return
        self.begin = position
        window.drop(position)
        tfrecord = self.split_type == "TFRecord"
        open_record = False  # a RecordIO record whose last part (cflag 3) is still to come
        while position < self.size:
            header = window.get(position, 12 if tfrecord else 8)
            after = None
            if header is not None:
                after = _tfrecord_next(header, position, self.size) if tfrecord else _recordio_next(header, position, self.size, starts=not open_record)
            if after is None:
                yield from window.emit(self.size)
                return
            if position >= self.end and not open_record:
                return
            position, cflag = after
            open_record = not tfrecord and cflag in (1, 2)
            yield from window.emit(position)

    def _first_boundary(self, window: "_Window") -> int | None:
        tfrecord = self.split_type == "TFRecord"
        position = self.start if tfrecord else (self.start + 3) & ~3
        step = 1 if tfrecord else 4
        while position < self.size:
            window.drop(position)
            header = window.get(position, 12 if tfrecord else 8)
            if header is None:
                return None
            after = _tfrecord_next(header, position, self.size) if tfrecord else _recordio_next(header, position, self.size, starts=True)
            if after is not None and self._confirmed(window, position, after):
                return position
            position += step
        return None

    def _confirmed(self, window: "_Window", position: int, after: tuple[int, int]) -> bool:
        """The re-check: reading on from a candidate reaches another valid header, or the end."""
        following, cflag = after
        if following == self.size:
            return self.split_type == "TFRecord" or cflag == 0
        if self.split_type == "TFRecord":
            header = window.get(following, 12)
            return header is not None and _tfrecord_next(header, following, self.size) is not None
        header = window.get(following, 8)
        if header is None:
            return False
        continues = cflag == 1
        found = _recordio_next(header, following, self.size, starts=not continues)
        return found is not None


def _tfrecord_next(header: bytes, position: int, size: int) -> tuple[int, int] | None:
    """Where the next frame starts if `header` is a valid TFRecord header at `position`."""
    length, length_crc = _TFRECORD_HEADER.unpack(header)
    following = position + 16 + length
    if following > size or masked_crc32c(header[:8]) != length_crc:
        return None
    return following, 0


def _recordio_next(header: bytes, position: int, size: int, *, starts: bool) -> tuple[int, int] | None:
    """Where the next frame starts, and this frame's continuation flag, if `header` is a valid
    RecordIO frame header at `position` that starts a record (`starts`) or continues one."""
    magic, lrecord = _RECORDIO_HEADER.unpack(header)
    cflag = lrecord >> 29
    following = position + 8 + (((lrecord & _RECORDIO_LENGTH_MASK) + 3) & ~3)
    if magic != RECORDIO_MAGIC or following > size or cflag > 3 or (cflag in (0, 1)) != starts:
        return None
    return following, cflag


class _Window:
    """The bytes of a chunk stream from `base` on, kept until dropped or emitted."""

    def __init__(self, chunks: Iterable[bytes], base: int) -> None:
        self._chunks = iter(chunks)
        self._data = bytearray()
        self._base = base

    def _fill(self, upto: int) -> bool:
        while self._base + len(self._data) < upto:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._data += chunk
        return True

    def get(self, position: int, count: int) -> bytes | None:
        """Bytes [position, position + count), or None where the stream ends before."""
        if not self._fill(position + count):
            return None
        index = position - self._base
        return bytes(self._data[index : index + count])

    def drop(self, position: int) -> None:
        """Forget the bytes before `position` (read first, if they are not yet)."""
        if position > self._base:
            self._fill(position)
            del self._data[: position - self._base]
            self._base = position

    def emit(self, stop: int) -> Iterator[bytes]:
        """The bytes from the window's start up to `stop` (or the stream's end), then dropped."""
        while self._base < stop:
            if not self._data:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return
                self._data += chunk
            count = min(len(self._data), stop - self._base)
            yield bytes(self._data[:count])
            del self._data[:count]
            self._base += count


def _prepend(first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from chunks


def shift_offsets(message: str, source: str, by: int) -> str:
    """A shard's message with its byte offsets (`at byte offset N of <source>`) made the object's."""
    if not by:
        return message
    pattern = re.compile(r"at byte offset (\d+) of " + re.escape(source))
    return pattern.sub(lambda match: f"at byte offset {int(match.group(1)) + by} of {source}", message)


def shift_record_numbers(message: str, source: str, by: int) -> str:
    """A shard's message with its record numbers (`record N[ at byte offset M] of <source>`, `the
    K records N to M`) counted from the object's first record instead of the shard's."""
    if not by:
        return message
    single = re.compile(r"\brecord (\d+)((?: at byte offset \d+)? of " + re.escape(source) + ")")
    message = single.sub(lambda match: f"record {int(match.group(1)) + by}{match.group(2)}", message)
    ranged = re.compile(r"\brecords (\d+) to (\d+)\b")
    return ranged.sub(lambda match: f"records {int(match.group(1)) + by} to {int(match.group(2)) + by}", message)


__all__ = ["SHARDABLE_SPLIT_TYPES", "ShardReader", "can_shard", "read_start", "shard_ranges", "shift_offsets", "shift_record_numbers"]
