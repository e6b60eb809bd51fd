"""Per-record data processing: InputFilter → model → response mapped back to records → join with
the input → OutputFilter → inference ids (docs/data-processing.md;
docs/semantics.md, decisions 4, 17 and 18).

The work-item loop calls a `RecordProcessor` only when a filter, a join or inference ids are asked
for; without them records and responses go through untouched. Everything that depends on the job
(content types, filters, join) is decided once, in the constructor, into small plans of closures,
so the per-record cost is the parsing the job needs and nothing else. CSV is never parsed into
values: fields move as the bytes they were written with.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from conveyor.pipeline.csv_fields import MalformedRow, split_row
from conveyor.pipeline.filters import FilterError, compile_csv, compile_json
from conveyor.pipeline.split import DataError
from conveyor.sagemaker.jsonpath import CSV, JsonPath, media_type
from conveyor.sagemaker.transform_job import DataProcessing

JSON_MEDIA_TYPES = frozenset({"application/json", "application/jsonlines", "application/x-jsonlines", "application/jsonl"})
OUTPUT_KEY = "SageMakerOutput"
INPUT_KEY = "SageMakerInput"
ID_KEY = "SageMakerInferenceId"
TIME_KEY = "SageMakerInferenceTime"

Plan = Callable[[bytes, bytes], bytes]

# orjson reads an integer beyond 64 bits as a float (an id of 24 digits would come back as
# 1.2345678901234569e+23) and cannot write one: a record with 20 digits in a row goes through the
# standard library, which keeps every digit. Other records pay one `translate` and one `in` (C
# loops, about a fifth of orjson's parsing time).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_TWENTY_DIGITS = b"0" * 20


@dataclass(frozen=True)
class InferenceIdConfig:
    """GenerateInferenceId: each output record gets a random UUID and the job's start time."""

    start_time: str  # UTC, "2022-08-30T00:49:15Z"


class RecordError(ValueError):
    """A record or a model output that is not valid JSON; the message says which and why."""


