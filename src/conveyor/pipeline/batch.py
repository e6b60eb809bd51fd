"""Packing records into payloads: SingleRecord or MultiRecord, each within MaxPayloadInMB.

Line + MultiRecord (CSV, JSON Lines) is the common case and the hot one: it never makes a Python
object per line. Whole lines are cut out of the chunks with `rfind`, counted in bulk, and each
payload is copied once; empty lines are dropped from a chunk in one pass, only when it has some.
With a limit, memory stays bounded by it plus one chunk, never by the object.
"""

from __future__ import annotations

import re
import sys
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from conveyor.pipeline.split import SPLIT_TYPES, DataError, Record, SizeGuard, iter_records

if TYPE_CHECKING:
    import numpy as np

BATCH_STRATEGIES = ("SingleRecord", "MultiRecord")

# Sizes below which bytes methods beat numpy's per-call overhead (numpy is imported only past
# them, so that a job of small objects does not pay for its import).
_SMALL = 1 << 14


@dataclass(frozen=True, slots=True)
class Payload:
    """One request body and which records of the object it carries."""

    body: bytes
    record_count: int
    first_record: int  # 0-based index in the object of the payload's first record


class RecordTooLarge(DataError):
    """A record that cannot fit in one payload under MaxPayloadInMB."""

    def __init__(self, *, source: str, record_number: int, size: int, limit: int, exact: bool = True, whole_object: bool = False) -> None:
        self.source = source
        self.record_number = record_number
        self.size = size
        self.limit = limit
        self.exact = exact
        self.whole_object = whole_object
        size_text = f"{size} bytes" if exact else f"at least {size} bytes"
        mebibytes, rest = divmod(limit, 1 << 20)
        limit_text = f"MaxPayloadInMB allows ({limit} bytes" + ("" if rest else f" = {mebibytes} MiB") + ")"
        if whole_object:
            message = (
                f"record 1 of {source} (the whole object, as SplitType is None) is {size_text}, more than "
                f"{limit_text}; raise MaxPayloadInMB (0 sends the object whatever its size) or set a SplitType"
            )
        else:
            message = f"record {record_number} of {source} is {size_text}, more than {limit_text}; raise MaxPayloadInMB"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only arguments need help to cross processes
        fields = ("source", "record_number", "size", "limit", "exact", "whole_object")
        return (partial(RecordTooLarge, **{name: getattr(self, name) for name in fields}), ())


def iter_payloads(
    chunks: Iterable[bytes], *, split_type: str, strategy: str, max_payload_bytes: int, source: str
) -> Iterator[Payload]:
    """Split one object's chunks and pack its records into payloads; `max_payload_bytes` 0 means no limit.

    SplitType None gives one payload holding the whole object (none for a 0-byte object).
    """
    _check(strategy, max_payload_bytes)
    if split_type not in SPLIT_TYPES:
        raise ValueError(f"unknown SplitType {split_type!r}; expected one of {', '.join(SPLIT_TYPES)}")
    if split_type == "Line" and strategy == "MultiRecord":
        return _LinePacker(max_payload_bytes, source).payloads(chunks)
    guard = None
    if max_payload_bytes:
        whole_object = split_type == "None"

        def error(record_number: int, size: int, exact: bool) -> RecordTooLarge:
            return RecordTooLarge(
                source=source, record_number=record_number, size=size, limit=max_payload_bytes, exact=exact, whole_object=whole_object
            )

        guard = SizeGuard(max_payload_bytes, strategy == "MultiRecord", error)
    records = iter_records(chunks, split_type, source=source, guard=guard)
    return pack_records(records, strategy=strategy, max_payload_bytes=max_payload_bytes, source=source)


def pack_records(
    records: Iterable[Record], *, strategy: str, max_payload_bytes: int, source: str, first_record: int = 0
) -> Iterator[Payload]:
    """Pack records already split (and filtered): one per payload, or as many whole ones as fit."""
    _check(strategy, max_payload_bytes)
    if strategy == "SingleRecord":
        return _single_record(records, max_payload_bytes, source, first_record)
    return _multi_record(records, max_payload_bytes, source, first_record)


