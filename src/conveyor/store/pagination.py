"""Keyset pagination for the List operations: filters, sort keys and opaque NextTokens.

A token holds the sort key of the last row handed out (ending in the unique name), so the next
page starts strictly after it: rows inserted meanwhile never shift a page, unlike OFFSET, and a
page costs an index seek however deep the listing goes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

import orjson

from conveyor.store.errors import InvalidToken

T = TypeVar("T")

SORT_ORDERS = ("Ascending", "Descending")
MAX_PAGE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_token` is None on the last page."""

    items: list[T]
    next_token: str | None = None


class Where:
    """An AND of conditions with their parameters, built up by the List operations."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.parameters: list[Any] = []

    def add(self, condition: str, *parameters: Any) -> "Where":
        self.conditions.append(condition)
        self.parameters.extend(parameters)
        return self

    def contains_ignoring_case(self, column: str, text: str | None) -> "Where":
        """NameContains: a case-insensitive substring (docs/semantics.md, decision 12), as portable LIKE."""
        if text:
            escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            self.add(f"LOWER({column}) LIKE ? ESCAPE '\\'", f"%{escaped}%")
        return self

    def after(self, column: str, value: Any) -> "Where":
        """An exclusive lower bound (docs/semantics.md, decision 12), skipped when the bound is not given."""
        if value is not None:
            self.add(f"{column} > ?", value)
        return self

    def before(self, column: str, value: Any) -> "Where":
        """An exclusive upper bound, skipped when the bound is not given."""
        if value is not None:
            self.add(f"{column} < ?", value)
        return self

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


def keyset_page(
    connection: Any,
    *,
    select: str,
    where: Where,
    sort_label: str,
    key_columns: Sequence[str],
    sort_order: str,
    max_results: int,
    next_token: str | None,
    max_page: int = MAX_PAGE,
    max_bytes: int | None = None,
    size_of: Callable[[tuple], int] = lambda row: 0,
) -> tuple[list[tuple], str | None]:
    """Run one page of `select` (a `SELECT … FROM …` without WHERE) ordered by `key_columns`.

    The key columns must be the last len(key_columns) columns selected, and end in a unique one.
    Returns the rows (key columns included) and the token for the next page, if any. With
    `max_bytes`, the page also ends before its rows' `size_of` passes it (one row at least), and
    rows are fetched one by one, so a page of large rows is never held whole.
    """
    if sort_order not in SORT_ORDERS:
        raise ValueError(f"sort order must be one of {SORT_ORDERS}, got {sort_order!r}")
    if not 1 <= max_results <= max_page:
        raise ValueError(f"max_results must be 1 to {max_page}, got {max_results}")
    descending = sort_order == "Descending"
    direction = " DESC" if descending else ""
    conditions = Where()
    conditions.conditions.extend(where.conditions)
    conditions.parameters.extend(where.parameters)
    if next_token is not None:
        last = decode_token(next_token, sort_label, len(key_columns))
        row = ", ".join(key_columns)
        marks = ", ".join("?" for _ in key_columns)
        conditions.add(f"({row}) {'<' if descending else '>'} ({marks})", *last)
    order = ", ".join(column + direction for column in key_columns)
    sql = f"{select}{conditions.sql()} ORDER BY {order} LIMIT ?"
    cursor = connection.execute(sql, (*conditions.parameters, max_results + 1))
    rows: list[tuple] = []
    size = 0
    for row in cursor:
        size += size_of(row)
        if len(rows) == max_results or (max_bytes is not None and rows and size > max_bytes):
            cursor.close()
            return rows, encode_token(sort_label, rows[-1][-len(key_columns):])
        rows.append(row)
    return rows, None


def encode_token(sort_label: str, key: Sequence[Any]) -> str:
    """Base64 of the sort it belongs to and the last row's key (floats round-trip exactly)."""
    return base64.urlsafe_b64encode(orjson.dumps([sort_label, *key])).decode()


def decode_token(token: str, sort_label: str, length: int) -> list[Any]:
    """The key a token carries; refuses tokens from another sort or not made here."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken(f"invalid pagination token {token!r}") from exc
    if not isinstance(decoded, list) or len(decoded) != length + 1 or decoded[0] != sort_label:
        raise InvalidToken(f"invalid pagination token {token!r} for sort {sort_label}")
    key = decoded[1:]
    if not all(isinstance(value, (str, int, float)) and not isinstance(value, bool) for value in key):
        raise InvalidToken(f"invalid pagination token {token!r}")
    return key