class RecordProcessor:
    """Filters and joins records for one job; one instance serves every work item of the job.

    `split_type` and `batch_strategy` say whether a request carries one record (SplitType None,
    or SingleRecord) or several; they decide how an `application/json` response is mapped back
    (decision 4): the whole response for one record, one array element per record otherwise.
    """

    def __init__(
        self,
        data_processing: DataProcessing,
        *,
        content_type: str | None,
        accept: str | None,
        inference_id: InferenceIdConfig | None = None,
        split_type: str | None = None,
        batch_strategy: str | None = None,
    ) -> None:
        self.data_processing = data_processing
        input_filter = _unless_root(data_processing.input_filter)
        output_filter = _unless_root(data_processing.output_filter)
        join = data_processing.join_source == "Input"
        self.needs_per_record_output: bool = join or output_filter is not None or inference_id is not None
        self._input_filter = input_filter
        self._output_filter = output_filter
        self._join = join

        input_kind = _kind(content_type)
        output_kind = _kind(accept) if accept is not None else input_kind
        self._input_kind = input_kind
        # The record OutputFilter sees: the joined record (in the input's format) or the model's output.
        self._record_kind = input_kind if join else output_kind
        self._input_plans = {kind: _input_plan(kind, input_filter) for kind in _kinds(input_kind)}
        self._output_plans = {
            kind: _output_plan(kind, join=join, output_filter=output_filter, inference_id=inference_id)
            for kind in _kinds(self._record_kind)
        }
        response_type = media_type(accept if accept is not None else content_type)
        self._json_response = response_type == "application/json"
        # Without an Accept, the model picks the response type (the toolkit defaults to JSON).
        self._response_type_unknown = accept is None
        # None: not told; a request of one record is then taken as one record's whole response.
        self._one_record_per_request = None if split_type is None else (split_type != "Line" or batch_strategy == "SingleRecord")

    # -- before the model ----------------------------------------------------------------

    def model_input(self, record: bytes, *, record_number: int, source: str) -> bytes:
        """The bytes sent to the model for one record (no line ending): the InputFilter's selection."""
        if self._input_filter is None:
            return record
        kind = self._input_kind or _sniff(record)
        try:
            return self._input_plans[kind](record, b"")
        except FilterError as exc:
            raise DataError(_where(source, record_number, f"InputFilter {self._input_filter.expression}: {exc}")) from None
        except (MalformedRow, RecordError) as exc:
            raise DataError(_where(source, record_number, str(exc))) from None

    # -- after the model -----------------------------------------------------------------

    def split_response(self, response: bytes, *, record_count: int, first_record: int, source: str) -> list[bytes]:
        """One output per record of the request (decision 4); `first_record` is the number of
        records before this request in the object. A count mismatch fails the object."""
        if self._json_response:
            if record_count == 1 and self._one_record_per_request is not False:
                return [response]
            if response.lstrip()[:1] == b"[":
                try:
                    elements = _parse(response)
                except ValueError as exc:
                    raise DataError(
                        f"the model's response for records {first_record + 1} to {first_record + record_count} of {source} "
                        f"is not valid JSON ({exc})"
                    ) from None
                if len(elements) != record_count:
                    raise DataError(_mismatch(source, len(elements), "array elements", record_count, first_record))
                return [_dumps(element) for element in elements]
        lines = _lines(response)
        if len(lines) != record_count and self._response_type_unknown and response.lstrip()[:1] == b"[":
            try:
                elements = _parse(response)
            except ValueError:
                elements = None
            if isinstance(elements, list) and len(elements) == record_count:
                return [_dumps(element) for element in elements]
        if len(lines) != record_count:
            raise DataError(_mismatch(source, len(lines), "lines", record_count, first_record))
        return lines

    def output_record(self, original: bytes, output: bytes, *, record_number: int, source: str) -> bytes:
        """The output line for one record (no line ending): join, OutputFilter, inference ids.

        `original` is the input record as read (before the InputFilter), `output` the model's
        output for it as `split_response` returned it.
        """
        kind = self._record_kind or _sniff(original if self._join else output)
        try:
            return self._output_plans[kind](original, output)
        except FilterError as exc:
            assert self._output_filter is not None
            problem = f"OutputFilter {self._output_filter.expression}: {exc}"
        except MalformedRow as exc:
            problem = _which_row(original, exc) if self._join else f"the model's output: {exc}"
        except RecordError as exc:
            problem = str(exc)
        raise DataError(_where(source, record_number, problem))


# -- plans ------------------------------------------------------------------------------------


def _input_plan(kind: str, input_filter: JsonPath | None) -> Plan:
    if input_filter is None:
        return lambda record, _: record
    if kind == "csv":
        select_fields = compile_csv(input_filter)
        assert select_fields is not None
        join_fields = b",".join
        return lambda record, _: join_fields(select_fields(split_row(record)))
    select_value = compile_json(input_filter)
    assert select_value is not None
    return lambda record, _: _dumps(select_value(_load(record, "the record")))


def _output_plan(kind: str, *, join: bool, output_filter: JsonPath | None, inference_id: InferenceIdConfig | None) -> Plan:
    if kind == "csv":
        return _csv_output_plan(join, output_filter, inference_id)
    return _json_output_plan(join, output_filter, inference_id)


def _csv_output_plan(join: bool, output_filter: JsonPath | None, inference_id: InferenceIdConfig | None) -> Plan:
    join_fields = b",".join
    plan: Plan
    if output_filter is None:
        plan = (lambda original, output: original + b"," + output) if join else (lambda original, output: output)
    else:
        select = compile_csv(output_filter)
        assert select is not None
        if join:
            plan = lambda original, output: join_fields(select(split_row(original) + split_row(output)))  # noqa: E731
        else:
            plan = lambda original, output: join_fields(select(split_row(output)))  # noqa: E731
    if inference_id is None:
        return plan
    time = b"," + inference_id.start_time.encode()
    uuid4 = uuid.uuid4
    inner = plan
    return lambda original, output: inner(original, output) + b"," + str(uuid4()).encode() + time


