"""Work items: one per input object, or per byte-range shard of a large one, claimed under a lease.

A lease is how a crash loses at most the items in flight: an item whose holder stops renewing
goes back to Pending (`reclaim_expired`) and another instance takes it. Every change made on
behalf of a holder is guarded by (id, owner, InFlight), so a holder that lost its lease learns
it from a False return instead of overwriting its successor's state.
"""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, NamedTuple

import orjson

from conveyor.store.database import Database, from_epoch
from conveyor.store.errors import AlreadyExists, NotFound

PENDING = "Pending"
IN_FLIGHT = "InFlight"
DONE = "Done"
FAILED = "Failed"

_COLUMNS = (
    "id, job_name, ordinal, input_uri, output_uri, relative_name, size, range_start, range_end, state,"
    " owner, lease_expires, attempts, records, bytes_in, bytes_out, failure_reason, started_at, finished_at,"
    " payload_attempts, instance_losses, failed_records, shard, shards"
)
_CLAIMED_COLUMNS = (
    "id, ordinal, input_uri, output_uri, size, range_start, range_end, payload_attempts, instance_losses, shard, shards"
)
_OUTCOME_COLUMNS = "id, input_uri, output_uri, size, shard, shards, state, records, failure_reason, failed_records"
OBJECT = "ordinal - shard"
"""The ordinal of an item's object (its first shard's): what groups shards into their object."""
OBJECT_STATE = (
    f"CASE WHEN SUM(state = '{FAILED}') > 0 THEN '{FAILED}' WHEN SUM(state = '{DONE}') = COUNT(*) THEN '{DONE}'"
    f" WHEN SUM(state = '{IN_FLIGHT}') > 0 THEN '{IN_FLIGHT}' ELSE '{PENDING}' END"
)
"""The state of an object from its shards' (one item: its own)."""
_BACK_TO_PENDING = (
    f"state = '{PENDING}', owner = NULL, lease_expires = NULL, records = 0, bytes_in = 0, bytes_out = 0"
)


@dataclass(frozen=True)
class NewWorkItem:
    """An item as planned: which input, where its output goes, its place in the job."""

    ordinal: int
    input_uri: str
    output_uri: str
    relative_name: str
    size: int
    range_start: int | None = None
    range_end: int | None = None
    """Byte range [start, end) of the input object, for sharded objects; None for the whole object."""
    shard: int = 0
    shards: int = 1
    """The item's place among its object's shards and their number; consecutive ordinals."""


class ClaimedItem(NamedTuple):
    """A claimed item as its holder runs it: only what the run needs of its row, since a job of
    many small objects claims thousands (its state, owner and lease are the claim's own)."""

    id: int
    ordinal: int
    input_uri: str
    output_uri: str
    size: int
    range_start: int | None
    range_end: int | None
    payload_attempts: dict[int, int]
    """Payload index → invocations spent on it by earlier runs that timed out."""
    instance_losses: int
    shard: int
    shards: int


class ItemOutcome(NamedTuple):
    """An item's part in its job's summary: where it was and how it ended."""

    id: int
    input_uri: str
    output_uri: str
    size: int
    shard: int
    shards: int
    state: str
    records: int
    failure_reason: str | None
    failed_records: list[dict[str, object]]


class LastPlanned(NamedTuple):
    """A job's last planned item, and how many objects were planned up to it."""

    ordinal: int
    input_uri: str
    objects: int


@dataclass(frozen=True)
class CompletedItem:
    """An item whose output is written, with its final totals (and the records that failed, in a
    job that tolerates them)."""

    item_id: int
    records: int
    bytes_in: int
    bytes_out: int
    failed_records: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class WorkItemRecord:
    id: int
    job_name: str
    ordinal: int
    input_uri: str
    output_uri: str
    relative_name: str
    size: int
    range_start: int | None
    range_end: int | None
    state: str
    owner: str | None
    lease_expires: datetime | None
    attempts: int
    """How many times the item has been claimed (1 on its first run)."""
    records: int
    bytes_in: int
    bytes_out: int
    failure_reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    payload_attempts: dict[int, int] = field(default_factory=dict)
    """Payload index → invocations spent on it by earlier runs that timed out."""
    instance_losses: int = 0
    """How many instances died (other than by a timeout) while transforming the item."""
    failed_records: list[dict[str, object]] = field(default_factory=list)
    """The records that failed in a job that tolerates them: {record, offset, error, attempts}."""
    shard: int = 0
    shards: int = 1


