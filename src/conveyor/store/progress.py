"""A job's progress, derived from its work items (finished totals plus in-flight running totals).

Derived rather than kept as separate counters, so it can never drift from the items: a released
or reclaimed item drops its partial totals, and the counters follow. Throughput and ETA are
computed here from elapsed time since the job started, given the caller's `now`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from conveyor.store.database import from_epoch
from conveyor.store.errors import NotFound
from conveyor.store.work_items import DONE, FAILED, IN_FLIGHT, PENDING

MIB = 1 << 20


@dataclass(frozen=True)
class Progress:
    objects_total: int
    objects_done: int
    objects_failed: int
    objects_in_flight: int
    records: int
    failed_records: int
    """Records that failed in a job that tolerates them (their outputs are empty lines)."""
    bytes_in: int
    """Input bytes read so far (compressed bytes for Gzip input), in-flight items included."""
    bytes_out: int
    bytes_total: int
    """Input bytes planned: the sum of the items' sizes."""
    bytes_remaining: int
    """Bytes of pending items plus the unread part of in-flight ones (what the ETA is based on)."""
    started_at: datetime | None
    """TransformStartTime, or the first item's claim when the job has not recorded one."""

    def elapsed_seconds(self, now: datetime) -> float | None:
        if self.started_at is None:
            return None
        return max((now - self.started_at).total_seconds(), 0.0)

    def mb_per_second(self, now: datetime) -> float | None:
        """Input throughput in MiB/s (docs/semantics.md, decision 7: MB means MiB) since the job started."""
        elapsed = self.elapsed_seconds(now)
        if not elapsed:
            return None
        return self.bytes_in / MIB / elapsed

    def eta_seconds(self, now: datetime) -> float | None:
        """Seconds left at the throughput so far; None until some input has been read."""
        elapsed = self.elapsed_seconds(now)
        if not elapsed or self.bytes_in == 0:
            return None
        return self.bytes_remaining / (self.bytes_in / elapsed)


def job_progress(connection: sqlite3.Connection, job_name: str) -> Progress:
    """One aggregate over the job's items (served by the (job_name, state, ordinal) index)."""
    job = connection.execute(
        "SELECT transform_start_time FROM transform_jobs WHERE name = ?", (job_name,)
    ).fetchone()
    if job is None:
        raise NotFound("transform job", job_name)
    row = connection.execute(
        "SELECT COUNT(*),"
        " COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(records), 0), COALESCE(SUM(bytes_in), 0), COALESCE(SUM(bytes_out), 0),"
        " COALESCE(SUM(size), 0),"
        " COALESCE(SUM(CASE WHEN state = ? THEN size"
        "   WHEN state = ? AND size > bytes_in THEN size - bytes_in ELSE 0 END), 0),"
        " MIN(started_at),"
        " COALESCE(SUM(json_array_length(failed_records)), 0)"
        " FROM work_items WHERE job_name = ?",
        (DONE, FAILED, IN_FLIGHT, PENDING, IN_FLIGHT, job_name),
    ).fetchone()
    started = job[0] if job[0] is not None else row[9]
    return Progress(
        objects_total=row[0],
        objects_done=row[1],
        objects_failed=row[2],
        objects_in_flight=row[3],
        records=row[4],
        failed_records=row[10],
        bytes_in=row[5],
        bytes_out=row[6],
        bytes_total=row[7],
        bytes_remaining=row[8],
        started_at=from_epoch(started),
    )
