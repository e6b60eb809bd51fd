"""Applying parsed filters: CSV fields as their original bytes, JSON values as Jayway selects them."""

from __future__ import annotations

import pytest

from conveyor.pipeline.csv_fields import MalformedRow, split_row
from conveyor.pipeline.filters import FilterError, compile_csv, compile_json
from conveyor.sagemaker.jsonpath import JsonPath, parse_filter


def csv_select(expression: str, row: bytes) -> bytes:
    select = compile_csv(parse_filter(expression, content_type="text/csv", field="InputFilter"))
    fields = split_row(row)
    return b",".join(fields if select is None else select(fields))


def json_select(expression: str, value: object) -> object:
    select = compile_json(parse_filter(expression, content_type="application/json", field="InputFilter"))
    return value if select is None else select(value)


# -- splitting rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "fields"),
    [
        (b"a,b,c", [b"a", b"b", b"c"]),
        (b"", [b""]),
        (b",", [b"", b""]),
        (b'1,"7",1.50', [b"1", b'"7"', b"1.50"]),
        (b'"a,b","say ""hi""",', [b'"a,b"', b'"say ""hi"""', b""]),
        (b'"",x', [b'""', b"x"]),
        (b'""""', [b'""""']),
        (b'5" screen,x', [b'5" screen', b"x"]),  # a stray quote inside an unquoted field, as csv tolerates
        (b' "a" ,b', [b' "a" ', b"b"]),
    ],
)
def test_split_row_keeps_each_field_byte_for_byte(row: bytes, fields: list[bytes]) -> None:
    assert split_row(row) == fields
    assert b",".join(split_row(row)) == row


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (b'1,"abc', "the quoted field starting at byte 2 is not closed"),
        (b'"a"b,c', "unexpected b'b' after the closing quote at byte 2"),
        (b'x,"a""b"c', "unexpected b'c' after the closing quote at byte 7"),
    ],
)
def test_malformed_rows_are_refused_with_the_place(row: bytes, problem: str) -> None:
    with pytest.raises(MalformedRow, match="malformed CSV") as caught:
        split_row(row)
    assert problem in str(caught.value)


# -- CSV selection ----------------------------------------------------------------------------

ROW = b"c0,c1,c2,c3,c4,c5,c6,c7"


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("$", ROW),
        ("$[0]", b"c0"),
        ("$[-1]", b"c7"),
        ("$[1,3,5]", b"c1,c3,c5"),
        ("$[0,-1]", b"c0,c7"),
        ("$[1:4]", b"c1,c2,c3,c4"),  # the DG: "$[1:4]" is the 2nd to the 5th column, end included
        ("$[:5]", b"c0,c1,c2,c3,c4,c5"),  # the DG: columns 0 to 5
        ("$[5:]", b"c5,c6,c7"),  # the DG: the 6th column to the last
        ("$[1:]", b"c1,c2,c3,c4,c5,c6,c7"),
        ("$[-3:-2]", b"c5,c6"),
        ("$[-2:]", b"c6,c7"),
        ("$[:-1]", ROW),
        ("$[0,5:]", b"c0,c5,c6,c7"),
        ("$[-1,0:1]", b"c7,c0,c1"),
        ("$[*]", ROW),
        ("$[2:100]", b"c2,c3,c4,c5,c6,c7"),  # slices take what the row has
    ],
)
def test_csv_selection(expression: str, selected: bytes) -> None:
    assert csv_select(expression, ROW) == selected


def test_csv_selection_keeps_quotes_and_spellings() -> None:
    row = b'1,"7",1.50,"a,""b""",-0.0'
    assert csv_select("$[1:]", row) == b'"7",1.50,"a,""b""",-0.0'
    assert csv_select("$[0,2,-1]", row) == b"1,1.50,-0.0"


@pytest.mark.parametrize(("expression", "problem"), [("$[8]", "index 8 is"), ("$[0,-9]", "index -9 is"), ("$[9,10]", "indexes 9, 10 are"), ("$[9,1:]", "index 9 is")])
def test_csv_index_outside_the_row_is_an_error(expression: str, problem: str) -> None:
    with pytest.raises(FilterError) as caught:
        csv_select(expression, ROW)
    assert str(caught.value) == f"{problem} outside the record, which has 8 fields"


def test_a_slice_past_the_end_selects_nothing_and_is_no_error() -> None:
    assert csv_select("$[0,9:]", ROW) == b"c0"
    assert csv_select("$[8:]", ROW) == b""


def test_compile_csv_refuses_names_from_a_generic_parse() -> None:
    with pytest.raises(FilterError, match="flat array"):
        compile_csv(JsonPath("$.id"))


# -- JSON selection ---------------------------------------------------------------------------

RECORD = {"id": 7, "features": [1, 2, 3, 4, 5], "nested": {"a": {"b": 1}, "c": 2}, "SageMakerOutput": {"label": 1}}


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("$", RECORD),
        ("$.id", 7),
        ("$['id']", 7),
        ('$["id"]', 7),
        ("$['id','SageMakerOutput']", {"id": 7, "SageMakerOutput": {"label": 1}}),
        ("$['SageMakerOutput','id']", {"SageMakerOutput": {"label": 1}, "id": 7}),
        ("$['id','missing']", {"id": 7}),  # Jayway leaves out keys the record lacks
        ("$.features[0]", 1),
        ("$.features[-1]", 5),
        ("$.features[1:3]", [2, 3, 4]),
        ("$.features[0,3:]", [1, 4, 5]),
        ("$.features[*]", [1, 2, 3, 4, 5]),
        ("$.nested.*", [{"b": 1}, 2]),
        ("$.nested.a.b", 1),
        ("$.nested.['a','c']", {"a": {"b": 1}, "c": 2}),
        ("$.SageMakerOutput.label", 1),
    ],
)
def test_json_selection(expression: str, selected: object) -> None:
    assert json_select(expression, RECORD) == selected


def test_later_steps_apply_to_each_selected_value() -> None:
    rows = [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5}]
    assert json_select("$[*].x", rows) == [1, 3, 5]
    assert json_select("$[0,-1]['x','y']", rows) == [{"x": 1, "y": 2}, {"x": 5}]
    assert json_select("$[1:].x", rows) == [3, 5]


@pytest.mark.parametrize(
    ("expression", "value", "problem"),
    [
        ("$.id", [1], "'id' names a key, but the value is an array, not an object"),
        ("$.missing", {"id": 1}, "the record has no key 'missing'"),
        ("$['a','b']", 3, "['a', 'b'] names keys, but the value is a number, not an object"),
        ("$[0]", {"a": 1}, "[0] selects from an array, but the value is an object"),
        ("$[1:]", "text", "[1:] selects from an array, but the value is a string"),
        ("$[3]", [1, 2], "index 3 is outside the record, which has 2 elements"),
        ("$.*", None, '"*" selects the values of an object or an array, but the value is null'),
    ],
)
def test_json_selection_errors_say_what_is_missing(expression: str, value: object, problem: str) -> None:
    with pytest.raises(FilterError) as caught:
        json_select(expression, value)
    assert str(caught.value) == problem
