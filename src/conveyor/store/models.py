"""Models: the CreateModel request as given, kept under its name for jobs to use."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from conveyor.store.database import Database, from_epoch, from_json, to_epoch, to_json
from conveyor.store.errors import AlreadyExists
from conveyor.store.pagination import Page, Where, keyset_page
from conveyor.store.tags import delete_all_tags, write_tags

MODEL_SORT_KEYS = {"Name": ("name",), "CreationTime": ("creation_time", "name")}


@dataclass(frozen=True)
class ModelRecord:
    name: str
    arn: str
    request: dict[str, Any]
    """The CreateModel request body, as accepted (DescribeModel echoes it)."""
    creation_time: datetime


@dataclass(frozen=True)
class ModelSummary:
    """What ListModels returns per model."""

    name: str
    arn: str
    creation_time: datetime


class Models:
    def __init__(self, database: Database) -> None:
        self._database = database

    def create(
        self,
        name: str,
        arn: str,
        request: Mapping[str, Any],
        creation_time: datetime,
        tags: Mapping[str, str] | None = None,
    ) -> ModelRecord:
        """Store a new model (and its tags, in the same transaction).

        Raises AlreadyExists (carrying the ARN, for SageMaker's "Cannot create already
        existing model "<arn>"." message) when the name is taken.
        """
        try:
            with self._database.transaction() as connection:
                connection.execute(
                    "INSERT INTO models (name, arn, request, creation_time) VALUES (?, ?, ?, ?)",
                    (name, arn, to_json(dict(request)), to_epoch(creation_time)),
                )
                if tags:
                    write_tags(connection, arn, tags)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("model", name, arn) from exc
        return ModelRecord(name, arn, dict(request), from_epoch(to_epoch(creation_time)))

    def get(self, name: str) -> ModelRecord | None:
        row = self._database.execute(
            "SELECT name, arn, request, creation_time FROM models WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        return ModelRecord(row[0], row[1], from_json(row[2]), from_epoch(row[3]))

    def delete(self, name: str) -> bool:
        """Delete the model and its tags; False when there was no such model."""
        with self._database.transaction() as connection:
            row = connection.execute("SELECT arn FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            connection.execute("DELETE FROM models WHERE name = ?", (name,))
            delete_all_tags(connection, row[0])
        return True

    def list(
        self,
        *,
        name_contains: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> Page[ModelSummary]:
        """ListModels: case-insensitive NameContains, exclusive time bounds, keyset pages."""
        if sort_by not in MODEL_SORT_KEYS:
            raise ValueError(f"sort_by must be one of {sorted(MODEL_SORT_KEYS)}, got {sort_by!r}")
        where = (
            Where()
            .contains_ignoring_case("name", name_contains)
            .after("creation_time", to_epoch(creation_time_after))
            .before("creation_time", to_epoch(creation_time_before))
        )
        key = MODEL_SORT_KEYS[sort_by]
        rows, token = keyset_page(
            self._database.connection(),
            select="SELECT arn, creation_time, name FROM models",  # ends in every sort key
            where=where,
            sort_label=f"models/{sort_by}",
            key_columns=key,
            sort_order=sort_order,
            max_results=max_results,
            next_token=next_token,
        )
        return Page([ModelSummary(row[2], row[0], from_epoch(row[1])) for row in rows], token)