def _json_output_plan(join: bool, output_filter: JsonPath | None, inference_id: InferenceIdConfig | None) -> Plan:
    select = compile_json(output_filter) if output_filter is not None else None
    if not join and select is None and inference_id is None:
        return lambda original, output: output
    dumps = _dumps
    start_time = inference_id.start_time if inference_id is not None else None
    uuid4 = uuid.uuid4

    def plan(original: bytes, output: bytes) -> bytes:
        value = _load(output, "the model's output")
        if join:
            value = _join_json(_load(original, "the record"), value)
        if select is not None:
            value = select(value)
        if start_time is not None:
            if type(value) is not dict:
                value = {OUTPUT_KEY: value}
            value[ID_KEY] = str(uuid4())
            value[TIME_KEY] = start_time
        return dumps(value)

    return plan


def _join_json(record: Any, output: Any) -> dict[str, Any]:
    """An object gets `SageMakerOutput` (replacing one it had); anything else is wrapped."""
    if type(record) is dict:
        record[OUTPUT_KEY] = output
        return record
    return {INPUT_KEY: record, OUTPUT_KEY: output}


# -- helpers ----------------------------------------------------------------------------------


def _unless_root(path: JsonPath | None) -> JsonPath | None:
    return None if path is None or path.is_root else path


def _kind(content_type: str | None) -> str | None:
    """`csv`, `json`, or None when the records must say for themselves (no or another type)."""
    media = media_type(content_type)
    if media == CSV:
        return "csv"
    if media in JSON_MEDIA_TYPES:
        return "json"
    return None


def _kinds(kind: str | None) -> tuple[str, ...]:
    return (kind,) if kind is not None else ("csv", "json")


def _sniff(record: bytes) -> str:
    """Without a known content type: a record that opens an object or an array is JSON."""
    return "json" if record.lstrip()[:1] in (b"{", b"[") else "csv"


def _load(data: bytes, what: str) -> Any:
    try:
        return _parse(data)
    except ValueError as exc:  # orjson's and json's JSONDecodeError, UnicodeDecodeError
        raise RecordError(f"{what} is not valid JSON ({exc})") from None


def _parse(data: bytes) -> Any:
    if _TWENTY_DIGITS not in data.translate(_DIGITS_AS_ZERO):
        return orjson.loads(data)
    return json.loads(data, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")  # as orjson refuses NaN and Infinity


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # "Integer exceeds 64-bit range"
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _lines(response: bytes) -> list[bytes]:
    """The response's lines; one trailing line ending is not a line of its own; `\\r\\n` is one ending."""
    if response.endswith(b"\n"):
        response = response[:-1]
    lines = response.split(b"\n")
    if b"\r" in response:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines


def _which_row(original: bytes, exc: MalformedRow) -> str:
    try:
        split_row(original)
    except MalformedRow:
        return f"the record: {exc}"
    return f"the model's output: {exc}"


def _where(source: str, record_number: int, problem: str) -> str:
    return f"record {record_number} of {source}: {problem}"


def _mismatch(source: str, got: int, unit: str, expected: int, first_record: int) -> str:
    if got == 1:
        unit = unit[:-1]  # "1 line", "1 array element"
    records = f"record {first_record + 1}" if expected == 1 else f"the {expected} records {first_record + 1} to {first_record + expected}"
    return (
        f"the model returned {got} {unit} for {records} of {source}; a join, an OutputFilter or inference "
        "ids need exactly one output per record (one line per record, or one element per record in an "
        "application/json array)"
    )


__all__ = ["DataError", "InferenceIdConfig", "RecordProcessor"]
