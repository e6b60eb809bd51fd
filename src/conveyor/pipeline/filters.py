"""Applying a parsed filter (`conveyor.sagemaker.jsonpath`) to one record.

A path is compiled once per job into a plan of closures, so the per-record cost is the selection
itself. CSV rows are lists of field bytes (`csv_fields.split_row`); JSON records are values parsed
by orjson. Selection follows Jayway JsonPath, which SageMaker's documentation links to:

- one name or one index (`$.id`, `$[0]`) yields that value;
- a list of indexes, a slice or `*` yields a list (`*` on an object: its values);
- a list of names (`$['id','SageMakerOutput']`) yields an object with those keys, in the order
  written; a key the record lacks is left out, as Jayway does;
- later steps apply to each selected value.

Indexes outside the record are an error (docs/data-processing.md); slices, whose ends include the element named,
take what the record has, as Python slices do.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Callable, Sequence

from conveyor.sagemaker.jsonpath import Index, JsonPath, Name, Names, Select, Slice, Step, Wildcard

CsvSelector = Callable[[list[bytes]], Sequence[bytes]]
JsonSelector = Callable[[Any], Any]


class FilterError(ValueError):
    """The record does not have what the filter selects; the message says what is missing."""


# -- text/csv ---------------------------------------------------------------------------------


def compile_csv(path: JsonPath) -> CsvSelector | None:
    """A function from a row's fields to the selected fields; None for `$` (the row as it is).

    `spec.jsonpath` allows one index step on CSV; a path parsed without a content type may have
    more, and is refused here.
    """
    if path.is_root:
        return None
    if len(path.steps) > 1 or isinstance(path.steps[0], (Name, Names)):
        raise FilterError(f"filter {path.expression} selects names or nested values, but a CSV row is a flat array of fields")
    return _array_selector(path.steps[0], "fields")


def _array_selector(step: Step, unit: str) -> Callable[[list[Any]], Sequence[Any]]:
    """Select from a list; the result is always a sequence (one index gives one element)."""
    if isinstance(step, Wildcard):
        return _identity
    if isinstance(step, Index):
        items: tuple[int | Slice, ...] = (step.index,)
    else:
        assert isinstance(step, Select)
        items = step.items
    indexes = [item for item in items if isinstance(item, int)]
    if len(indexes) == len(items):
        getter = itemgetter(*indexes)
        if len(indexes) == 1:

            def select_one(values: list[Any]) -> Sequence[Any]:
                try:
                    return (getter(values),)
                except IndexError:
                    raise FilterError(_out_of_range(indexes, len(values), unit)) from None

            return select_one

        def select_indexes(values: list[Any]) -> Sequence[Any]:
            try:
                return getter(values)
            except IndexError:
                raise FilterError(_out_of_range(indexes, len(values), unit)) from None

        return select_indexes
    if len(items) == 1:
        only = _python_slice(items[0])  # type: ignore[arg-type]
        return lambda values: values[only]
    parts = [item if isinstance(item, int) else _python_slice(item) for item in items]

    def select_mixed(values: list[Any]) -> Sequence[Any]:
        selected: list[Any] = []
        try:
            for part in parts:
                if type(part) is int:
                    selected.append(values[part])
                else:
                    selected.extend(values[part])
        except IndexError:
            raise FilterError(_out_of_range(indexes, len(values), unit)) from None
        return selected

    return select_mixed


def _python_slice(item: Slice) -> slice:
    """`[start:end]` includes `end`; `-1` as an end means through the last element."""
    end = None if item.end is None or item.end == -1 else item.end + 1
    return slice(item.start, end)


def _out_of_range(indexes: list[int], length: int, unit: str) -> str:
    bad = [index for index in indexes if not -length <= index < length]
    which = ", ".join(str(index) for index in bad)
    noun = "index" if len(bad) == 1 else "indexes"
    verb = "is" if len(bad) == 1 else "are"
    return f"{noun} {which} {verb} outside the record, which has {length} {unit}"


def _identity(values: list[Any]) -> list[Any]:
    return values


# -- JSON -------------------------------------------------------------------------------------


def compile_json(path: JsonPath) -> JsonSelector | None:
    """A function from a parsed JSON value to the selected value; None for `$`."""
    if path.is_root:
        return None
    selector: JsonSelector | None = None
    for step in reversed(path.steps):
        selector = _json_step(step, selector)
    return selector


def _json_step(step: Step, rest: JsonSelector | None) -> JsonSelector:
    if isinstance(step, Name):
        return _json_name(step.name, rest)
    if isinstance(step, Names):
        return _json_names(step.names, rest)
    if isinstance(step, Wildcard):
        return _json_wildcard(rest)
    return _json_array(step, rest)


def _json_name(name: str, rest: JsonSelector | None) -> JsonSelector:
    def select(value: Any) -> Any:
        if type(value) is not dict:
            raise FilterError(f"{_quote(name)} names a key, but the value is {_kind(value)}, not an object")
        try:
            child = value[name]
        except KeyError:
            raise FilterError(f"the record has no key {_quote(name)}") from None
        return child if rest is None else rest(child)

    return select


def _json_names(names: tuple[str, ...], rest: JsonSelector | None) -> JsonSelector:
    def select(value: Any) -> Any:
        if type(value) is not dict:
            raise FilterError(f"[{', '.join(map(_quote, names))}] names keys, but the value is {_kind(value)}, not an object")
        if rest is None:
            return {name: value[name] for name in names if name in value}
        return {name: rest(value[name]) for name in names if name in value}

    return select


def _json_wildcard(rest: JsonSelector | None) -> JsonSelector:
    def select(value: Any) -> Any:
        if type(value) is dict:
            children = list(value.values())
        elif type(value) is list:
            children = value
        else:
            raise FilterError(f'"*" selects the values of an object or an array, but the value is {_kind(value)}')
        return children if rest is None else [rest(child) for child in children]

    return select


def _json_array(step: Step, rest: JsonSelector | None) -> JsonSelector:
    selector = _array_selector(step, "elements")
    single = isinstance(step, Index)

    def select(value: Any) -> Any:
        if type(value) is not list:
            raise FilterError(f"{_describe(step)} selects from an array, but the value is {_kind(value)}")
        selected = selector(value)
        if single:
            return selected[0] if rest is None else rest(selected[0])
        return list(selected) if rest is None else [rest(child) for child in selected]

    return select


def _describe(step: Step) -> str:
    if isinstance(step, Index):
        return f"[{step.index}]"
    assert isinstance(step, Select)
    parts = [str(item) if isinstance(item, int) else f"{'' if item.start is None else item.start}:{'' if item.end is None else item.end}" for item in step.items]
    return f"[{','.join(parts)}]"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _quote(name: str) -> str:
    return f"'{name}'"


__all__ = ["CsvSelector", "FilterError", "JsonSelector", "compile_csv", "compile_json"]
