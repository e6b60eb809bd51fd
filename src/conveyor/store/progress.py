"""A job's progress, derived from its work items (finished totals plus in-flight running totals).

Derived rather than kept as separate counters, so it can never drift from the items: a released
or reclaimed item drops its partial totals, and the counters follow. Throughput and ETA are
computed here from elapsed time since the job started, given the caller's `now`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from conveyor.store.database import from_epoch
from conveyor.store.errors import NotFound
from conveyor.store.work_items import DONE, FAILED, IN_FLIGHT, OBJECT, OBJECT_STATE, PENDING

MIB = 1 << 20


@dataclass(frozen=True)
class Progress:
    objects_total: int
    objects_done: int
    objects_failed: int
    objects_in_flight: int
    records: int
    """Records of the objects written, and while a job runs those answered so far in objects in
    flight; a failed object's records are not counted, since nothing of it is written (as the
    engine's ledger counts them, and so `conveyor transform`)."""
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
    records_per_second: float | None = None
    model_busy_fraction: float | None = None
    """The engine's figures (engine.figures): over a recent window while the job runs, over
    its whole run once it ended; None until its instances first report."""

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
    """One job's counters; NotFound for an unknown job."""
    found = jobs_progress(connection, [job_name])
    if job_name not in found:
        raise NotFound("transform job", job_name)
    return found[job_name]


def jobs_progress(connection: sqlite3.Connection, job_names: Sequence[str]) -> dict[str, Progress]:
    """The counters of each named job that exists, in one aggregate however many are named (a
    console page of jobs); each job's items are found by the (job_name, state, ordinal) index."""
    if not job_names:
        return {}
    placeholders = ", ".join("?" * len(job_names))
    # One row per input object (its shards grouped by `ordinal - shard`), then per job: objects
    # are counted as objects however many shards they have, and a shard counts its nominal range.
    planned = "COALESCE(range_end - range_start, size)"
    rows = connection.execute(
        "SELECT jobs.name, jobs.transform_start_time, COUNT(objects.state),"
        " COALESCE(SUM(CASE WHEN objects.state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN objects.state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN objects.state = ? THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN objects.state = ? THEN 0 ELSE objects.records END), 0),"
        " COALESCE(SUM(objects.bytes_in), 0), COALESCE(SUM(objects.bytes_out), 0),"
        " COALESCE(SUM(objects.size), 0), COALESCE(SUM(objects.remaining), 0),"
        " MIN(objects.started_at), COALESCE(SUM(objects.failed_records), 0),"
        " MAX(jobs.records_per_second), MAX(jobs.model_busy_fraction)"
        " FROM transform_jobs AS jobs LEFT JOIN ("
        f"   SELECT job_name, {OBJECT_STATE} AS state, SUM(records) AS records, SUM(bytes_in) AS bytes_in,"
        f"   SUM(bytes_out) AS bytes_out, SUM({planned}) AS size,"
        f"   SUM(CASE WHEN state = ? THEN {planned} WHEN state = ? AND {planned} > bytes_in THEN {planned} - bytes_in ELSE 0 END) AS remaining,"
        "    MIN(started_at) AS started_at, SUM(json_array_length(failed_records)) AS failed_records"
        f"   FROM work_items WHERE job_name IN ({placeholders}) GROUP BY job_name, {OBJECT}"
        " ) AS objects ON objects.job_name = jobs.name"
        f" WHERE jobs.name IN ({placeholders}) GROUP BY jobs.name",
        (DONE, FAILED, IN_FLIGHT, FAILED, PENDING, IN_FLIGHT, *job_names, *job_names),
    ).fetchall()
    return {row[0]: _progress(row) for row in rows}


def _progress(row: tuple[Any, ...]) -> Progress:
    started = row[1] if row[1] is not None else row[11]
    return Progress(
        objects_total=row[2],
        objects_done=row[3],
        objects_failed=row[4],
        objects_in_flight=row[5],
        records=row[6],
        failed_records=row[12],
        bytes_in=row[7],
        bytes_out=row[8],
        bytes_total=row[9],
        bytes_remaining=row[10],
        started_at=from_epoch(started),
        records_per_second=row[13],
        model_busy_fraction=row[14],
    )
