"""SageMaker's JSONPath subset for InputFilter and OutputFilter, parsed at create time.

A bad filter is refused when the job is created, with the position of the fault and what is
allowed for the content type, rather than failing every record at run time. Applying a parsed
path to records is `conveyor.pipeline.filters`' job.

Grammar (docs/data-processing.md, "Filters"; docs/semantics.md, decisions 2 and 3):

    path    := '$' step*
    step    := '.' name | '.' '*' | '.'? '[' list ']'
    list    := '*' | quoted (',' quoted)* | item (',' item)*       (spaces allowed around items)
    item    := int | int? ':' int?                                  (at most one range per list)
    name    := [letters digits _ -]+        quoted := '…' | "…"  (no '.' inside: no nested paths)

Slices include their end: `$[1:4]` selects elements 1, 2, 3 and 4. On `text/csv` a row is a flat
array of fields, so only one index step applies (`$[0]`, `$[1:]`, `$[0,-1]`, `$[*]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.errors import FieldError, ValidationException

CSV = "text/csv"
RULE = "Member must be a JsonPath expression of the subset SageMaker batch transform supports"
ALLOWED_CSV = (
    "$, [n,m] (negative counts from the end), [start:end] (includes its end; either end may be "
    "omitted; one range per bracket list, as in $[0,5:]) and [*], in a single step: a CSV row is "
    "an array of fields, as in $[1:] or $[0,-1]."
)
ALLOWED_JSON = (
    "$ (the record), .name, ['name','name'] (or double quotes), [n,m] "
    "(negative counts from the end), [start:end] (includes its end; either end may be omitted; "
    "one range per bracket list, as in $[0,5:]) and *."
)


@dataclass(frozen=True)
class Name:
    """`.name` or `['name']`: the value under one key."""

    name: str


@dataclass(frozen=True)
class Names:
    """`['a','b']`: an object holding the selected keys."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    """`[n]`: one element (negative counts from the end)."""

    index: int


@dataclass(frozen=True)
class Slice:
    """`[start:end]`, end included; `None` is an omitted end."""

    start: int | None
    end: int | None


@dataclass(frozen=True)
class Select:
    """`[n,m]`, `[a:b]`, `[0,5:]`: a list of the selected elements, in the order written."""

    items: tuple[int | Slice, ...]


@dataclass(frozen=True)
class Wildcard:
    """`*`, `.*` or `[*]`: every element of an array, every value of an object."""


Step = Name | Names | Index | Select | Wildcard


@dataclass(frozen=True)
class JsonPath:
    """A parsed filter. `JsonPath("$[1:]")` parses with the generic grammar; `parse_filter`
    also checks the operators against the content type and words errors for the field."""

    expression: str
    steps: tuple[Step, ...] = field(default=None, compare=False)  # type: ignore[arg-type]  # parsed in __post_init__

    def __post_init__(self) -> None:
        if self.steps is None:
            object.__setattr__(self, "steps", _Parser(self.expression, None, "Filter").parse())

    @property
    def is_root(self) -> bool:
        """`$`: the whole record, nothing to apply."""
        return not self.steps


def parse_filter(expression: str, *, content_type: str | None, field: str) -> JsonPath:
    """Parse an InputFilter/OutputFilter for records of `content_type` (None: any operator).

    Raises ValidationException naming the field, the expression, the position of the fault
    (0-based, as in Python's `re` errors) and what the content type allows.
    """
    steps = _Parser(expression, content_type, field).parse()
    return JsonPath(expression, steps)


def media_type(content_type: str | None) -> str | None:
    """`text/csv; charset=utf-8` → `text/csv`."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


class _Parser:
    def __init__(self, expression: str, content_type: str | None, field_name: str) -> None:
        self.text = expression
        self.content_type = content_type
        self.csv = media_type(content_type) == CSV
        self.field = field_name
        self.pos = 0

    # -- errors -------------------------------------------------------------------------

    def fail(self, problem: str, position: int | None = None) -> ValidationException:
        where = self.pos if position is None else position
        if self.csv:
            allowed = f"Supported operators for {_quote(self.content_type or CSV)} are {ALLOWED_CSV}"
        elif self.content_type:
            allowed = f"Supported operators for {_quote(self.content_type)} are {ALLOWED_JSON}"
        else:
            allowed = f"Supported operators are {ALLOWED_JSON}"
        message = f"Invalid {self.field}: {_quote(self.text)}. {problem} at position {where}. {allowed}"
        path = "dataProcessing." + self.field[:1].lower() + self.field[1:]
        return ValidationException([FieldError(path=path, value=self.text, rule=RULE, message=message)])

    def unexpected(self) -> ValidationException:
        if self.pos >= len(self.text):
            return self.fail("Unexpected end of expression")
        return self.fail(f"Unexpected {_quote(self.text[self.pos])}")

    # -- scanning -----------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.unexpected() if self.peek() else self.fail(f'Expected "{char}" but the expression ends')
        self.pos += 1

    # -- grammar ------------------------------------------------------------------------

    def parse(self) -> tuple[Step, ...]:
        self.skip_spaces()
        if self.peek() != "$":
            raise self.fail('Expected "$" (a filter starts at the record root)' if self.text.strip() else 'Expected "$" in an empty filter')
        self.pos += 1
        steps: list[Step] = []
        while True:
            if self.text[self.pos :].strip(" ") == "":
                return tuple(steps)
            start = self.pos
            char = self.peek()
            if char == ".":
                step = self.dot_step()
            elif char == "[":
                step = self.bracket()
            else:
                raise self.unexpected()
            if self.csv and steps:
                raise self.fail("A CSV row is a flat array of fields, so only one index step applies; a second step starts", start)
            steps.append(step)

    def dot_step(self) -> Step:
        dot = self.pos
        self.pos += 1
        char = self.peek()
        if char == ".":
            raise self.fail('Recursive descent ".." is not supported')
        if char == "[":
            return self.bracket()
        if self.csv:
            raise self.fail(f'The name operator "." does not apply to {_quote(CSV)}', dot)
        if char == "*":
            self.pos += 1
            return Wildcard()
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        if self.pos == start:
            raise self.fail(f"Expected a name after {_quote('.')}" if not char else f"Unexpected {_quote(char)} in a name")
        return Name(self.text[start : self.pos])

    def bracket(self) -> Step:
        self.pos += 1  # '['
        self.skip_spaces()
        char = self.peek()
        if char == "]":
            raise self.fail("Empty brackets")
        if char == "*":
            self.pos += 1
            self.skip_spaces()
            if self.peek() == ",":
                raise self.fail('"*" cannot be combined with other items in a bracket list')
            self.expect("]")
            return Wildcard()
        if char in "'\"":
            return self.names()
        return self.indexes()

    def names(self) -> Step:
        if self.csv:
            raise self.fail(f"Names do not apply to {_quote(CSV)}")
        names: list[str] = []
        while True:
            self.skip_spaces()
            if self.peek() not in ("'", '"'):
                if self.peek() and (self.peek() in "-:*" or self.peek().isdigit()):
                    raise self.fail("Names and indexes cannot be mixed in one bracket list")
                raise self.unexpected()
            names.append(self.quoted())
            self.skip_spaces()
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("]")
            return Name(names[0]) if len(names) == 1 else Names(tuple(names))

    def quoted(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("Unterminated quoted name starting", start)
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in ("\\", quote):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == quote:
                self.pos += 1
                name = "".join(chars)
                if "." in name:
                    raise self.fail(f"Nested path {_quote(name)} in a bracket list (select one level per step)", start)
                return name
            chars.append(char)
            self.pos += 1

    def indexes(self) -> Step:
        items: list[int | Slice] = []
        ranges = 0
        while True:
            self.skip_spaces()
            start = self.pos
            if self.peek() in ("'", '"'):
                raise self.fail("Names and indexes cannot be mixed in one bracket list")
            if self.peek() == "*":
                raise self.fail('"*" cannot be combined with other items in a bracket list')
            first = self.integer()
            self.skip_spaces()
            if self.peek() == ":":
                self.pos += 1
                self.skip_spaces()
                end = self.integer()
                ranges += 1
                if ranges > 1:
                    raise self.fail("Only one range per bracket list is supported (as in $[0,5:]); a second range starts", start)
                if first is not None and end is not None and (first >= 0) == (end >= 0) and first > end:
                    raise self.fail(f"Slice start {first} is after its end {end} (slices include their end)", start)
                items.append(Slice(first, end))
            elif first is None:
                raise self.unexpected() if self.peek() not in (",", "]") else self.fail("Expected an index")
            else:
                items.append(first)
            self.skip_spaces()
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("]")
            if len(items) == 1 and isinstance(items[0], int):
                return Index(items[0])
            return Select(tuple(items))

    def integer(self) -> int | None:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        digits = self.pos
        while self.peek().isdigit() and self.peek().isascii():
            self.pos += 1
        if self.pos == digits:
            if self.pos > start:
                raise self.fail('Expected digits after "-"')
            return None
        return int(self.text[start : self.pos])


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "_-"


def _quote(text: str) -> str:
    return f'"{text}"'


__all__ = ["Index", "JsonPath", "Name", "Names", "Select", "Slice", "Step", "Wildcard", "media_type", "parse_filter"]
