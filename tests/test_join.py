"""RecordProcessor: the record-level data processing of docs/data-processing.md, with exact bytes."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.pipeline.join import InferenceIdConfig, RecordProcessor
from conveyor.pipeline.split import DataError
from conveyor.sagemaker.jsonpath import parse_filter
from conveyor.sagemaker.transform_job import DataProcessing

CSV = "text/csv"
JSONL = "application/jsonlines"
JSON = "application/json"
SOURCE = "s3://bucket/input/data.csv"
START = "2022-08-30T00:49:15Z"
UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def processor(
    input_filter: str | None = None,
    output_filter: str | None = None,
    join: bool = False,
    content_type: str | None = CSV,
    accept: str | None = None,
    inference_id: bool = False,
    **kwargs: str,
) -> RecordProcessor:
    accept = accept or content_type
    processing = DataProcessing(
        input_filter=parse_filter(input_filter, content_type=content_type, field="InputFilter") if input_filter else None,
        output_filter=parse_filter(output_filter, content_type=accept, field="OutputFilter") if output_filter else None,
        join_source="Input" if join else "None",
    )
    ids = InferenceIdConfig(start_time=START) if inference_id else None
    return RecordProcessor(processing, content_type=content_type, accept=accept, inference_id=ids, **kwargs)


def transform(p: RecordProcessor, rows: list[bytes], model) -> tuple[list[bytes], list[bytes]]:  # noqa: ANN001
    """What the work-item loop does for one MultiRecord request of `rows`."""
    sent = [p.model_input(row, record_number=number, source=SOURCE) for number, row in enumerate(rows, start=1)]
    response = model(sent)
    outputs = p.split_response(response, record_count=len(rows), first_record=0, source=SOURCE)
    lines = [p.output_record(row, output, record_number=number, source=SOURCE) for number, (row, output) in enumerate(zip(rows, outputs), start=1)]
    return sent, lines


def predict_csv(sent: list[bytes]) -> bytes:
    """A stand-in model: the number of fields it was sent, one line per record."""
    return b"".join(b"%d\n" % len(record.split(b",")) for record in sent)


# -- the worked examples of SageMaker's guide, on a CSV with an id first -------------------------------

ROWS = [b'1001,"7",1.50,x', b'1002,"8",2.25,"y,z"']


def test_example_1_output_only_inferences() -> None:
    p = processor()
    assert not p.needs_per_record_output
    assert p.model_input(ROWS[0], record_number=1, source=SOURCE) == ROWS[0]


def test_example_2_join_everything() -> None:
    p = processor(join=True)
    assert p.needs_per_record_output
    sent, lines = transform(p, ROWS, predict_csv)
    assert sent == ROWS
    assert lines == [b'1001,"7",1.50,x,4', b'1002,"8",2.25,"y,z",5']


def test_example_3_exclude_the_id_from_the_model_input_but_keep_it_in_the_output() -> None:
    p = processor("$[1:]", join=True)
    sent, lines = transform(p, ROWS, predict_csv)
    assert sent == [b'"7",1.50,x', b'"8",2.25,"y,z"']
    assert lines == [b'1001,"7",1.50,x,3', b'1002,"8",2.25,"y,z",4']


def test_example_4_keep_only_the_id_and_the_prediction() -> None:
    p = processor("$[1:]", "$[0,-1]", join=True)
    sent, lines = transform(p, ROWS, predict_csv)
    assert sent == [b'"7",1.50,x', b'"8",2.25,"y,z"']
    assert lines == [b"1001,3", b"1002,4"]


def test_csv_join_appends_the_model_output_line_as_it_came() -> None:
    p = processor(join=True)
    assert p.output_record(b"1,2,3", b'"pos",0.90', record_number=1, source=SOURCE) == b'1,2,3,"pos",0.90'
    filtered = processor(output_filter="$[-2:]", join=True)
    assert filtered.output_record(b"1,2,3", b'"pos",0.90', record_number=1, source=SOURCE) == b'"pos",0.90'


def test_csv_output_filter_without_join_applies_to_the_model_output() -> None:
    p = processor(output_filter="$[1]")
    assert p.needs_per_record_output
    assert p.output_record(b"ignored", b'"a,b","c"', record_number=1, source=SOURCE) == b'"c"'


def test_csv_index_outside_the_joined_record_names_the_record() -> None:
    p = processor(output_filter="$[0,6]", join=True)
    with pytest.raises(DataError) as caught:
        p.output_record(b"1,2,3", b"9", record_number=12, source=SOURCE)
    assert str(caught.value) == f"record 12 of {SOURCE}: OutputFilter $[0,6]: index 6 is outside the record, which has 4 fields"


def test_csv_input_filter_outside_the_row_names_the_record() -> None:
    p = processor("$[5]")
    with pytest.raises(DataError, match=rf"^record 3 of {re.escape(SOURCE)}: InputFilter \$\[5\]: index 5 is outside"):
        p.model_input(b"1,2", record_number=3, source=SOURCE)


def test_malformed_csv_names_the_record_and_which_row() -> None:
    p = processor("$[1:]", "$[0,-1]", join=True)
    with pytest.raises(DataError, match=r"^record 2 of .*: malformed CSV: the quoted field starting at byte 2 is not closed"):
        p.model_input(b'1,"abc', record_number=2, source=SOURCE)
    with pytest.raises(DataError, match=r"^record 2 of .*: the record: malformed CSV"):
        p.output_record(b'1,"abc', b"0", record_number=2, source=SOURCE)
    with pytest.raises(DataError, match=r"^record 2 of .*: the model's output: malformed CSV"):
        p.output_record(b"1,2", b'"x"y', record_number=2, source=SOURCE)


# -- JSON and JSON Lines ----------------------------------------------------------------------


def predict_json_lines(sent: list[bytes]) -> bytes:
    return b"".join(orjson.dumps({"label": sum(orjson.loads(record))}) + b"\n" for record in sent)


def test_jsonlines_object_join_adds_sagemaker_output() -> None:
    p = processor("$.features", join=True, content_type=JSONL)
    rows = [b'{"id":1,"features":[1,2]}', b'{"id":2,"features":[3,4],"SageMakerOutput":"old"}']
    sent, lines = transform(p, rows, predict_json_lines)
    assert sent == [b"[1,2]", b"[3,4]"]
    assert lines == [
        b'{"id":1,"features":[1,2],"SageMakerOutput":{"label":3}}',
        b'{"id":2,"features":[3,4],"SageMakerOutput":{"label":7}}',  # the DG: an existing key is replaced
    ]


def test_jsonlines_non_object_join_wraps_input_and_output() -> None:
    p = processor(join=True, content_type=JSONL)
    sent, lines = transform(p, [b"[1,2]", b"5"], lambda sent: b"0.5\n0.25\n")
    assert lines == [b'{"SageMakerInput":[1,2],"SageMakerOutput":0.5}', b'{"SageMakerInput":5,"SageMakerOutput":0.25}']


def test_jsonlines_output_filter_on_the_joined_record() -> None:
    p = processor("$.features", "$['id','SageMakerOutput']", join=True, content_type=JSONL)
    _, lines = transform(p, [b'{"id":"a_1","features":[1,2],"other":true}'], predict_json_lines)
    assert lines == [b'{"id":"a_1","SageMakerOutput":{"label":3}}']


def test_json_document_join_with_split_type_none() -> None:
    p = processor("$.instances", join=True, content_type=JSON, split_type="None", batch_strategy="MultiRecord")
    document = b'{\n  "instances": [[1, 2], [3, 4]],\n  "run": "r1"\n}\n'
    assert p.model_input(document, record_number=1, source=SOURCE) == b"[[1,2],[3,4]]"
    outputs = p.split_response(b"[0.1, 0.9]\n", record_count=1, first_record=0, source=SOURCE)
    assert outputs == [b"[0.1, 0.9]\n"]  # one record per request: the whole response is its output
    joined = p.output_record(document, outputs[0], record_number=1, source=SOURCE)
    assert joined == b'{"instances":[[1,2],[3,4]],"run":"r1","SageMakerOutput":[0.1,0.9]}'


def test_application_json_array_response_maps_one_element_per_record() -> None:
    p = processor(join=True, content_type=JSONL, accept=JSON, split_type="Line", batch_strategy="MultiRecord")
    p_json = processor(join=True, content_type=JSON, split_type="Line", batch_strategy="MultiRecord")
    for proc in (p, p_json):
        outputs = proc.split_response(b'[{"label":1}, [0.2,0.8], 3]', record_count=3, first_record=0, source=SOURCE)
        assert outputs == [b'{"label":1}', b"[0.2,0.8]", b"3"]
        # A one-record MultiRecord request answers with a one-element array too.
        assert proc.split_response(b"[[0.2,0.8]]", record_count=1, first_record=5, source=SOURCE) == [b"[0.2,0.8]"]


def test_application_json_response_of_lines_is_split_by_lines() -> None:
    p = processor(join=True, content_type=JSON, split_type="Line", batch_strategy="MultiRecord")
    assert p.split_response(b'{"a":1}\n{"a":2}\n', record_count=2, first_record=0, source=SOURCE) == [b'{"a":1}', b'{"a":2}']


def test_single_record_requests_take_the_whole_application_json_response() -> None:
    for kwargs in ({"split_type": "Line", "batch_strategy": "SingleRecord"}, {}):
        p = processor(join=True, content_type=JSON, **kwargs)
        assert p.split_response(b"[1, 2, 3]", record_count=1, first_record=0, source=SOURCE) == [b"[1, 2, 3]"]


def test_invalid_json_names_the_record() -> None:
    p = processor("$.features", join=True, content_type=JSONL)
    with pytest.raises(DataError, match=rf"^record 4 of {re.escape(SOURCE)}: the record is not valid JSON \("):
        p.model_input(b'{"features": [1,', record_number=4, source=SOURCE)
    with pytest.raises(DataError, match=r"^record 4 of .*: the model's output is not valid JSON"):
        p.output_record(b'{"id":1}', b"positive", record_number=4, source=SOURCE)
    with pytest.raises(DataError, match=r"^record 4 of .*: InputFilter \$\.features: the record has no key 'features'$"):
        p.model_input(b'{"id": 1}', record_number=4, source=SOURCE)


# -- responses mapped back to records (decision 4) ---------------------------------------------


def test_lines_are_mapped_back_with_crlf_and_one_trailing_newline() -> None:
    p = processor(join=True)
    assert p.split_response(b"1\r\n2\r\n", record_count=2, first_record=0, source=SOURCE) == [b"1", b"2"]
    assert p.split_response(b"1\n2", record_count=2, first_record=0, source=SOURCE) == [b"1", b"2"]
    assert p.split_response(b"1\n\n", record_count=2, first_record=0, source=SOURCE) == [b"1", b""]
    assert p.split_response(b"", record_count=1, first_record=0, source=SOURCE) == [b""]


def test_a_line_count_mismatch_gives_both_counts_the_object_and_the_first_record() -> None:
    p = processor(join=True)
    with pytest.raises(DataError) as caught:
        p.split_response(b"1\n2\n3\n", record_count=4, first_record=100, source=SOURCE)
    message = str(caught.value)
    assert message.startswith(f"the model returned 3 lines for the 4 records 101 to 104 of {SOURCE}; ")
    with pytest.raises(DataError, match=rf"^the model returned 2 lines for record 7 of {re.escape(SOURCE)}; "):
        p.split_response(b"1\n2\n", record_count=1, first_record=6, source=SOURCE)


def test_an_array_count_mismatch_gives_both_counts() -> None:
    p = processor(join=True, content_type=JSONL, accept=JSON, split_type="Line", batch_strategy="MultiRecord")
    with pytest.raises(DataError, match=rf"^the model returned 1 array element for the 2 records 1 to 2 of {re.escape(SOURCE)}; "):
        p.split_response(b"[1]", record_count=2, first_record=0, source=SOURCE)
    with pytest.raises(DataError, match=r"^the model's response for records 1 to 2 of .* is not valid JSON"):
        p.split_response(b"[1,", record_count=2, first_record=0, source=SOURCE)


# -- inference ids (decision 17) ---------------------------------------------------------------


def test_csv_inference_ids_are_two_trailing_columns_after_the_output_filter() -> None:
    p = processor("$[1:]", "$[0,-1]", join=True, inference_id=True)
    first = p.output_record(b"1001,5,6", b"0.9", record_number=1, source=SOURCE)
    second = p.output_record(b"1002,5,6", b"0.1", record_number=2, source=SOURCE)
    assert re.fullmatch(rb"1001,0\.9," + UUID + rb",2022-08-30T00:49:15Z", first)
    assert re.fullmatch(rb"1002,0\.1," + UUID + rb",2022-08-30T00:49:15Z", second)
    assert first.split(b",")[2] != second.split(b",")[2]


def test_inference_ids_alone_need_per_record_output() -> None:
    p = processor(inference_id=True)
    assert p.needs_per_record_output
    assert re.fullmatch(rb'"a",0\.5,' + UUID + rb",2022-08-30T00:49:15Z", p.output_record(b"x", b'"a",0.5', record_number=1, source=SOURCE))


def test_json_inference_ids_are_two_keys_added_last() -> None:
    p = processor(output_filter="$['id','SageMakerOutput']", join=True, content_type=JSONL, inference_id=True)
    line = p.output_record(b'{"SageMakerInferenceTime":"x","id":1,"f":2}', b'{"label":1}', record_number=1, source=SOURCE)
    value = orjson.loads(line)
    assert list(value) == ["id", "SageMakerOutput", "SageMakerInferenceId", "SageMakerInferenceTime"]
    assert value["SageMakerInferenceTime"] == START
    assert re.fullmatch(UUID, value["SageMakerInferenceId"].encode())


def test_json_inference_ids_on_a_value_that_is_not_an_object_wrap_it() -> None:
    p = processor(content_type=JSONL, inference_id=True)
    value = orjson.loads(p.output_record(b"[1]", b"0.5", record_number=1, source=SOURCE))
    assert list(value) == ["SageMakerOutput", "SageMakerInferenceId", "SageMakerInferenceTime"]
    assert value["SageMakerOutput"] == 0.5


# -- without a content type, records say what they are ----------------------------------------


def test_without_content_type_records_are_sniffed() -> None:
    p = processor("$[1:]", join=True, content_type=None)
    assert p.model_input(b"1,2,3", record_number=1, source=SOURCE) == b"2,3"
    assert p.model_input(b"[1,2,3]", record_number=1, source=SOURCE) == b"[2,3]"
    assert p.output_record(b"1,2,3", b"9", record_number=1, source=SOURCE) == b"1,2,3,9"
    assert p.output_record(b"[1,2,3]", b"9", record_number=1, source=SOURCE) == b'{"SageMakerInput":[1,2,3],"SageMakerOutput":9}'


def test_a_root_filter_is_no_filter() -> None:
    p = processor("$", "$")
    assert not p.needs_per_record_output
    assert p.model_input(b'1,"2', record_number=1, source=SOURCE) == b'1,"2'  # not even parsed


# -- a property: CSV survives byte for byte ---------------------------------------------------

_TEXT = st.text(alphabet=st.sampled_from(list('ab1.5 ,"-é')), max_size=8)


@st.composite
def csv_fields(draw: st.DrawFn) -> bytes:
    text = draw(_TEXT)
    must_quote = "," in text or '"' in text
    if must_quote or draw(st.booleans()):
        return b'"' + text.replace('"', '""').encode() + b'"'
    return text.encode()


PREDICTIONS = {b"1": b"1", b"0.50": b"0.50", b'"pos"': b'"pos"', b'"a,b",2': b"2"}  # output line → its last field


@given(fields=st.lists(csv_fields(), min_size=1, max_size=12), prediction=st.sampled_from(sorted(PREDICTIONS)))
def test_a_quoted_csv_row_survives_filters_and_join_byte_for_byte(fields: list[bytes], prediction: bytes) -> None:
    row = b",".join(fields)
    for p in IDENTITY_PROCESSORS:
        assert p.model_input(row, record_number=1, source=SOURCE) == row
        assert p.output_record(row, prediction, record_number=1, source=SOURCE) == row + b"," + prediction
    assert ID_AND_PREDICTION.model_input(row, record_number=1, source=SOURCE) == b",".join(fields[1:])
    assert ID_AND_PREDICTION.output_record(row, prediction, record_number=1, source=SOURCE) == fields[0] + b"," + PREDICTIONS[prediction]


IDENTITY_PROCESSORS = [processor(i, o, join=True) for i, o in ((None, None), ("$", "$"), ("$[0:]", "$[*]"), ("$[*]", "$[:]"))]
ID_AND_PREDICTION = processor("$[1:]", "$[0,-1]", join=True)
