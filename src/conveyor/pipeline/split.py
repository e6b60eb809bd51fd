"""Splitting an object's bytes into records: SplitType None, Line, RecordIO (dmlc) and TFRecord.

Each record is kept in two forms, because SageMaker sends binary records framed under
MultiRecord and bare under SingleRecord (docs/semantics.md, decision 5). The splitters read a
stream of chunks and hold at most one record (plus one chunk) at a time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import google_crc32c

SPLIT_TYPES = ("None", "Line", "RecordIO", "TFRecord")

RECORDIO_MAGIC = 0xCED7230A
_RECORDIO_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_RECORDIO_HEADER = struct.Struct("<II")
_RECORDIO_LENGTH_MASK = (1 << 29) - 1

_TFRECORD_HEADER = struct.Struct("<QI")  # length, masked CRC32C of the 8 length bytes
_TFRECORD_FOOTER = struct.Struct("<I")  # masked CRC32C of the data
_TFRECORD_MASK_DELTA = 0xA282EAD8


class DataError(Exception):
    """Bad input data in one object; the message names the object, the record and the byte offset."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record: `framed` is what a MultiRecord payload carries, `bare` what a SingleRecord one does.

    Line: `framed` is the line with its line ending as in the input (a final line without one
    gets `\\n`), `bare` the line without `\\n` or `\\r\\n`. RecordIO and TFRecord: `framed` is the
    complete frame(s) as in the input, `bare` the record's data. None: both are the whole object.
    `offset` is where the record starts in the (decompressed) object, where the splitter was
    asked for it (`records_with_offsets`), else -1.
    """

    framed: bytes
    bare: bytes
    offset: int = -1


@dataclass(frozen=True, slots=True)
class SizeGuard:
    """Stops a splitter as soon as a record is known to be larger than `limit` bytes.

    Without it a 5 GB line would be buffered whole before anyone could refuse it. `framed` says
    which form is measured; `error(record_number, size, exact)` builds the exception raised,
    with `exact` False when `size` is only a lower bound (the record was not read to its end).
    Records whose size is only known once complete are left to the caller to check.
    """

    limit: int
    framed: bool
    error: Callable[[int, int, bool], Exception]


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant (32-bit arithmetic)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _TFRECORD_MASK_DELTA) & 0xFFFFFFFF


def iter_records(
    chunks: Iterable[bytes], split_type: str, *, source: str, guard: SizeGuard | None = None
) -> Iterator[Record]:
    """Yield the records of one object, read from `chunks`, in order.

    Line: a record is the bytes up to and including a `\\n`; empty lines are skipped. RecordIO and
    TFRecord frames are checked (magic, CRCs, truncation) and raise DataError with the record
    number and byte offset. None: the whole object is one record (no record for 0 bytes).
    """
    if split_type == "Line":
        return _line_records(chunks, guard)
    if split_type == "TFRecord":
        return _tfrecord_records(chunks, source, guard)
    if split_type == "RecordIO":
        return _recordio_records(chunks, source, guard)
    if split_type == "None":
        return _whole_object(chunks, guard)
    raise ValueError(f"unknown SplitType {split_type!r}; expected one of {', '.join(SPLIT_TYPES)}")


def records_with_offsets(chunks: Iterable[bytes], split_type: str, *, source: str) -> Iterator[Record]:
    """`iter_records` with each record's byte offset in the object: for reports that name where
    a record is (the bad-records manifest). Slower than `iter_records` for Line."""
    if split_type == "Line":
        return _line_records_at(chunks)
    return _framed_at(iter_records(chunks, split_type, source=source))


def _framed_at(records: Iterator[Record]) -> Iterator[Record]:
    """Frames lie back to back in the object, so each starts where the last one ended."""
    offset = 0
    for record in records:
        yield Record(record.framed, record.bare, offset)
        offset += len(record.framed)


def _line_records_at(chunks: Iterable[bytes]) -> Iterator[Record]:
    """The records of `_line_records` (empty lines skipped, `\r\n` kept framed), with offsets."""
    buffer, base = b"", 0  # the unfinished line, and its offset in the object
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            line = buffer[start:end]
            if line and line != b"\r":
                yield Record(line + b"\n", line[:-1] if line[-1] == 13 else line, base + start)
            start = end + 1
        buffer, base = buffer[start:], base + start
    if buffer and buffer != b"\r":
        yield Record(buffer + b"\n", buffer[:-1] if buffer[-1] == 13 else buffer, base)


def _whole_object(chunks: Iterable[bytes], guard: SizeGuard | None) -> Iterator[Record]:
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if chunk:
            parts.append(chunk)
            size += len(chunk)
            if guard and size > guard.limit:
                raise guard.error(1, size, False)
    if size:
        whole = b"".join(parts)
        yield Record(whole, whole)


def _line_records(chunks: Iterable[bytes], guard: SizeGuard | None) -> Iterator[Record]:
    # `split` cuts a chunk's lines in C (the bare forms, but for a `\r`); one concatenation per
    # line makes the framed form. Only a line that crosses chunks is joined.
    overshoot = 0
    if guard:
        # An unfinished line of n bytes is at least n + 1 bytes framed, n - 1 bare (a `\r` may end it).
        overshoot = guard.limit if guard.framed else guard.limit + 2
    carry: list[bytes] = []  # the unfinished line
    carry_size = 0
    count = 0
    for chunk in chunks:
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if carry:
                carry.append(lines[0])
                lines[0] = b"".join(carry)
                carry.clear()
            for line in lines:
                if line:
                    if line[-1] == 13:  # \r
                        if len(line) == 1:
                            continue
                        yield Record(line + b"\n", line[:-1])
                    else:
                        yield Record(line + b"\n", line)
                    count += 1
            carry_size = 0
        if tail:
            carry.append(tail)
            carry_size += len(tail)
            if guard and carry_size >= overshoot and carry_size > 1:
                lower_bound = carry_size + 1 if guard.framed else carry_size - 1
                raise guard.error(count + 1, lower_bound, False)
    if carry:
        line = b"".join(carry)
        if line != b"\r":
            yield Record(line + b"\n", line[:-1] if line[-1] == 13 else line)


class _Window:
    """The unread bytes of a chunk stream, refilled so that a whole frame is contiguous in `data`.

    Chunks are joined only when a frame crosses their boundary, and only as many as that frame
    needs, so every byte is copied a bounded number of times however large the record.
    """

    __slots__ = ("_chunks", "data", "pos", "base")

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.data = b""
        self.pos = 0  # next unread byte in data
        self.base = 0  # offset in the object of data[0]

    def fill(self, size: int) -> bool:
        """Make `size` bytes from `pos` contiguous; False if the stream ends before (all left is in data)."""
        have = len(self.data) - self.pos
        if have >= size:
            return True
        parts: list[bytes | memoryview] = [memoryview(self.data)[self.pos :]] if have else []
        for chunk in self._chunks:
            if chunk:
                parts.append(chunk)
                have += len(chunk)
                if have >= size:
                    break
        self.base += self.pos
        self.data = b"".join(parts)
        self.pos = 0
        return have >= size

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _tfrecord_records(chunks: Iterable[bytes], source: str, guard: SizeGuard | None) -> Iterator[Record]:
    window = _Window(chunks)
    header_size = _TFRECORD_HEADER.size
    number = 0
    while window.fill(header_size) or window.left:
        number += 1
        offset = window.offset
        if window.left < header_size:
            raise DataError(
                f"TFRecord record {number} at byte offset {offset} of {source} is truncated: "
                f"the stream ends {window.left} bytes into its {header_size}-byte header"
            )
        data, pos = window.data, window.pos
        length, length_crc = _TFRECORD_HEADER.unpack_from(data, pos)
        computed = masked_crc32c(data[pos : pos + 8])
        if computed != length_crc:
            raise DataError(
                f"TFRecord record {number} at byte offset {offset} of {source} is corrupt: the CRC of its "
                f"length field does not match (stored 0x{length_crc:08X}, computed 0x{computed:08X})"
            )
        frame_size = length + 16
        if guard and (frame_size if guard.framed else length) > guard.limit:
            raise guard.error(number, frame_size if guard.framed else length, True)
        if not window.fill(frame_size):
            raise DataError(
                f"TFRecord record {number} at byte offset {offset} of {source} is truncated: its frame is "
                f"{frame_size} bytes ({length} bytes of data) but the stream ends after {window.left}"
            )
        data, pos = window.data, window.pos
        bare = data[pos + 12 : pos + 12 + length]
        (data_crc,) = _TFRECORD_FOOTER.unpack_from(data, pos + 12 + length)
        computed = masked_crc32c(bare)
        if computed != data_crc:
            raise DataError(
                f"TFRecord record {number} at byte offset {offset} of {source} is corrupt: the CRC of its "
                f"{length} bytes of data does not match (stored 0x{data_crc:08X}, computed 0x{computed:08X})"
            )
        window.pos = pos + frame_size
        yield Record(data[pos : pos + frame_size], bare)


def _recordio_records(chunks: Iterable[bytes], source: str, guard: SizeGuard | None) -> Iterator[Record]:
    window = _Window(chunks)
    number = 0
    framed_parts: list[bytes] = []  # the frames of a multipart record read so far
    bare_parts: list[bytes] = []
    framed_size = bare_size = 0
    record_offset = 0
    while window.fill(8) or window.left:
        offset = window.offset
        if not framed_parts:
            number += 1
            record_offset = offset
        if window.left < 8:
            raise DataError(
                f"RecordIO record {number} at byte offset {offset} of {source} is truncated: "
                f"the stream ends {window.left} bytes into an 8-byte frame header"
            )
        data, pos = window.data, window.pos
        magic, lrecord = _RECORDIO_HEADER.unpack_from(data, pos)
        if magic != RECORDIO_MAGIC:
            raise DataError(
                f"RecordIO record {number} at byte offset {offset} of {source} is corrupt: the frame header "
                f"starts with 0x{magic:08X}, not the RecordIO magic number 0x{RECORDIO_MAGIC:08X}"
            )
        cflag = lrecord >> 29
        length = lrecord & _RECORDIO_LENGTH_MASK
        if cflag > 3 or (cflag in (2, 3)) != bool(framed_parts):
            raise DataError(
                f"RecordIO record {number} at byte offset {offset} of {source} is corrupt: "
                + _cflag_problem(cflag, record_offset if framed_parts else None)
            )
        frame_size = 8 + ((length + 3) & ~3)
        if guard:
            size = framed_size + frame_size if guard.framed else bare_size + length
            if size > guard.limit:
                raise guard.error(number, size, cflag in (0, 3))
        if not window.fill(frame_size):
            raise DataError(
                f"RecordIO record {number} at byte offset {offset} of {source} is truncated: its frame is "
                f"{frame_size} bytes but the stream ends after {window.left}"
            )
        data, pos = window.data, window.pos
        window.pos = pos + frame_size
        if cflag == 0:
            yield Record(data[pos : pos + frame_size], data[pos + 8 : pos + 8 + length])
            continue
        framed_parts.append(data[pos : pos + frame_size])
        bare_parts.append(data[pos + 8 : pos + 8 + length])
        framed_size += frame_size
        bare_size += length + 4  # the magic number re-inserted after this part
        if cflag == 3:
            yield Record(b"".join(framed_parts), _RECORDIO_MAGIC_BYTES.join(bare_parts))
            framed_parts.clear()
            bare_parts.clear()
            framed_size = bare_size = 0
    if framed_parts:
        raise DataError(
            f"RecordIO record {number} at byte offset {record_offset} of {source} is truncated: the stream "
            f"ends inside a multipart record, after {len(framed_parts)} of its parts and before the last (cflag 3)"
        )


def _cflag_problem(cflag: int, open_record_offset: int | None) -> str:
    if cflag > 3:
        return f"its frame header has continuation flag {cflag}; RecordIO defines 0 to 3"
    if open_record_offset is None:
        return f"a continuation part (cflag {cflag}) comes without the first part (cflag 1) of its record"
    return (
        f"a new record (cflag {cflag}) starts before the multipart record begun at byte offset "
        f"{open_record_offset} has its last part (cflag 3)"
    )


__all__ = ["DataError", "RECORDIO_MAGIC", "Record", "SPLIT_TYPES", "SizeGuard", "iter_records", "masked_crc32c", "records_with_offsets"]
