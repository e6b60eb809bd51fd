"""The SQLite connection layer: one connection per thread, WAL, transactions, schema migrations.

Everything SQLite-specific about *connecting* lives here (pragmas, `BEGIN IMMEDIATE`); the SQL in
the other modules is kept portable so that a PostgreSQL store can follow. Timestamps are stored
as epoch seconds (REAL) and handed out as timezone-aware UTC datetimes; JSON documents as TEXT.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, overload

import orjson

from conveyor.store.errors import SchemaError, StateDiskFull, UnreadableDatabase

Clock = Callable[[], float]


@dataclass(frozen=True)
class Migration:
    """One schema step; applied once, in version order, inside one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


class Database:
    """A store file opened for this process: hands each thread its own connection.

    SQLite connections must not be shared between threads mid-transaction, and a forked child
    must not reuse its parent's connection, so connections are per (thread, process). Opening
    applies the migrations that are missing; opening an up-to-date file writes nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        migrations: Sequence[Migration],
        *,
        clock: Clock = time.time,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        self.path = str(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError("the store needs a file: an in-memory database is private to one connection")
        Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created private before SQLite opens it; SQLite gives the WAL and shared-memory files
        # the database file's permissions.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self.clock = clock
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._inherited: list[_Connection] = []
        try:
            self.applied_migrations = migrate(self.connection(), migrations)
        except sqlite3.DatabaseError as error:
            if getattr(error, "sqlite_errorname", None) not in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise
            self.close()
            raise UnreadableDatabase(self.path, str(error)) from None

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        inherited: _Connection | None = getattr(self._local, "connection", None)
        if inherited is not None:
            if inherited.pid == os.getpid():
                return inherited
            # Opened by the parent before a fork: keep it referenced and never use or close
            # it here, so that this process does not tear down the parent's SQLite state.
            self._inherited.append(inherited)
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_seconds,
            isolation_level=None,  # autocommit; transactions are explicit (see `transaction`)
            check_same_thread=False,  # only so that `close` may close it from another thread
            factory=_Connection,
        )
        connection.pid = os.getpid()
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        self._local.connection = connection
        with self._lock:
            self._connections.add(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (`BEGIN IMMEDIATE`), so read-then-write is atomic
        across threads and processes; nested use joins the outer transaction."""
        connection = self.connection()
        if connection.in_transaction:
            yield connection
            return
        try:
            with _immediate(connection):
                yield connection
        except sqlite3.OperationalError as error:
            raise self._translated(error) from None

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement on this thread's connection (atomic by itself in autocommit mode)."""
        try:
            return self.connection().execute(sql, parameters)
        except sqlite3.OperationalError as error:
            raise self._translated(error) from None

    def _translated(self, error: sqlite3.OperationalError) -> Exception:
        """A full disk as StateDiskFull, naming the file; any other error as it is."""
        if getattr(error, "sqlite_errorname", None) == "SQLITE_FULL":
            return StateDiskFull(self.path, str(error))
        return error

    def now(self) -> float:
        return self.clock()

    def close(self) -> None:
        """Close every connection this process opened through this object, from any thread
        (a forked child leaves its parent's connections alone)."""
        with self._lock:
            connections, self._connections = list(self._connections), weakref.WeakSet()
        for connection in connections:
            if connection.pid == os.getpid():
                connection.close()
        self._local = threading.local()


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (so a finished thread's connection is closed
    when its thread-local goes) and knows the process that opened it."""

    pid: int


def migrate(connection: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied (empty when up to date)."""
    versions = [migration.version for migration in migrations]
    if any(version < 1 for version in versions) or versions != sorted(set(versions)):
        raise SchemaError(f"migration versions must be positive and strictly increasing, got {versions}")
    known = set(versions)
    applied = _applied_versions(connection)
    if applied is not None and known <= applied:
        _refuse_newer(applied, known)
        return []
    with _immediate(connection):
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        applied = _applied_versions(connection) or set()
        _refuse_newer(applied, known)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            done.append(migration.version)
    return done


def _applied_versions(connection: sqlite3.Connection) -> set[int] | None:
    try:
        rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
    except sqlite3.OperationalError:  # no such table: a new store
        return None
    return {row[0] for row in rows}


def _refuse_newer(applied: set[int], known: set[int]) -> None:
    unknown = sorted(applied - known)
    if unknown:
        raise SchemaError(
            f"the store has schema versions {unknown} that this Conveyor does not know; "
            "it was written by a newer version"
        )


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # SQLite rolls back by itself after some errors
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@overload
def to_epoch(moment: datetime) -> float: ...
@overload
def to_epoch(moment: None) -> None: ...
def to_epoch(moment: datetime | None) -> float | None:
    """A timezone-aware datetime as epoch seconds; naive datetimes are refused (no guessed zone)."""
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: the store takes timezone-aware datetimes")
    return moment.timestamp()


@overload
def from_epoch(seconds: float) -> datetime: ...
@overload
def from_epoch(seconds: None) -> None: ...
def from_epoch(seconds: float | None) -> datetime | None:
    """Epoch seconds as a timezone-aware UTC datetime."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def to_json(document: Any) -> str | None:
    if document is None:
        return None
    return orjson.dumps(document).decode()


def from_json(text: str | None) -> Any:
    if text is None:
        return None
    return orjson.loads(text)