def _check(strategy: str, max_payload_bytes: int) -> None:
    if strategy not in BATCH_STRATEGIES:
        raise ValueError(f"unknown BatchStrategy {strategy!r}; expected one of {', '.join(BATCH_STRATEGIES)}")
    if max_payload_bytes < 0:
        raise ValueError(f"max_payload_bytes must be 0 (no limit) or positive, not {max_payload_bytes}")


def _single_record(records: Iterable[Record], limit: int, source: str, first_record: int) -> Iterator[Payload]:
    index = first_record
    for record in records:
        body = record.bare
        if limit and len(body) > limit:
            raise RecordTooLarge(source=source, record_number=index + 1, size=len(body), limit=limit)
        yield Payload(body, 1, index)
        index += 1


def _multi_record(records: Iterable[Record], limit: int, source: str, first_record: int) -> Iterator[Payload]:
    cap = limit or sys.maxsize
    pieces: list[bytes] = []
    size = 0
    start = index = first_record
    for record in records:
        framed = record.framed
        if size + len(framed) > cap:
            if len(framed) > cap:
                raise RecordTooLarge(source=source, record_number=index + 1, size=len(framed), limit=limit)
            yield Payload(b"".join(pieces), len(pieces), start)
            pieces.clear()
            size = 0
            start = index
        pieces.append(framed)
        size += len(framed)
        index += 1
    if pieces:
        yield Payload(b"".join(pieces), len(pieces), start)


# A run of empty lines after a newline; and empty lines at the very start of a run of lines.
_EMPTY_LINES_AFTER_NEWLINE = re.compile(rb"\n(?:\r?\n)+")
_LEADING_EMPTY_LINES = re.compile(rb"(?:\r?\n)+")


class _LinePacker:
    """Line + MultiRecord on the bytes: whole lines are kept as runs `(buffer, start, end)` of chunks.

    Every run holds whole lines and no empty line, so the largest payload that fits is a prefix
    of the runs cut after the last `\\n` within the limit, and its record count is its number of
    `\\n`. The unfinished line at the end of a chunk is carried into the next one.
    """

    __slots__ = ("limit", "cap", "source", "runs", "queued", "carry", "carry_size", "emitted")

    def __init__(self, limit: int, source: str) -> None:
        self.limit = limit
        self.cap = limit or sys.maxsize
        self.source = source
        self.runs: deque[tuple[bytes, int, int]] = deque()
        self.queued = 0  # bytes in runs
        self.carry: list[bytes | memoryview] = []  # the unfinished line
        self.carry_size = 0
        self.emitted = 0  # records already in payloads

    def payloads(self, chunks: Iterable[bytes]) -> Iterator[Payload]:
        carry = self.carry
        for chunk in chunks:
            if not chunk:
                continue
            if type(chunk) is not bytes:
                chunk = bytes(chunk)
            first = chunk.find(b"\n")
            if first < 0:
                carry.append(chunk)
                self.carry_size += len(chunk)
                self._check_carry()
                continue
            start = 0
            if carry:
                carry.append(memoryview(chunk)[: first + 1])
                self._push_line(b"".join(carry))
                carry.clear()
                self.carry_size = 0
                start = first + 1
            end = chunk.rfind(b"\n") + 1
            if end > start:
                self._push_lines(chunk, start, end)
            yield from self._drain(final=False)
            if end < len(chunk):
                carry.append(memoryview(chunk)[end:])
                self.carry_size = len(chunk) - end
                self._check_carry()
        if carry:
            carry.append(b"\n")  # a final line without a newline gets one
            line = b"".join(carry)
            carry.clear()
            self._push_line(line)
        yield from self._drain(final=True)

    def _push_line(self, line: bytes) -> None:
        if line != b"\n" and line != b"\r\n":
            self.runs.append((line, 0, len(line)))
            self.queued += len(line)

    def _push_lines(self, buffer: bytes, start: int, end: int) -> None:
        if _has_empty_line(buffer, start, end):
            buffer = _drop_empty_lines(memoryview(buffer)[start:end])
            start, end = 0, len(buffer)
            if not buffer:
                return
        self.runs.append((buffer, start, end))
        self.queued += end - start

    def _check_carry(self) -> None:
        # The unfinished line is at least carry_size + 1 bytes once its newline comes.
        if self.limit and self.carry_size >= self.limit and self.carry_size > 1:
            queued_records = sum(_count_newlines(buffer, start, end) for buffer, start, end in self.runs)
            raise RecordTooLarge(
                source=self.source,
                record_number=self.emitted + queued_records + 1,
                size=self.carry_size + 1,
                limit=self.limit,
                exact=False,
            )

    def _drain(self, *, final: bool) -> Iterator[Payload]:
        runs, cap = self.runs, self.cap
        while self.queued >= cap or (final and self.queued):
            pieces: list[tuple[bytes, int, int]] = []
            size = 0
            while runs:
                buffer, start, end = runs[0]
                if size + end - start <= cap:
                    pieces.append(runs.popleft())
                    size += end - start
                    continue
                cut = buffer.rfind(b"\n", start, start + cap - size) + 1
                if cut:
                    pieces.append((buffer, start, cut))
                    size += cut - start
                    runs[0] = (buffer, cut, end)
                break
            if not pieces:
                buffer, start, _ = runs[0]
                raise RecordTooLarge(
                    source=self.source,
                    record_number=self.emitted + 1,
                    size=buffer.find(b"\n", start) + 1 - start,
                    limit=self.limit,
                )
            if len(pieces) == 1:
                buffer, start, end = pieces[0]
                body = buffer if start == 0 and end == len(buffer) else buffer[start:end]
            else:
                body = b"".join([memoryview(buffer)[start:end] for buffer, start, end in pieces])
            count = sum(_count_newlines(buffer, start, end) for buffer, start, end in pieces)
            self.queued -= size
            yield Payload(body, count, self.emitted)
            self.emitted += count


