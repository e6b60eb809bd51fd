"""The connection layer: pragmas, per-thread connections, transactions and schema migrations."""

from __future__ import annotations

import gc
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.store import MIGRATIONS, Migration, SchemaError, Store
from conveyor.store.database import from_epoch, to_epoch

SHIPPED = [migration.version for migration in MIGRATIONS]
NEXT = SHIPPED[-1] + 1  # a step added after every shipped one
ADD_NOTES = Migration(
    version=NEXT,
    name="notes on jobs",
    statements=(
        "ALTER TABLE transform_jobs ADD COLUMN notes TEXT",
        "CREATE TABLE job_notes (job_name TEXT NOT NULL, note TEXT NOT NULL)",
    ),
)


def test_opening_configures_wal_and_applies_the_schema(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        assert store.applied_migrations == SHIPPED
        connection = store.database.connection()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        versions = connection.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert versions == [(migration.version, migration.name) for migration in MIGRATIONS]


def test_opening_an_up_to_date_store_writes_nothing(tmp_path):
    path = tmp_path / "conveyor.db"
    Store(path).close()
    with Store(path) as store:
        assert store.applied_migrations == []
        assert store.database.connection().total_changes == 0


def test_a_store_migrates_forward_when_a_step_is_added(tmp_path):
    path = tmp_path / "conveyor.db"
    with Store(path) as store:
        store.jobs.create("job", "arn:job", "model", {}, datetime.now(timezone.utc))
    with Store(path, migrations=(*MIGRATIONS, ADD_NOTES)) as store:
        assert store.applied_migrations == [NEXT]
        connection = store.database.connection()
        connection.execute("UPDATE transform_jobs SET notes = 'kept' WHERE name = 'job'")
        assert connection.execute("SELECT notes FROM transform_jobs").fetchone() == ("kept",)
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert versions == [(version,) for version in (*SHIPPED, NEXT)]
        assert store.jobs.get("job") is not None
    with Store(path, migrations=(*MIGRATIONS, ADD_NOTES)) as store:
        assert store.applied_migrations == []


def test_a_failing_step_leaves_the_store_at_its_old_version(tmp_path):
    path = tmp_path / "conveyor.db"
    Store(path).close()
    broken = Migration(NEXT, "broken", ("CREATE TABLE fine (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        Store(path, migrations=(*MIGRATIONS, broken))
    with Store(path) as store:
        connection = store.database.connection()
        assert [row[0] for row in connection.execute("SELECT version FROM schema_migrations")] == SHIPPED
        assert connection.execute("SELECT name FROM sqlite_master WHERE name = 'fine'").fetchone() is None


def test_a_store_written_by_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "conveyor.db"
    Store(path, migrations=(*MIGRATIONS, ADD_NOTES)).close()
    with pytest.raises(SchemaError, match=rf"\[{NEXT}\]"):
        Store(path)


@pytest.mark.parametrize("versions", [(1, 1), (2, 1), (0,)])
def test_migration_versions_must_increase(tmp_path, versions):
    steps = [Migration(version, f"step {version}", ()) for version in versions]
    with pytest.raises(SchemaError):
        Store(tmp_path / "conveyor.db", migrations=steps)


def test_each_thread_gets_its_own_connection(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        seen = []
        thread = threading.Thread(target=lambda: seen.append(store.database.connection()))
        thread.start()
        thread.join()
        assert seen[0] is not store.database.connection()
        assert store.database.connection() is store.database.connection()


def test_a_failed_transaction_changes_nothing(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        with pytest.raises(RuntimeError):
            with store.database.transaction() as connection:
                connection.execute("INSERT INTO tags VALUES ('arn', 'k', 'v')")
                raise RuntimeError("boom")
        assert store.tags.list("arn") == {}


def test_in_memory_databases_are_refused():
    with pytest.raises(ValueError, match="in-memory"):
        Store(":memory:")


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        to_epoch(datetime(2024, 1, 1))


@settings(max_examples=200)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
def test_timestamps_round_trip_to_the_microsecond(moment):
    assert from_epoch(to_epoch(moment)) == moment


def test_timestamps_come_back_in_utc():
    moment = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    back = from_epoch(to_epoch(moment))
    assert back == moment and back.tzinfo is timezone.utc and back.hour == 10


def test_a_finished_threads_connection_is_closed_with_it(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        def use() -> None:
            store.jobs.get("job")

        for _ in range(5):
            thread = threading.Thread(target=use)
            thread.start()
            thread.join()
        gc.collect()
        assert len(store.database._connections) == 1  # only this thread's
