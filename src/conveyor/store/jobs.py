"""Transform jobs: the stored request, the status machine, and the scheduler's lease on a job."""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from conveyor.errors import cut_failure_reason
from conveyor.store.database import Database, from_epoch, from_json, to_epoch, to_json
from conveyor.store.errors import AlreadyExists, IllegalTransition, NotFound
from conveyor.store.pagination import Page, Where, keyset_page
from conveyor.store.tags import write_tags

IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"
STATUSES = (IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED)
TERMINAL = frozenset({COMPLETED, FAILED, STOPPED})
ACTIVE = (IN_PROGRESS, STOPPING)
"""Statuses a scheduler works on: running, or stopping but not yet stopped."""

TRANSITIONS: Mapping[str, frozenset[str]] = {
    IN_PROGRESS: frozenset({COMPLETED, FAILED, STOPPING}),
    # A job asked to stop may still finish (or fail) before its instances notice the request.
    STOPPING: frozenset({STOPPED, FAILED, COMPLETED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    STOPPED: frozenset(),
}

JOB_SORT_KEYS = {
    "Name": ("name",),
    "CreationTime": ("creation_time", "name"),
    "Status": ("status", "creation_time", "name"),
}
_COLUMNS = (
    "arn, model_name, request, failure_reason, last_modified_time, transform_start_time, transform_end_time,"
    " execution_parameters, owner, lease_expires, status, creation_time, name, inputs_listed"
)
_SUMMARY_COLUMNS = "arn, transform_end_time, last_modified_time, failure_reason, status, creation_time, name"



@dataclass(frozen=True)
class TransformJobRecord:
    name: str
    arn: str
    model_name: str
    request: dict[str, Any]
    """The CreateTransformJob request body, as accepted."""
    status: str
    creation_time: datetime
    last_modified_time: datetime
    failure_reason: str | None = None
    transform_start_time: datetime | None = None
    transform_end_time: datetime | None = None
    execution_parameters: dict[str, Any] | None = None
    """Resolved MaxConcurrentTransforms, MaxPayloadInMB, BatchStrategy (docs/semantics.md, decision 9); None until resolved."""
    owner: str | None = None
    """The scheduler that holds the job, while its lease lasts."""
    lease_expires: datetime | None = None
    inputs_listed: bool = True
    """False while its scheduler lists its inputs as it runs (docs/semantics.md, "Listing")."""


@dataclass(frozen=True)
class TransformJobSummary:
    """What ListTransformJobs returns per job."""

    name: str
    arn: str
    status: str
    creation_time: datetime
    last_modified_time: datetime
    transform_end_time: datetime | None = None
    failure_reason: str | None = None


class TransformJobs:
    """Stored jobs. `last_modified_time` moves on every change a client can see (status, start,
    resolved parameters); a scheduler's lease renewals are bookkeeping and leave it alone."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def create(
        self,
        name: str,
        arn: str,
        model_name: str,
        request: Mapping[str, Any],
        creation_time: datetime,
        tags: Mapping[str, str] | None = None,
        *,
        inputs_listed: bool = True,
    ) -> TransformJobRecord:
        """Store a new job as InProgress (with its tags); AlreadyExists when the name is taken.
        Without `inputs_listed`, its scheduler lists its inputs while it runs."""
        created = to_epoch(creation_time)
        try:
            with self._database.transaction() as connection:
                connection.execute(
                    "INSERT INTO transform_jobs (name, arn, model_name, request, status, creation_time,"
                    " last_modified_time, inputs_listed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, arn, model_name, to_json(dict(request)), IN_PROGRESS, created, created, int(inputs_listed)),
                )
                if tags:
                    write_tags(connection, arn, tags)
                return _select_or_raise(connection, name)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("transform job", name, arn) from exc

    def get(self, name: str) -> TransformJobRecord | None:
        return _select(self._database.connection(), name)

    def get_many(self, names: Sequence[str]) -> dict[str, TransformJobRecord]:
        """Each named job that exists, in one query (a page of jobs shown together)."""
        if not names:
            return {}
        rows = self._database.connection().execute(
            f"SELECT {_COLUMNS} FROM transform_jobs WHERE name IN ({', '.join('?' * len(names))})", tuple(names)
        ).fetchall()
        return {record.name: record for record in map(_record, rows)}

    def list(
        self,
        *,
        name_contains: str | None = None,
        status_equals: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        last_modified_time_after: datetime | None = None,
        last_modified_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> Page[TransformJobSummary]:
        """ListTransformJobs with every filter (bounds exclusive, NameContains case-insensitive)."""
        if sort_by not in JOB_SORT_KEYS:
            raise ValueError(f"sort_by must be one of {sorted(JOB_SORT_KEYS)}, got {sort_by!r}")
        where = (
            Where()
            .contains_ignoring_case("name", name_contains)
            .after("creation_time", to_epoch(creation_time_after))
            .before("creation_time", to_epoch(creation_time_before))
            .after("last_modified_time", to_epoch(last_modified_time_after))
            .before("last_modified_time", to_epoch(last_modified_time_before))
        )
        if status_equals is not None:
            where.add("status = ?", status_equals)
        rows, token = keyset_page(
            self._database.connection(),
            select=f"SELECT {_SUMMARY_COLUMNS} FROM transform_jobs",  # ends in every sort key
            where=where,
            sort_label=f"transform-jobs/{sort_by}",
            key_columns=JOB_SORT_KEYS[sort_by],
            sort_order=sort_order,
            max_results=max_results,
            next_token=next_token,
        )
        summaries = [
            TransformJobSummary(
                name=row[6],
                arn=row[0],
                status=row[4],
                creation_time=from_epoch(row[5]),
                last_modified_time=from_epoch(row[2]),
                transform_end_time=from_epoch(row[1]),
                failure_reason=row[3],
            )
            for row in rows
        ]
        return Page(summaries, token)

    def transition(self, name: str, status: str, *, failure_reason: str | None = None) -> TransformJobRecord:
        """Move the job along the status machine; IllegalTransition when the machine forbids it.

        Entering a terminal status records TransformEndTime and drops the scheduler's lease.
        The failure reason is cut to SageMaker's 1024 characters (`cut_failure_reason`).
        """
        if status not in TRANSITIONS:
            raise ValueError(f"unknown transform job status {status!r}")
        reason = None if failure_reason is None else cut_failure_reason(failure_reason)
        with self._database.transaction() as connection:
            now = self._database.now()
            row = connection.execute("SELECT status FROM transform_jobs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound("transform job", name)
            if status not in TRANSITIONS[row[0]]:
                raise IllegalTransition(name, row[0], status)
            terminal = status in TERMINAL
            connection.execute(
                "UPDATE transform_jobs SET status = ?, failure_reason = COALESCE(?, failure_reason),"
                " last_modified_time = ?,"
                " transform_end_time = CASE WHEN ? THEN ? ELSE transform_end_time END,"
                " owner = CASE WHEN ? THEN NULL ELSE owner END,"
                " lease_expires = CASE WHEN ? THEN NULL ELSE lease_expires END"
                " WHERE name = ?",
                (status, reason, now, terminal, now, terminal, terminal, name),
            )
            return _select_or_raise(connection, name)

    def mark_started(self, name: str) -> TransformJobRecord:
        """Record TransformStartTime, once: a job resumed after a crash keeps its first start."""
        with self._database.transaction() as connection:
            now = self._database.now()
            connection.execute(
                "UPDATE transform_jobs SET transform_start_time = ?, last_modified_time = ?"
                " WHERE name = ? AND transform_start_time IS NULL",
                (now, now, name),
            )
            return _select_or_raise(connection, name)

    def set_execution_parameters(self, name: str, parameters: Mapping[str, Any]) -> TransformJobRecord:
        """Record the resolved MaxConcurrentTransforms / MaxPayloadInMB / BatchStrategy."""
        with self._database.transaction() as connection:
            connection.execute(
                "UPDATE transform_jobs SET execution_parameters = ?, last_modified_time = ? WHERE name = ?",
                (to_json(dict(parameters)), self._database.now(), name),
            )
            return _select_or_raise(connection, name)

    def set_inputs_listed(self, name: str, listed: bool) -> None:
        """Record that the job's inputs are being listed (False) or all listed (True)."""
        self._database.execute("UPDATE transform_jobs SET inputs_listed = ? WHERE name = ?", (int(listed), name))

    def set_figures(self, name: str, records_per_second: float, model_busy_fraction: float) -> None:
        """Record the run's figures (not a change a client made: LastModifiedTime stays)."""
        with self._database.transaction() as connection:
            connection.execute(
                "UPDATE transform_jobs SET records_per_second = ?, model_busy_fraction = ? WHERE name = ?",
                (records_per_second, model_busy_fraction, name),
            )

    def schedulable(self, limit: int = 100) -> builtins.list[TransformJobRecord]:
        """InProgress and Stopping jobs that no scheduler holds (no owner, or lease expired), oldest first."""
        rows = self._database.execute(
            f"SELECT {_COLUMNS} FROM transform_jobs WHERE status IN (?, ?)"
            " AND (owner IS NULL OR lease_expires <= ?) ORDER BY creation_time, name LIMIT ?",
            (*ACTIVE, self._database.now(), limit),
        ).fetchall()
        return [_record(row) for row in rows]

    def claim(self, name: str, owner: str, lease_seconds: float) -> bool:
        """Take the job for `owner` if it is active and free (or already `owner`'s); atomic, so two
        schedulers never both win."""
        now = self._database.now()
        cursor = self._database.execute(
            "UPDATE transform_jobs SET owner = ?, lease_expires = ? WHERE name = ? AND status IN (?, ?)"
            " AND (owner IS NULL OR owner = ? OR lease_expires <= ?)",
            (owner, now + lease_seconds, name, *ACTIVE, owner, now),
        )
        return cursor.rowcount == 1

    def renew_lease(self, name: str, owner: str, lease_seconds: float) -> bool:
        """Extend `owner`'s lease; False when another scheduler has taken the job meanwhile."""
        cursor = self._database.execute(
            "UPDATE transform_jobs SET lease_expires = ? WHERE name = ? AND owner = ?",
            (self._database.now() + lease_seconds, name, owner),
        )
        return cursor.rowcount == 1

    def release(self, name: str, owner: str) -> bool:
        """Give the job up (a scheduler shutting down), so another may claim it at once."""
        cursor = self._database.execute(
            "UPDATE transform_jobs SET owner = NULL, lease_expires = NULL WHERE name = ? AND owner = ?",
            (name, owner),
        )
        return cursor.rowcount == 1


def _select(connection: sqlite3.Connection, name: str) -> TransformJobRecord | None:
    row = connection.execute(f"SELECT {_COLUMNS} FROM transform_jobs WHERE name = ?", (name,)).fetchone()
    return None if row is None else _record(row)


def _select_or_raise(connection: sqlite3.Connection, name: str) -> TransformJobRecord:
    record = _select(connection, name)
    if record is None:
        raise NotFound("transform job", name)
    return record


def _record(row: tuple) -> TransformJobRecord:
    return TransformJobRecord(
        name=row[12],
        arn=row[0],
        model_name=row[1],
        request=from_json(row[2]),
        status=row[10],
        creation_time=from_epoch(row[11]),
        last_modified_time=from_epoch(row[4]),
        failure_reason=row[3],
        transform_start_time=from_epoch(row[5]),
        transform_end_time=from_epoch(row[6]),
        execution_parameters=from_json(row[7]),
        owner=row[8],
        lease_expires=from_epoch(row[9]),
        inputs_listed=bool(row[13]),
    )