def _count_newlines(buffer: bytes, start: int, end: int) -> int:
    if end - start < _SMALL:
        return buffer.count(b"\n", start, end)
    import numpy as np

    return int(np.count_nonzero(np.frombuffer(buffer, np.uint8, end - start, start) == 10))


def _has_empty_line(buffer: bytes, start: int, end: int) -> bool:
    """Whether the whole lines `buffer[start:end]` (starting at a line start) include an empty one."""
    if buffer.startswith(b"\n", start) or buffer.startswith(b"\r\n", start):
        return True
    has_cr = buffer.find(b"\r", start, end) >= 0
    if end - start < _SMALL:
        return buffer.find(b"\n\n", start, end) >= 0 or (has_cr and buffer.find(b"\n\r\n", start, end) >= 0)
    # bytes.find is slow for needles whose first byte is as common as "\n"; compare byte pairs
    # as 16-bit words at even and odd offsets instead.
    import numpy as np

    data = np.frombuffer(buffer, np.uint8, end - start, start)
    even, odd = _word_views(data)
    if (even == 0x0A0A).any() or (odd == 0x0A0A).any():  # "\n\n"
        return True
    if has_cr:  # "\n\r" followed by "\n"
        offsets = np.concatenate((np.flatnonzero(even == 0x0D0A) * 2, np.flatnonzero(odd == 0x0D0A) * 2 + 1))
        offsets = offsets[offsets + 2 < len(data)]
        return bool((data[offsets + 2] == 10).any())
    return False


def _word_views(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The byte pairs of `data` as little-endian 16-bit words: those at even offsets, those at odd ones."""
    n = len(data)
    return data[: n - n % 2].view("<u2"), data[1 : n - (n - 1) % 2].view("<u2")


def _drop_empty_lines(lines: memoryview) -> bytes:
    cleaned = _EMPTY_LINES_AFTER_NEWLINE.sub(b"\n", lines)
    leading = _LEADING_EMPTY_LINES.match(cleaned)
    return cleaned[leading.end() :] if leading else cleaned


__all__ = ["BATCH_STRATEGIES", "Payload", "RecordTooLarge", "iter_payloads", "pack_records"]
