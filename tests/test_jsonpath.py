"""The filter grammar (docs/data-processing.md; docs/semantics.md, decisions 2 and 3): what parses, into what, and how a bad
filter is refused at create time."""

from __future__ import annotations

import pytest

from conveyor.errors import ValidationException
from conveyor.sagemaker.jsonpath import Index, JsonPath, Name, Names, Select, Slice, Wildcard, parse_filter

CSV = "text/csv"
JSONL = "application/jsonlines"
JSON = "application/json"


def steps(expression: str, content_type: str | None = None) -> tuple:
    return parse_filter(expression, content_type=content_type, field="InputFilter").steps


def refusal(expression: str, content_type: str | None = None, field: str = "OutputFilter") -> ValidationException:
    with pytest.raises(ValidationException) as caught:
        parse_filter(expression, content_type=content_type, field=field)
    return caught.value


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$", ()),
        ("$.id", (Name("id"),)),
        ("$.id.*", (Name("id"), Wildcard())),
        ("$['id','SageMakerOutput']", (Names(("id", "SageMakerOutput")),)),
        ("$['id']", (Name("id"),)),
        ("$[1]", (Index(1),)),
        ("$[-1]", (Index(-1),)),
        ("$[1,3,5]", (Select((1, 3, 5)),)),
        ("$[0, -1]", (Select((0, -1)),)),
        ("$[2:5]", (Select((Slice(2, 5),)),)),
        ("$[:5]", (Select((Slice(None, 5),)),)),
        ("$[2:]", (Select((Slice(2, None),)),)),
        ("$[:]", (Select((Slice(None, None),)),)),
        ("$[-3:-1]", (Select((Slice(-3, -1),)),)),
        ("$[0,5:]", (Select((0, Slice(5, None))),)),
        ("$[*]", (Wildcard(),)),
        ("$.*", (Wildcard(),)),
        ("$.field1.['child1','child2']", (Name("field1"), Names(("child1", "child2")))),
        ("$.a.b[0]", (Name("a"), Name("b"), Index(0))),
        (" $[ 0 , 5 : ] ", (Select((0, Slice(5, None))),)),
    ],
)
def test_every_operator_parses(expression: str, expected: tuple) -> None:
    assert steps(expression) == expected
    assert parse_filter(expression, content_type=None, field="InputFilter").expression == expression


@pytest.mark.parametrize("expression", ["$.account_id", "$['account_id','SageMakerOutput']", '$["a_b"]', "$.a-b"])
def test_underscores_and_double_quotes_are_accepted(expression: str) -> None:
    parsed = parse_filter(expression, content_type=JSONL, field="OutputFilter")
    assert parsed.steps


def test_double_quoted_names_and_escapes() -> None:
    assert steps('$["a_b"]') == (Name("a_b"),)
    assert steps('$["x","y z"]') == (Names(("x", "y z")),)
    assert steps(r"$['it\'s']") == (Name("it's"),)


@pytest.mark.parametrize("expression", ["$", "$[0]", "$[1:]", "$[0,-1]", "$[1:4]", "$[0,5:]", "$[*]", "$[ 0, -1 ]"])
def test_index_operators_apply_to_csv(expression: str) -> None:
    parse_filter(expression, content_type=CSV, field="InputFilter")


def test_slices_are_kept_as_written_end_inclusive() -> None:
    # Decision 2: $[1:4] is elements 1 to 4; the parser keeps the bounds as written.
    assert steps("$[1:4]", CSV) == (Select((Slice(1, 4),)),)


def test_a_name_on_csv_is_refused_with_field_position_and_what_is_allowed() -> None:
    error = refusal("$.id", CSV, field="InputFilter")
    assert error.message.startswith('Invalid InputFilter: "$.id". The name operator "." does not apply to "text/csv" at position 1. ')
    assert 'Supported operators for "text/csv" are' in error.message
    assert "$[1:]" in error.message
    assert error.errors[0].path == "dataProcessing.inputFilter"
    assert error.errors[0].value == "$.id"
    assert error.code == "ValidationException"


def test_bracket_names_and_nested_steps_are_refused_on_csv() -> None:
    assert "Names do not apply" in refusal("$['id']", CSV).message
    message = refusal("$[0][1]", CSV).message
    assert "only one index step" in message and "at position 4" in message
    assert "at position 1" in refusal("$.*", CSV).message


def test_two_ranges_in_one_bracket_list_are_refused() -> None:
    error = refusal("$[0:2,246:]", CSV)
    assert error.message == (
        'Invalid OutputFilter: "$[0:2,246:]". Only one range per bracket list is supported (as in $[0,5:]); '
        "a second range starts at position 6. Supported operators for \"text/csv\" are $, [n,m] (negative counts "
        "from the end), [start:end] (includes its end; either end may be omitted; one range per bracket list, "
        "as in $[0,5:]) and [*], in a single step: a CSV row is an array of fields, as in $[1:] or $[0,-1]."
    )
    assert error.errors[0].path == "dataProcessing.outputFilter"


@pytest.mark.parametrize(
    ("expression", "problem", "position"),
    [
        ("", 'Expected "$"', 0),
        ("id", 'Expected "$"', 0),
        ("$[", "Unexpected end of expression", 2),
        ("$['a'", 'Expected "]"', 5),
        ("$['a", "Unterminated quoted name", 2),
        ("$..a", 'Recursive descent ".."', 2),
        ("$.", 'Expected a name after "."', 2),
        ("$.a b", 'Unexpected " "', 3),
        ("$[]", "Empty brackets", 2),
        ("$[1 2]", 'Unexpected "2"', 4),
        ("$[-]", 'Expected digits after "-"', 3),
        ("$['a',1]", "Names and indexes cannot be mixed", 6),
        ("$[1,'a']", "Names and indexes cannot be mixed", 4),
        ("$[*,1]", '"*" cannot be combined', 3),
        ("$[4:1]", "Slice start 4 is after its end 1", 2),
        ("$.field1.['child1','child2.grandchild']", 'Nested path "child2.grandchild"', 19),
        ("$x", 'Unexpected "x"', 1),
    ],
)
def test_syntax_errors_name_the_problem_and_its_position(expression: str, problem: str, position: int) -> None:
    message = refusal(expression, JSONL).message
    assert message.startswith(f'Invalid OutputFilter: "{expression}". {problem}')
    assert f" at position {position}. " in message
    assert message.endswith("and *.")
    assert 'Supported operators for "application/jsonlines" are' in message


def test_without_a_content_type_the_message_lists_the_generic_operators() -> None:
    message = refusal("$[", None).message
    assert "Supported operators are $ (the record), .name" in message


def test_json_content_types_allow_names() -> None:
    assert parse_filter("$.features", content_type=JSON, field="InputFilter").steps == (Name("features"),)
    assert parse_filter("$.features", content_type="application/jsonlines; charset=utf-8", field="InputFilter").steps
    assert refusal("$.id", "TEXT/CSV; charset=utf-8").errors[0].rule


def test_jsonpath_parses_itself_and_knows_the_root() -> None:
    assert JsonPath("$").is_root
    assert JsonPath("$[1:]").steps == (Select((Slice(1, None),)),)
    assert not JsonPath("$[1:]").is_root
    assert JsonPath("$[1:]") == parse_filter("$[1:]", content_type=CSV, field="InputFilter")
