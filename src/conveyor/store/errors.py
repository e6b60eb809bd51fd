"""The store's own exceptions: facts about stored state, worded for the service to translate.

The store knows no AWS error codes; `service` maps these (AlreadyExists on a model →
`ValidationException` "Cannot create already existing model …", on a job → `ResourceInUse`).
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class AlreadyExists(StoreError):
    """A create named a resource that is already stored."""

    def __init__(self, kind: str, name: str, arn: str | None = None) -> None:
        super().__init__(f"{kind} {name!r} already exists")
        self.kind = kind
        self.name = name
        self.arn = arn


class NotFound(StoreError):
    """A change named a resource that is not stored (getters return None instead)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name!r} not found")
        self.kind = kind
        self.name = name


class IllegalTransition(StoreError):
    """A status change the status machine forbids; carries the current status for the message."""

    def __init__(self, name: str, current: str, requested: str) -> None:
        super().__init__(f"transform job {name!r} cannot go from {current} to {requested}")
        self.name = name
        self.current = current
        self.requested = requested


class InvalidToken(StoreError):
    """A NextToken or log position token that this store did not issue (or issued for another sort)."""


class SchemaError(StoreError):
    """The database was written by a newer Conveyor, or the migration list is malformed."""


class StateDiskFull(StoreError):
    """SQLite could not write the database: the filesystem holding the state directory is full.
    Reads still work; writes fail until space is freed."""

    def __init__(self, path: str, sqlite_message: str) -> None:
        super().__init__(
            f"the disk holding the state directory is full: SQLite cannot write {path} ({sqlite_message!r}); "
            "free space on that filesystem (CONVEYOR_HOME)"
        )
        self.path = path


class UnreadableDatabase(StoreError):
    """The database file is not one SQLite can open (corrupt, or another kind of file)."""

    def __init__(self, path: str, sqlite_message: str) -> None:
        super().__init__(
            f"the database {path} cannot be opened: SQLite says {sqlite_message!r}. Stop every server using it, "
            "then restore it from a backup (README, 'Back up'), or move it aside to start with an empty store "
            "(its jobs and models are then forgotten)"
        )
        self.path = path
