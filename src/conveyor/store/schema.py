"""The schema, as an ordered list of migrations: add a step at the end, never edit a shipped one.

The SQL is portable between SQLite and PostgreSQL except where noted: `INTEGER PRIMARY KEY`
(PostgreSQL: `BIGINT GENERATED ALWAYS AS IDENTITY`) and text ordering (PostgreSQL wants
`COLLATE "C"` on names to sort by code point as SQLite does). Times are epoch seconds (REAL),
log times epoch milliseconds (INTEGER), JSON documents TEXT.
"""

from __future__ import annotations

from conveyor.store.database import Migration

INITIAL = Migration(
    version=1,
    name="models, transform jobs, tags, work items, logs",
    statements=(
        """CREATE TABLE models (
            name TEXT PRIMARY KEY,
            arn TEXT NOT NULL UNIQUE,
            request TEXT NOT NULL,
            creation_time REAL NOT NULL
        )""",
        "CREATE INDEX models_by_creation ON models (creation_time, name)",
        # model_name is not a foreign key: a model may be deleted while its jobs are kept.
        """CREATE TABLE transform_jobs (
            name TEXT PRIMARY KEY,
            arn TEXT NOT NULL UNIQUE,
            model_name TEXT NOT NULL,
            request TEXT NOT NULL,
            status TEXT NOT NULL,
            failure_reason TEXT,
            creation_time REAL NOT NULL,
            last_modified_time REAL NOT NULL,
            transform_start_time REAL,
            transform_end_time REAL,
            execution_parameters TEXT,
            owner TEXT,
            lease_expires REAL
        )""",
        # One index per keyset sort order (ListTransformJobs SortBy), each ending in the name
        # so that the page boundary is a unique key; Name sorts on the primary key.
        "CREATE INDEX transform_jobs_by_creation ON transform_jobs (creation_time, name)",
        "CREATE INDEX transform_jobs_by_status ON transform_jobs (status, creation_time, name)",
        "CREATE INDEX transform_jobs_by_modified ON transform_jobs (last_modified_time)",
        """CREATE TABLE tags (
            resource_arn TEXT NOT NULL,
            tag_key TEXT NOT NULL,
            tag_value TEXT NOT NULL,
            PRIMARY KEY (resource_arn, tag_key)
        )""",
        """CREATE TABLE work_items (
            id INTEGER PRIMARY KEY,
            job_name TEXT NOT NULL REFERENCES transform_jobs (name),
            ordinal INTEGER NOT NULL,
            input_uri TEXT NOT NULL,
            output_uri TEXT NOT NULL,
            relative_name TEXT NOT NULL,
            size INTEGER NOT NULL,
            range_start INTEGER,
            range_end INTEGER,
            state TEXT NOT NULL,
            owner TEXT,
            lease_expires REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            records INTEGER NOT NULL DEFAULT 0,
            bytes_in INTEGER NOT NULL DEFAULT 0,
            bytes_out INTEGER NOT NULL DEFAULT 0,
            failure_reason TEXT,
            started_at REAL,
            finished_at REAL,
            UNIQUE (job_name, ordinal)
        )""",
        "CREATE INDEX work_items_by_state ON work_items (job_name, state, ordinal)",
        "CREATE INDEX work_items_by_lease ON work_items (state, lease_expires)",
        """CREATE TABLE log_streams (
            stream_name TEXT PRIMARY KEY,
            job_name TEXT NOT NULL,
            creation_time INTEGER NOT NULL,
            first_event_time INTEGER NOT NULL,
            last_event_time INTEGER NOT NULL,
            last_ingestion_time INTEGER NOT NULL,
            stored_bytes INTEGER NOT NULL
        )""",
        "CREATE INDEX log_streams_by_job ON log_streams (job_name, stream_name)",
        """CREATE TABLE log_events (
            id INTEGER PRIMARY KEY,
            stream_name TEXT NOT NULL,
            job_name TEXT NOT NULL,
            event_time INTEGER NOT NULL,
            ingestion_time INTEGER NOT NULL,
            message TEXT NOT NULL
        )""",
        "CREATE INDEX log_events_by_stream ON log_events (stream_name, event_time, id)",
        "CREATE INDEX log_events_by_job ON log_events (job_name, event_time, id)",
    ),
)

ATTEMPTS = Migration(
    version=2,
    name="work items keep the attempts their earlier runs spent",
    statements=(
        # JSON object: payload index → invocations spent on it by runs that timed out.
        "ALTER TABLE work_items ADD COLUMN payload_attempts TEXT NOT NULL DEFAULT '{}'",
        # How many instances died (not by a timeout) while transforming the item.
        "ALTER TABLE work_items ADD COLUMN instance_losses INTEGER NOT NULL DEFAULT 0",
    ),
)

FAILED_RECORDS = Migration(
    version=3,
    name="work items keep the records that failed in a job that tolerates them",
    statements=(
        # JSON array of {record, offset, error, attempts}: the item's lines of the errors manifest.
        "ALTER TABLE work_items ADD COLUMN failed_records TEXT NOT NULL DEFAULT '[]'",
    ),
)

FIGURES = Migration(
    version=4,
    name="transform jobs keep their run's records per second and model busy fraction",
    statements=(
        # Over a recent window while the job runs, over its whole run once it ended (engine.figures).
        "ALTER TABLE transform_jobs ADD COLUMN records_per_second REAL",
        "ALTER TABLE transform_jobs ADD COLUMN model_busy_fraction REAL",
    ),
)

SHARDS = Migration(
    version=5,
    name="work items may be byte-range shards of one object",
    statements=(
        # The item's place among its object's shards, and how many there are (1: the whole object).
        # A shard's ordinal is its first shard's plus `shard`, so `ordinal - shard` names the object.
        "ALTER TABLE work_items ADD COLUMN shard INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE work_items ADD COLUMN shards INTEGER NOT NULL DEFAULT 1",
    ),
)

LISTED_WHILE_RUNNING = Migration(
    version=6,
    name="transform jobs whose inputs are listed while they run",
    statements=(
        # 0 while the job's work items are still being listed (docs/semantics.md, "Listing"); the
        # jobs of earlier versions were listed whole when created.
        "ALTER TABLE transform_jobs ADD COLUMN inputs_listed INTEGER NOT NULL DEFAULT 1",
    ),
)

LEASES_BY_JOB = Migration(
    version=7,
    name="expired leases are found through their job's items",
    statements=(
        # Leases are reclaimed one job at a time, through work_items_by_state; this index cost
        # every claim, renewal and completion two more index writes (a fifth of the server's CPU
        # for a job of many small objects).
        "DROP INDEX work_items_by_lease",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (INITIAL, ATTEMPTS, FAILED_RECORDS, FIGURES, SHARDS, LISTED_WHILE_RUNNING, LEASES_BY_JOB)