@dataclass(frozen=True)
class WorkItemCounts:
    pending: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.in_flight + self.done + self.failed

    @property
    def finished(self) -> bool:
        """Nothing left to run: the job can be given its final status."""
        return self.pending == 0 and self.in_flight == 0


class WorkItems:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, job_name: str, items: Iterable[NewWorkItem]) -> int:
        """Add a job's planned items in one transaction (all or none); returns how many.

        An ordinal the job already has raises AlreadyExists: plan a job once, and check
        `counts(job).total` before planning it again after a restart.
        """
        rows = [
            (job_name, item.ordinal, item.input_uri, item.output_uri, item.relative_name, item.size,
             item.range_start, item.range_end, PENDING, item.shard, item.shards)
            for item in items
        ]
        try:
            with self._database.transaction() as connection:
                if connection.execute("SELECT 1 FROM transform_jobs WHERE name = ?", (job_name,)).fetchone() is None:
                    raise NotFound("transform job", job_name)
                connection.executemany(
                    "INSERT INTO work_items (job_name, ordinal, input_uri, output_uri, relative_name, size,"
                    " range_start, range_end, state, shard, shards) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("work items of transform job", job_name) from exc
        return len(rows)

    def claim(self, job_name: str, owner: str, lease_seconds: float) -> ClaimedItem | None:
        """Hand the job's next Pending item (lowest ordinal) to `owner`; None when none is pending."""
        claimed = self.claim_many(job_name, owner, lease_seconds, 1)
        return claimed[0] if claimed else None

    def claim_many(self, job_name: str, owner: str, lease_seconds: float, limit: int) -> list[ClaimedItem]:
        """Hand up to `limit` of the job's Pending items (lowest ordinals first) to `owner`, in
        ordinal order; empty when none is pending.

        One UPDATE with a sub-select: SQLite takes the write lock before the statement reads, so
        concurrent claimers (threads or processes) serialise and never get the same item. The
        `state = Pending` re-check keeps it correct on databases that do not serialise so (the
        loop retries there when a competitor won the whole race). Its `+` keeps SQLite from
        answering it with the index on state, which would read every pending item of every job
        for each claim (a job of 20,000 items spent 2 ms a claim); the ids are looked up by key.
        """
        while True:
            now = self._database.now()
            rows = self._database.execute(
                f"UPDATE work_items SET state = '{IN_FLIGHT}', owner = ?, lease_expires = ?,"
                " attempts = attempts + 1, started_at = ?, finished_at = NULL, failure_reason = NULL,"
                " records = 0, bytes_in = 0, bytes_out = 0"
                " WHERE id IN (SELECT id FROM work_items WHERE job_name = ? AND state = ?"
                " ORDER BY ordinal LIMIT ?) AND +state = ?"
                f" RETURNING {_CLAIMED_COLUMNS}",
                (owner, now + lease_seconds, now, job_name, PENDING, limit, PENDING),
            ).fetchall()
            if rows:
                return sorted((_claimed(row) for row in rows), key=lambda item: item.ordinal)
            if not self._database.execute(
                "SELECT 1 FROM work_items WHERE job_name = ? AND state = ? LIMIT 1", (job_name, PENDING)
            ).fetchall():
                return []

    def renew_lease(self, item_id: int, owner: str, lease_seconds: float) -> bool:
        """Extend the holder's lease; False when the item is no longer theirs."""
        return self._guarded(item_id, owner, "lease_expires = ?", self._database.now() + lease_seconds)

    def report_progress(
        self,
        item_id: int,
        owner: str,
        records: int,
        bytes_in: int,
        bytes_out: int = 0,
        *,
        lease_seconds: float | None = None,
    ) -> bool:
        """Record an in-flight item's running totals (one UPDATE by primary key); renews the
        lease in the same write when `lease_seconds` is given. False when the item is not theirs."""
        if lease_seconds is None:
            return self._guarded(
                item_id, owner, "records = ?, bytes_in = ?, bytes_out = ?", records, bytes_in, bytes_out
            )
        return self._guarded(
            item_id, owner, "records = ?, bytes_in = ?, bytes_out = ?, lease_expires = ?",
            records, bytes_in, bytes_out, self._database.now() + lease_seconds,
        )

    def complete(
        self, item_id: int, owner: str, records: int, bytes_in: int, bytes_out: int, *, failed_records: list[dict[str, object]] | None = None
    ) -> bool:
        """The item's output is written: Done, with its final totals. False when it is not theirs."""
        return self.complete_many(owner, [CompletedItem(item_id, records, bytes_in, bytes_out, failed_records or [])]) == 1

    def complete_many(self, owner: str, done: Iterable[CompletedItem]) -> int:
        """Items whose outputs are written, made Done in one transaction: a group of small objects
        costs one commit, not one each. Returns how many were still the owner's."""
        now = self._database.now()
        rows = [
            (item.records, item.bytes_in, item.bytes_out, now, orjson.dumps(item.failed_records).decode(), item.item_id, owner)
            for item in done
        ]
        with self._database.transaction() as connection:
            return connection.executemany(
                f"UPDATE work_items SET state = '{DONE}', records = ?, bytes_in = ?, bytes_out = ?, finished_at = ?,"
                f" lease_expires = NULL, failed_records = ? WHERE id = ? AND owner = ? AND state = '{IN_FLIGHT}'",
                rows,
            ).rowcount

    def fail(self, item_id: int, owner: str, reason: str, *, failed_records: list[dict[str, object]] | None = None) -> bool:
        """The item failed for good (retries spent): Failed, with the reason the job reports (and
        the bad records it found first, in a job that tolerates some)."""
        return self._guarded(
            item_id, owner, f"state = '{FAILED}', failure_reason = ?, finished_at = ?, lease_expires = NULL, failed_records = ?",
            reason, self._database.now(), orjson.dumps(failed_records or []).decode(),
        )

    def release(
        self, item_id: int, owner: str, *, payload_attempts: dict[int, int] | None = None, instance_losses: int | None = None
    ) -> bool:
        """Give the item back to Pending unfinished (its instance died, or the job is stopping).

        `payload_attempts` and `instance_losses`, when given, replace what the item's earlier runs
        spent, so that the attempts a job allows survive every hand-back, restart and resume."""
        assignments, values = _BACK_TO_PENDING, list[object]()
        if payload_attempts is not None:
            assignments += ", payload_attempts = ?"
            values.append(orjson.dumps({str(index): count for index, count in payload_attempts.items()}).decode())
        if instance_losses is not None:
            assignments += ", instance_losses = ?"
            values.append(instance_losses)
        return self._guarded(item_id, owner, assignments, *values)

    def reclaim_expired(self, job_name: str) -> int:
        """Put every in-flight item of the job whose lease has expired back to Pending; returns
        how many. The job's in-flight items are found through the index on (job, state), so a
        lease needs no index of its own to be written at each claim, renewal and completion."""
        return self._database.execute(
            f"UPDATE work_items SET {_BACK_TO_PENDING} WHERE job_name = ? AND state = ? AND lease_expires <= ?",
            (job_name, IN_FLIGHT, self._database.now()),
        ).rowcount

    def get(self, item_id: int) -> WorkItemRecord | None:
        row = self._database.execute(f"SELECT {_COLUMNS} FROM work_items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self, job_name: str, state: str | None = None) -> list[WorkItemRecord]:
        """The job's items in ordinal order, optionally only those in one state."""
        sql = f"SELECT {_COLUMNS} FROM work_items WHERE job_name = ?"
        parameters: builtins.list[object] = [job_name]
        if state is not None:
            sql += " AND state = ?"
            parameters.append(state)
        rows = self._database.execute(sql + " ORDER BY ordinal", parameters).fetchall()
        return [_record(row) for row in rows]

    def outcomes(self, job_name: str) -> builtins.list[ItemOutcome]:
        """Every item of the job in ordinal order, as its summary reads them."""
        rows = self._database.execute(
            f"SELECT {_OUTCOME_COLUMNS} FROM work_items WHERE job_name = ? ORDER BY ordinal", (job_name,)
        ).fetchall()
        return [
            ItemOutcome(
                id=row[0], input_uri=row[1], output_uri=row[2], size=row[3], shard=row[4], shards=row[5], state=row[6],
                records=row[7], failure_reason=row[8], failed_records=[] if row[9] == "[]" else orjson.loads(row[9]),
            )
            for row in rows
        ]

    def count_pending(self, job_name: str) -> int:
        """The job's items waiting to be claimed (a sharded object's count each)."""
        row = self._database.execute("SELECT COUNT(*) FROM work_items WHERE job_name = ? AND state = ?", (job_name, PENDING)).fetchone()
        return int(row[0])

    def last_planned(self, job_name: str) -> LastPlanned | None:
        """The job's item of the highest ordinal, with the number of objects up to it; None when
        it has none."""
        row = self._database.execute(
            "SELECT ordinal, input_uri, (SELECT COUNT(*) FROM work_items WHERE job_name = ? AND shard = 0)"
            " FROM work_items WHERE job_name = ? ORDER BY ordinal DESC LIMIT 1",
            (job_name, job_name),
        ).fetchone()
        return None if row is None else LastPlanned(*row)

    def failed(self, job_name: str) -> builtins.list[WorkItemRecord]:
        """The failed items with their reasons, in ordinal order (for the job's FailureReason and log)."""
        return self.list(job_name, FAILED)

    def counts(self, job_name: str) -> WorkItemCounts:
        """The job's objects by state; a sharded object is Failed when a shard failed, Done when
        every shard is, InFlight while one is, else Pending."""
        rows = self._database.execute(
            f"SELECT state, COUNT(*) FROM (SELECT {OBJECT_STATE} AS state FROM work_items WHERE job_name = ?"
            f" GROUP BY {OBJECT}) GROUP BY state",
            (job_name,),
        ).fetchall()
        by_state = dict(rows)
        return WorkItemCounts(
            pending=by_state.get(PENDING, 0),
            in_flight=by_state.get(IN_FLIGHT, 0),
            done=by_state.get(DONE, 0),
            failed=by_state.get(FAILED, 0),
        )

    def done_shards(self, job_name: str, ordinal: int, shard: int) -> dict[int, tuple[int, int]]:
        """The Done shards of the object whose shard `shard` has `ordinal`: shard → (records, failed records)."""
        rows = self._database.execute(
            "SELECT shard, records, json_array_length(failed_records) FROM work_items"
            f" WHERE job_name = ? AND {OBJECT} = ? AND state = ?",
            (job_name, ordinal - shard, DONE),
        ).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def reset_unassembled_shards(self, job_name: str) -> int:
        """Put back to Pending the Done shards of objects not yet assembled and not failed, whose
        pieces a resume sweeps with the other temporaries (docs/semantics.md, "Shards"); returns how many."""
        return self._database.execute(
            f"UPDATE work_items SET {_BACK_TO_PENDING} WHERE job_name = ? AND state = ? AND shards > 1 AND {OBJECT} IN"
            f" (SELECT {OBJECT} FROM work_items WHERE job_name = ? AND shards > 1 GROUP BY {OBJECT}"
            f" HAVING SUM(state = '{DONE}') < COUNT(*) AND SUM(state = '{FAILED}') = 0)",
            (job_name, DONE, job_name),
        ).rowcount

    def _guarded(self, item_id: int, owner: str, assignments: str, *values: object) -> bool:
        cursor = self._database.execute(
            f"UPDATE work_items SET {assignments} WHERE id = ? AND owner = ? AND state = '{IN_FLIGHT}'",
            (*values, item_id, owner),
        )
        return cursor.rowcount == 1


def _claimed(row: tuple) -> ClaimedItem:
    return ClaimedItem(
        id=row[0], ordinal=row[1], input_uri=row[2], output_uri=row[3], size=row[4], range_start=row[5], range_end=row[6],
        payload_attempts={} if row[7] == "{}" else {int(index): count for index, count in orjson.loads(row[7]).items()},
        instance_losses=row[8], shard=row[9], shards=row[10],
    )


def _record(row: tuple) -> WorkItemRecord:
    return WorkItemRecord(
        id=row[0],
        job_name=row[1],
        ordinal=row[2],
        input_uri=row[3],
        output_uri=row[4],
        relative_name=row[5],
        size=row[6],
        range_start=row[7],
        range_end=row[8],
        state=row[9],
        owner=row[10],
        lease_expires=from_epoch(row[11]),
        attempts=row[12],
        records=row[13],
        bytes_in=row[14],
        bytes_out=row[15],
        failure_reason=row[16],
        started_at=from_epoch(row[17]),
        finished_at=from_epoch(row[18]),
        payload_attempts={int(index): count for index, count in orjson.loads(row[19]).items()},
        instance_losses=row[20],
        failed_records=orjson.loads(row[21]),
        shard=row[22],
        shards=row[23],
    )
