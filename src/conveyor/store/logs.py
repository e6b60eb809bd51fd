"""Job logs as CloudWatch Logs keeps them: streams of timestamped events, read by position.

One log group (SageMaker's `/aws/sagemaker/TransformJobs`) holds streams named after the job
(`<job>/instance-1`, `<job>/instance-1/data-log`). This module serves GetLogEvents,
DescribeLogStreams and FilterLogEvents emulation; times are epoch milliseconds, as there.
Events are ordered by (timestamp, id): by time, ties in the order they were appended.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from conveyor.store.database import Database
from conveyor.store.errors import InvalidToken
from conveyor.store.pagination import Page, Where, keyset_page

MAX_EVENTS = 10_000
"""Most events one read returns (CloudWatch's own limit for GetLogEvents and FilterLogEvents)."""
MAX_PAGE_BYTES = 1024 * 1024
"""Most bytes one read returns (CloudWatch's limit: 1 MB, counting 26 bytes per event)."""
EVENT_OVERHEAD_BYTES = 26
MAX_EVENT_BYTES = 256 * 1024
"""Longest event kept (CloudWatch's limit, overhead included); a longer message is cut, saying so."""
_HEAD = (-(1 << 62), 0)
_TAIL = (1 << 62, 0)
_EVENT_COLUMNS = "stream_name, message, ingestion_time, event_time, id"


@dataclass(frozen=True)
class LogEvent:
    stream_name: str
    timestamp: int
    message: str
    ingestion_time: int
    event_id: int


@dataclass(frozen=True)
class LogStream:
    name: str
    job_name: str
    creation_time: int
    first_event_time: int
    last_event_time: int
    last_ingestion_time: int
    stored_bytes: int


@dataclass(frozen=True)
class LogEventsPage:
    """Events in time order, with the tokens to read on from either end (GetLogEvents' shape).

    At the end of a stream the forward token comes back unchanged, which is how CloudWatch
    readers know they have caught up.
    """

    events: list[LogEvent]
    next_forward_token: str
    next_backward_token: str


class Logs:
    def __init__(self, database: Database) -> None:
        self._database = database

    def append(self, job_name: str, stream_name: str, timestamp_ms: int, message: str) -> None:
        self.append_many(job_name, stream_name, [(timestamp_ms, message)])

    def append_many(self, job_name: str, stream_name: str, events: Iterable[tuple[int, str]]) -> int:
        """Append (timestamp ms, message) events to a stream, creating it on first use; one
        transaction, so a burst of lines costs one commit."""
        events = [(timestamp, cut_message(message)) for timestamp, message in events]
        if not events:
            return 0
        ingested = int(self._database.now() * 1000)
        times = [timestamp for timestamp, _ in events]
        stored = sum(len(message.encode()) for _, message in events)
        with self._database.transaction() as connection:
            connection.executemany(
                "INSERT INTO log_events (stream_name, job_name, event_time, ingestion_time, message)"
                " VALUES (?, ?, ?, ?, ?)",
                [(stream_name, job_name, timestamp, ingested, message) for timestamp, message in events],
            )
            connection.execute(
                "INSERT INTO log_streams (stream_name, job_name, creation_time, first_event_time,"
                " last_event_time, last_ingestion_time, stored_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (stream_name) DO UPDATE SET"
                " first_event_time = CASE WHEN excluded.first_event_time < log_streams.first_event_time"
                "   THEN excluded.first_event_time ELSE log_streams.first_event_time END,"
                " last_event_time = CASE WHEN excluded.last_event_time > log_streams.last_event_time"
                "   THEN excluded.last_event_time ELSE log_streams.last_event_time END,"
                " last_ingestion_time = excluded.last_ingestion_time,"
                " stored_bytes = log_streams.stored_bytes + excluded.stored_bytes",
                (stream_name, job_name, ingested, min(times), max(times), ingested, stored),
            )
        return len(events)

    def streams(self, prefix: str = "") -> list[LogStream]:
        """The streams whose names start with `prefix` (all of them for ""), by name, with their
        first and last event times (DescribeLogStreams). A range of the primary key, so a prefix
        costs what it matches, whichever jobs it spans."""
        sql = (
            "SELECT stream_name, job_name, creation_time, first_event_time, last_event_time,"
            " last_ingestion_time, stored_bytes FROM log_streams"
        )
        parameters: list[object] = []
        if prefix and ord(prefix[-1]) < sys.maxunicode:
            sql += " WHERE stream_name >= ? AND stream_name < ?"
            parameters += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        elif prefix:
            sql += " WHERE SUBSTR(stream_name, 1, ?) = ?"
            parameters += [len(prefix), prefix]
        rows = self._database.execute(sql + " ORDER BY stream_name", parameters).fetchall()
        return [LogStream(*row) for row in rows]

    def read(
        self,
        stream_name: str,
        *,
        token: str | None = None,
        start_from_head: bool = True,
        limit: int = MAX_EVENTS,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
    ) -> LogEventsPage:
        """Read a stream from a position (GetLogEvents): forward from the head, or backward from
        the tail when `start_from_head` is False; a token continues in the direction it names.
        The time range is start-inclusive, end-exclusive."""
        if not 1 <= limit <= MAX_EVENTS:
            raise ValueError(f"limit must be 1 to {MAX_EVENTS}, got {limit}")
        if token is None:
            forward, position = (True, _HEAD) if start_from_head else (False, _TAIL)
        else:
            forward, position = _decode_position(token)
        where = Where().add("stream_name = ?", stream_name)
        if start_time_ms is not None:
            where.add("event_time >= ?", start_time_ms)
        if end_time_ms is not None:
            where.add("event_time < ?", end_time_ms)
        where.add(f"(event_time, id) {'>' if forward else '<'} (?, ?)", *position)
        order = "event_time, id" if forward else "event_time DESC, id DESC"
        rows = _within_page_bytes(self._database.execute(
            f"SELECT {_EVENT_COLUMNS} FROM log_events{where.sql()} ORDER BY {order} LIMIT ?",
            (*where.parameters, limit),
        ))
        events = [_event(row) for row in (rows if forward else reversed(rows))]
        if not events:
            # Nothing that way: reading on forward starts at the position itself (from the head
            # when the position is the tail sentinel of a backward read of an empty range).
            onward = position if forward else (_HEAD if position == _TAIL else (position[0], position[1] - 1))
            return LogEventsPage([], _encode_position(True, onward), _encode_position(False, position))
        first, last = events[0], events[-1]
        return LogEventsPage(
            events,
            _encode_position(True, (last.timestamp, last.event_id)),
            _encode_position(False, (first.timestamp, first.event_id)),
        )

    def since(self, job_name: str, after_id: int = 0, limit: int = MAX_EVENTS) -> list[LogEvent]:
        """A job's events in the order they were written, after the event `after_id`: a follower
        polling with the last id it saw misses nothing, whatever the events' timestamps."""
        rows = _within_page_bytes(self._database.execute(
            f"SELECT {_EVENT_COLUMNS} FROM log_events WHERE job_name = ? AND id > ? ORDER BY id LIMIT ?",
            (job_name, after_id, limit),
        ))
        return [_event(row) for row in rows]

    def filter(
        self,
        *,
        job_name: str | None = None,
        stream_names: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        contains: str | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        limit: int = MAX_EVENTS,
        next_token: str | None = None,
    ) -> Page[LogEvent]:
        """Events across streams in time order (FilterLogEvents): a case-sensitive substring,
        a start-inclusive / end-exclusive time range, and a NextToken."""
        where = Where()
        if job_name is not None:
            where.add("job_name = ?", job_name)
        if stream_names:
            where.add(f"stream_name IN ({', '.join('?' for _ in stream_names)})", *stream_names)
        if stream_prefix:
            where.add("SUBSTR(stream_name, 1, ?) = ?", len(stream_prefix), stream_prefix)
        if contains:
            where.add("INSTR(message, ?) > 0", contains)  # PostgreSQL: strpos(message, ?) > 0
        if start_time_ms is not None:
            where.add("event_time >= ?", start_time_ms)
        if end_time_ms is not None:
            where.add("event_time < ?", end_time_ms)
        rows, token = keyset_page(
            self._database.connection(),
            select=f"SELECT {_EVENT_COLUMNS} FROM log_events",
            where=where,
            sort_label="log-events",
            key_columns=("event_time", "id"),
            sort_order="Ascending",
            max_results=limit,
            next_token=next_token,
            max_page=MAX_EVENTS,
            max_bytes=MAX_PAGE_BYTES,
            size_of=_row_bytes,
        )
        return Page([_event(row) for row in rows], token)

    def job_bytes(self, job_name: str) -> int:
        """What a job's log holds, in bytes, over all its streams (its log quota counts these)."""
        row = self._database.execute("SELECT COALESCE(SUM(stored_bytes), 0) FROM log_streams WHERE job_name = ?", (job_name,)).fetchone()
        return int(row[0])


def cut_message(message: str) -> str:
    """`message`, cut to MAX_EVENT_BYTES (UTF-8, overhead included) with a note of what was cut."""
    data = message.encode("utf-8", "surrogatepass")
    room = MAX_EVENT_BYTES - EVENT_OVERHEAD_BYTES
    if len(data) <= room:
        return message
    note = f" [cut: {len(data)} bytes, over the event limit of {MAX_EVENT_BYTES} bytes]"
    return data[: room - len(note.encode())].decode("utf-8", "ignore") + note


def _row_bytes(row: tuple) -> int:
    return len(row[1].encode("utf-8", "surrogatepass")) + EVENT_OVERHEAD_BYTES


def _within_page_bytes(cursor: sqlite3.Cursor) -> list[tuple]:
    """Rows from `cursor` until the next would take the page past MAX_PAGE_BYTES (one at least);
    fetched one by one, so large events are never held beyond a page."""
    rows: list[tuple] = []
    size = 0
    for row in cursor:
        size += _row_bytes(row)
        if rows and size > MAX_PAGE_BYTES:
            break
        rows.append(row)
    cursor.close()
    return rows


def _event(row: tuple) -> LogEvent:
    return LogEvent(stream_name=row[0], timestamp=row[3], message=row[1], ingestion_time=row[2], event_id=row[4])


def _encode_position(forward: bool, position: tuple[int, int]) -> str:
    return f"{'f' if forward else 'b'}/{position[0]}/{position[1]}"


def _decode_position(token: str) -> tuple[bool, tuple[int, int]]:
    parts = token.split("/")
    try:
        if len(parts) != 3 or parts[0] not in ("f", "b"):
            raise ValueError(token)
        return parts[0] == "f", (int(parts[1]), int(parts[2]))
    except ValueError as exc:
        raise InvalidToken(f"invalid log position token {token!r}") from exc
