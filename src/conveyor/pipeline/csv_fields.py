"""RFC 4180 fields of one CSV row, as the bytes they were written with (docs/semantics.md, decision 18).

Filters and joins on `text/csv` move fields around without reading them: `"7"` stays `"7"`,
`1.50` stays `1.50`, and `b",".join(split_row(row)) == row` for every well-formed row. A row
without quotes is split by `bytes.split`; only rows with quotes go through the regular expression.
"""

from __future__ import annotations

import re

# Each field with the comma before it, on `b"," + row`: a quoted field ("" escapes a quote), an
# unquoted one (which may hold a stray quote after its first byte, as Python's csv module
# tolerates), or an empty one.
_FIELD = re.compile(rb',("[^"]*(?:""[^"]*)*"|[^",][^,]*|)')
_QUOTED_FIELD = re.compile(rb'"[^"]*(?:""[^"]*)*"')


class MalformedRow(ValueError):
    """A quoted field that never closes, or bytes after a closing quote; the message says where."""


def split_row(row: bytes) -> list[bytes]:
    """The fields of `row` (no line ending), each as its original bytes, quotes included."""
    if b'"' not in row:
        return row.split(b",")
    fields = _FIELD.findall(b"," + row)
    if sum(map(len, fields)) + len(fields) != len(row) + 1:
        raise MalformedRow(_describe_fault(row))
    return fields


def _describe_fault(row: bytes) -> str:
    """Walk the row field by field (slow path, errors only) to say what is wrong and where."""
    position = 0
    while True:
        if row[position : position + 1] == b'"':
            match = _QUOTED_FIELD.match(row, position)
            if match is None:
                return f"malformed CSV: the quoted field starting at byte {position} is not closed"
            end = match.end()
            if end < len(row) and row[end : end + 1] != b",":
                return f"malformed CSV: unexpected {row[end:end + 1]!r} after the closing quote at byte {end - 1} (a quote inside a quoted field is written as \"\")"
        else:
            end = row.find(b",", position)
            if end < 0:
                end = len(row)
        if end >= len(row):
            return "malformed CSV"  # unreachable for rows that findall could not cover
        position = end + 1


__all__ = ["MalformedRow", "split_row"]
