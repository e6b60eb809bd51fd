"""Durable state for the server: models, transform jobs, tags, work items, progress and logs.

SQLite in WAL mode through the standard library; safe to use from several threads (one
connection each) and several processes (write transactions are `BEGIN IMMEDIATE`, claims are
single guarded UPDATEs). Knows nothing of HTTP, the engine or the pipeline.

    store = Store(settings.home / "conveyor.db")
    store.jobs.create(name, arn, model_name, request, creation_time)
    item = store.work_items.claim(name, owner="instance-1", lease_seconds=60)
"""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Sequence

from conveyor.store.database import Clock, Database, Migration
from conveyor.store.errors import (
    AlreadyExists,
    IllegalTransition,
    InvalidToken,
    NotFound,
    SchemaError,
    StoreError,
    UnreadableDatabase,
)
from conveyor.store.jobs import (
    ACTIVE,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    STATUSES,
    STOPPED,
    STOPPING,
    TERMINAL,
    TRANSITIONS,
    TransformJobRecord,
    TransformJobs,
    TransformJobSummary,
)
from conveyor.store.logs import LogEvent, LogEventsPage, Logs, LogStream
from conveyor.store.models import ModelRecord, Models, ModelSummary
from conveyor.store.pagination import Page
from conveyor.store.progress import Progress, job_progress, jobs_progress
from conveyor.store.schema import MIGRATIONS
from conveyor.store.tags import Tags
from conveyor.store.work_items import NewWorkItem, WorkItemCounts, WorkItemRecord, WorkItems

__all__ = [
    "ACTIVE", "COMPLETED", "FAILED", "IN_PROGRESS", "STATUSES", "STOPPED", "STOPPING", "TERMINAL", "TRANSITIONS",
    "AlreadyExists", "IllegalTransition", "InvalidToken", "NotFound", "SchemaError", "StoreError",
    "UnreadableDatabase",
    "LogEvent", "LogEventsPage", "LogStream", "Logs", "Migration", "MIGRATIONS", "ModelRecord", "ModelSummary",
    "Models", "NewWorkItem", "Page", "Progress", "Store", "Tags", "TransformJobRecord", "TransformJobSummary",
    "TransformJobs", "WorkItemCounts", "WorkItemRecord", "WorkItems",
]


class Store:
    """The store opened for this process: one repository per concept, sharing one database.

    `clock` (epoch seconds) stamps leases, last-modified, start/end and ingestion times; tests
    pass a fake one. `migrations` is the schema history; tests pass their own to check upgrades.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        self.database = Database(path, migrations, clock=clock, busy_timeout_seconds=busy_timeout_seconds)
        self.models = Models(self.database)
        self.jobs = TransformJobs(self.database)
        self.tags = Tags(self.database)
        self.work_items = WorkItems(self.database)
        self.logs = Logs(self.database)

    @property
    def applied_migrations(self) -> list[int]:
        """The schema versions this open applied (empty when the file was up to date)."""
        return self.database.applied_migrations

    def job_progress(self, job_name: str) -> Progress:
        """Counters for the job derived from its work items; NotFound for an unknown job."""
        return job_progress(self.database.connection(), job_name)

    def jobs_progress(self, job_names: Sequence[str]) -> dict[str, Progress]:
        """Counters for each named job that exists, in one query (a page of the console's list)."""
        return jobs_progress(self.database.connection(), job_names)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
