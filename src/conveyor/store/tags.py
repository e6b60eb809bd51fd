"""Tags per resource ARN (jobs and models), for AddTags / ListTags / DeleteTags and create-time Tags."""

from __future__ import annotations

import sqlite3
from typing import Iterable, Mapping

from conveyor.store.database import Database


class Tags:
    """Key/value tags keyed by ARN; adding an existing key overwrites its value."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, resource_arn: str, tags: Mapping[str, str]) -> None:
        with self._database.transaction() as connection:
            write_tags(connection, resource_arn, tags)

    def list(self, resource_arn: str) -> dict[str, str]:
        """The resource's tags, ordered by key."""
        rows = self._database.execute(
            "SELECT tag_key, tag_value FROM tags WHERE resource_arn = ? ORDER BY tag_key", (resource_arn,)
        ).fetchall()
        return dict(rows)

    def delete(self, resource_arn: str, keys: Iterable[str]) -> None:
        """Remove the named keys; keys the resource does not have are ignored, as AWS does."""
        with self._database.transaction() as connection:
            connection.executemany(
                "DELETE FROM tags WHERE resource_arn = ? AND tag_key = ?",
                [(resource_arn, key) for key in keys],
            )


def write_tags(connection: sqlite3.Connection, resource_arn: str, tags: Mapping[str, str]) -> None:
    """Upsert tags inside the caller's transaction (used by the creates, so a resource and its
    tags appear together)."""
    connection.executemany(
        "INSERT INTO tags (resource_arn, tag_key, tag_value) VALUES (?, ?, ?)"
        " ON CONFLICT (resource_arn, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
        [(resource_arn, key, value) for key, value in tags.items()],
    )


def delete_all_tags(connection: sqlite3.Connection, resource_arn: str) -> None:
    connection.execute("DELETE FROM tags WHERE resource_arn = ?", (resource_arn,))
