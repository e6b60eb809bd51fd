"""End-to-end data processing (docs/data-processing.md; docs/semantics.md, decisions 2–4, 17, 18): `conveyor transform` run as
a user runs it, with InputFilter, JoinSource, OutputFilter and GenerateInferenceId, checked
byte for byte.

The model scores what it receives, so every output line proves what the InputFilter sent: for
CSV, `<number of fields>|<sum of the fields>`; for JSON, `{"count": n, "sum": s}` for an array
and `{"keys": [...]}` for an object.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli import main as conveyor_main
from tests.models import write_model
from tests.server import wait_for_status

SCORE = '''
import json
from decimal import Decimal

def model_fn(model_dir):
    return None

def _csv(line):
    fields = [field.strip('"') for field in line.split(",")]
    return f"{len(fields)}|{sum(Decimal(field) for field in fields)}"

def _json(value):
    if isinstance(value, list):
        return {"count": len(value), "sum": sum(value)}
    return {"keys": sorted(value)}

def transform_fn(model, body, content_type, accept):
    # As in the inference toolkit, CSV and JSON bodies arrive as str, JSON Lines as bytes.
    assert isinstance(body, bytes if content_type == "application/jsonlines" else str), type(body)
    if content_type == "text/csv":
        return "".join(_csv(line) + "\\n" for line in body.splitlines())
    if content_type == "application/json":
        return json.dumps(_json(json.loads(body)))
    scores = [_json(json.loads(line)) for line in body.splitlines()]
    if accept == "application/json":  # one array for the whole request
        return json.dumps(scores)
    return "".join(json.dumps(score) + "\\n" for score in scores)
'''

# Answers one line per request, however many records it carried.
ONE_LINE_PER_REQUEST = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return f"{len(body.splitlines())} records\\n"
'''

CSV_LINE = ("--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv", "--assemble-with", "Line")
JSONL_LINE = (
    "--content-type", "application/jsonlines", "--split-type", "Line", "--accept", "application/jsonlines", "--assemble-with", "Line",
)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
ROLE = "arn:aws:iam::000000000000:role/conveyor-tests"


def score(fields: list[str]) -> str:
    """What SCORE answers for one CSV row's fields (quotes dropped, values summed exactly)."""
    values = [field.strip('"') for field in fields]
    return f"{len(values)}|{sum(Decimal(value) for value in values)}"


def transform(tmp_path: Path, *args: str, handler: str = SCORE, name: str | None = None) -> subprocess.CompletedProcess[str]:
    """`conveyor transform --quiet` over tmp_path/in into tmp_path/out."""
    model = write_model(tmp_path, handler, "model")
    environment = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01"}
    command = [sys.executable, "-m", "conveyor", "transform", "--quiet", "--model", str(model), "--input", f"{tmp_path}/in/",
               "--output", f"{tmp_path}/out", *(("--name", name) if name else ()), *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)


def write_inputs(tmp_path: Path, files: dict[str, bytes | str]) -> None:
    (tmp_path / "in").mkdir(exist_ok=True)
    for name, data in files.items():
        (tmp_path / "in" / name).write_bytes(data.encode() if isinstance(data, str) else data)


def output(tmp_path: Path, name: str) -> bytes:
    return (tmp_path / "out" / f"{name}.out").read_bytes()


# -- the four worked examples of SageMaker's guide (docs/data-processing.md), on a breast-cancer-like CSV --------------------------


def cancer_rows(count: int) -> list[list[str]]:
    """`id` then 31 measurements with two decimals: 32 columns, as in AWS's breast-cancer notebook."""
    rng = random.Random(842302)
    return [[str(rng.randrange(8670, 911320502))] + [f"{rng.randrange(0, 400000) / 100:.2f}" for _ in range(31)] for _ in range(count)]


def lines(rows: list[list[str]]) -> bytes:
    return "".join(",".join(row) + "\n" for row in rows).encode()


EXAMPLES = {
    # 1. Output only the inferences (the defaults, written out).
    "output-only": (("--input-filter", "$", "--join-source", "None", "--output-filter", "$"), lambda row: score(row)),
    # 2. Join everything: the whole input row, then the prediction.
    "join-all": (("--join-source", "Input"), lambda row: ",".join(row) + "," + score(row)),
    # 3. The ID column is not sent to the model, but every input column is kept.
    "exclude-id": (("--input-filter", "$[1:]", "--join-source", "Input"), lambda row: ",".join(row) + "," + score(row[1:])),
    # 4. Keep only the ID and the prediction.
    "id-and-prediction": (
        ("--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]"),
        lambda row: row[0] + "," + score(row[1:]),
    ),
}


@pytest.mark.parametrize(
    ("example", "strategy"),
    [(example, "MultiRecord") for example in EXAMPLES] + [("id-and-prediction", "SingleRecord")],
)
def test_worked_examples(tmp_path: Path, example: str, strategy: str) -> None:
    flags, expected_line = EXAMPLES[example]
    # MultiRecord: 1.4 MB, so two 1 MB payloads; SingleRecord: four requests in flight at once.
    rows = cancer_rows(6000 if strategy == "MultiRecord" else 40)
    write_inputs(tmp_path, {"cancer.csv": lines(rows)})
    result = transform(tmp_path, *CSV_LINE, "--strategy", strategy, "--max-payload", "1", "--max-concurrent", "4", *flags)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "cancer.csv") == "".join(expected_line(row) + "\n" for row in rows).encode()


# -- the seed's join example (SageMaker SDK Transformer, join_source="Input") -----------------


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_seed_join_example(tmp_path: Path, strategy: str) -> None:
    """The request the SDK's Transformer(…, strategy, assemble_with="Line", accept="text/csv")
    .transform(…, content_type="text/csv", split_type="Line", input_filter="$[0,2,3]",
    join_source="Input") sends."""
    write_inputs(tmp_path, {"batch.csv": "1,10,2,3,99\n4,20,5,6,99\n7,30,8,9,99\n"})
    request = {
        "TransformJobName": "seed-join",
        "ModelName": "model",
        "BatchStrategy": strategy,
        "MaxPayloadInMB": 1,
        "Environment": {},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{tmp_path}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"{tmp_path}/out", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "DataProcessing": {"InputFilter": "$[0,2,3]", "JoinSource": "Input"},
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    result = transform(tmp_path, "--request", str(tmp_path / "request.json"))
    assert result.returncode == 0, result.stderr
    # The model saw columns 0, 2 and 3; the output is the whole row, then the prediction.
    assert output(tmp_path, "batch.csv") == b"1,10,2,3,99,3|6\n4,20,5,6,99,3|15\n7,30,8,9,99,3|24\n"


# -- MultiRecord: responses mapped back to records (decision 4) --------------------------------


def test_multi_record_response_with_the_wrong_number_of_lines_fails_the_object(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"a-one.csv": "1,2\n", "b-three.csv": "1,2\n3,4\n5,6\n"})
    result = transform(tmp_path, *CSV_LINE, "--strategy", "MultiRecord", "--join-source", "Input", handler=ONE_LINE_PER_REQUEST)
    assert result.returncode == 1
    assert output(tmp_path, "a-one.csv") == b"1,2,1 records\n"  # one record, one line: fine
    assert not (tmp_path / "out" / "b-three.csv.out").exists()
    assert "the model returned 1 line for the 3 records 1 to 3 of " in result.stderr
    assert "b-three.csv" in result.stderr
    assert "FailureReason: 1 of 2 input objects failed" in result.stderr


# -- JSON Lines and JSON ------------------------------------------------------------------------


JSONL_OBJECTS = (
    '{"account_id": "a-1", "features": [1, 2.5], "note": "x"}\n'
    '{"account_id": "a-2", "features": [3, 4, 5], "note": "y"}\n'
)


@pytest.mark.parametrize("strategy", ["SingleRecord"])  # MultiRecord: the jsonlines example in the docs
def test_jsonlines_object_records(tmp_path: Path, strategy: str) -> None:
    # The OutputFilter of aws/aws-sdk#184, which SageMaker refuses for its underscore (decision 3).
    write_inputs(tmp_path, {"accounts.jsonl": JSONL_OBJECTS})
    result = transform(
        tmp_path, *JSONL_LINE, "--strategy", strategy,
        "--input-filter", "$.features", "--join-source", "Input", "--output-filter", "$['account_id','SageMakerOutput']",
    )
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "accounts.jsonl") == (
        b'{"account_id":"a-1","SageMakerOutput":{"count":2,"sum":3.5}}\n'
        b'{"account_id":"a-2","SageMakerOutput":{"count":3,"sum":12}}\n'
    )


@pytest.mark.parametrize(
    ("input_filter", "expected"),
    [
        pytest.param(
            None,
            b'{"SageMakerInput":[1,2,3],"SageMakerOutput":{"count":3,"sum":6}}\n'
            b'{"SageMakerInput":[4,5],"SageMakerOutput":{"count":2,"sum":9}}\n',
            id="no-filter",
        ),
        pytest.param(  # slices include their end (decision 2): [1:2] is the second and the third element
            "$[1:2]",
            b'{"SageMakerInput":[1,2,3],"SageMakerOutput":{"count":2,"sum":5}}\n'
            b'{"SageMakerInput":[4,5],"SageMakerOutput":{"count":1,"sum":5}}\n',
            id="slice",
        ),
    ],
)
def test_jsonlines_array_records_are_wrapped(tmp_path: Path, input_filter: str | None, expected: bytes) -> None:
    write_inputs(tmp_path, {"arrays.jsonl": "[1, 2, 3]\n[4, 5]\n"})
    flags = ("--input-filter", input_filter) if input_filter else ()
    result = transform(tmp_path, *JSONL_LINE, "--join-source", "Input", *flags)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "arrays.jsonl") == expected


def test_jsonlines_output_filter_without_join(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"arrays.jsonl": "[1, 2, 3]\n[4, 5]\n"})
    result = transform(tmp_path, *JSONL_LINE, "--output-filter", "$.sum")
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "arrays.jsonl") == b"6\n9\n"


def test_application_json_array_response_maps_one_element_per_record(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"arrays.jsonl": "[1, 2, 3]\n[4, 5]\n[6]\n"})
    result = transform(
        tmp_path, "--content-type", "application/jsonlines", "--split-type", "Line", "--strategy", "MultiRecord",
        "--accept", "application/json", "--assemble-with", "Line", "--output-filter", "$.sum",
    )
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "arrays.jsonl") == b"6\n9\n6\n"


def test_integers_beyond_64_bits_keep_every_digit(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"ids.jsonl": '{"id": 123456789012345678901234, "features": [1, 2]}\n{"id": 5, "features": [3]}\n'})
    result = transform(tmp_path, *JSONL_LINE, "--input-filter", "$.features", "--join-source", "Input")
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "ids.jsonl") == (
        b'{"id":123456789012345678901234,"features":[1,2],"SageMakerOutput":{"count":2,"sum":3}}\n'
        b'{"id":5,"features":[3],"SageMakerOutput":{"count":1,"sum":3}}\n'
    )


def test_split_none_json_documents(tmp_path: Path) -> None:
    """SplitType None: each document is one record, however it is laid out."""
    write_inputs(tmp_path, {
        "object.json": '{\n  "id": 7,\n  "features": [1.5, 2.5]\n}\n',
        "array.json": "[1, 2, 3]",
    })
    result = transform(
        tmp_path, "--content-type", "application/json", "--accept", "application/json", "--join-source", "Input",
    )
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "object.json") == b'{"id":7,"features":[1.5,2.5],"SageMakerOutput":{"keys":["features","id"]}}'
    assert output(tmp_path, "array.json") == b'{"SageMakerInput":[1,2,3],"SageMakerOutput":{"count":3,"sum":6}}'


def test_split_none_json_with_filters(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"object.json": '{"id": 7, "features": [1.5, 2.5], "extra": {"a": 1}}'})
    result = transform(
        tmp_path, "--content-type", "application/json", "--accept", "application/json", "--join-source", "Input",
        "--input-filter", "$.features", "--output-filter", "$['id','SageMakerOutput']",
    )
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "object.json") == b'{"id":7,"SageMakerOutput":{"count":2,"sum":4.0}}'


# -- filters that select what a record does not have ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        pytest.param(
            ("--output-filter", "$[0,4]"),
            "record 3 of file://{in}/short.csv: OutputFilter $[0,4]: index 4 is outside the record, which has 3 fields",
            id="output-filter",
        ),
        pytest.param(
            ("--input-filter", "$[3]"),
            "record 3 of file://{in}/short.csv: InputFilter $[3]: index 3 is outside the record, which has 2 fields",
            id="input-filter",
        ),
    ],
)
def test_index_outside_the_record_fails_the_object_naming_the_record(tmp_path: Path, flags: tuple[str, ...], reason: str) -> None:
    write_inputs(tmp_path, {"good.csv": "1,2,3,4\n", "short.csv": "1,2,3,4\n5,6,7,8\n9,10\n"})
    result = transform(tmp_path, *CSV_LINE, "--join-source", "Input", *flags)
    assert result.returncode == 1
    assert reason.format(**{"in": f"{tmp_path}/in"}) in result.stderr
    assert (tmp_path / "out" / "good.csv.out").exists()
    assert not (tmp_path / "out" / "short.csv.out").exists()


# -- CSV is kept byte for byte (decision 18) ----------------------------------------------------


CSV_ROWS = (
    '"Smith, John",7,"7",1.50,0010,"He said ""hi""",tail\n'
    '"Doe, Jane",-2,"3",0.25,1e1,"",end\r\n'  # a CRLF line: its line ending is not part of the record
    'plaïn,1,2,3,4,"fünf",6\n'  # UTF-8 passes through untouched
).encode()


@pytest.mark.parametrize(
    ("output_filter", "expected"),
    [
        pytest.param(
            None,
            (
                '"Smith, John",7,"7",1.50,0010,"He said ""hi""",tail,4|25.50\n'
                '"Doe, Jane",-2,"3",0.25,1e1,"",end,4|11.25\n'
                'plaïn,1,2,3,4,"fünf",6,4|10\n'
            ).encode(),
            id="whole-row",
        ),
        pytest.param(  # one index and one range in a list (decision 3); the range runs to the prediction
            "$[0,5:]",
            ('"Smith, John","He said ""hi""",tail,4|25.50\n' '"Doe, Jane","",end,4|11.25\n' 'plaïn,"fünf",6,4|10\n').encode(),
            id="first-and-from-5th",
        ),
    ],
)
def test_csv_fields_keep_their_bytes_through_a_join(tmp_path: Path, output_filter: str | None, expected: bytes) -> None:
    write_inputs(tmp_path, {"people.csv": CSV_ROWS})
    flags = ("--output-filter", output_filter) if output_filter else ()
    # $[1:4] includes its end (decision 2): the model gets fields 1, 2, 3 and 4.
    result = transform(tmp_path, *CSV_LINE, "--input-filter", "$[1:4]", "--join-source", "Input", *flags)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path, "people.csv") == expected


# -- GenerateInferenceId and data capture (decision 17) ------------------------------


def _start_window() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _check_capture(tmp_path: Path, job: str, start: str, inputs: list[str], outputs: list[str]) -> None:
    folder = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y/%m/%d/%H")
    manifests = sorted(str(path.relative_to(tmp_path / "capture")) for path in (tmp_path / "capture").rglob("*") if path.is_file())
    assert manifests == [f"input/{folder}/{job}.manifest", f"output/{folder}/{job}.manifest"]
    for kind, folder_name, names in (("input", "in", inputs), ("output", "out", outputs)):
        manifest = json.loads((tmp_path / "capture" / kind / folder / f"{job}.manifest").read_text())
        assert manifest == [{"prefix": f"file://{tmp_path}/{folder_name}/"}, *names]


def test_inference_ids_on_csv_and_capture_manifests(tmp_path: Path) -> None:
    rows = cancer_rows(5)
    write_inputs(tmp_path, {"a.csv": lines(rows), "b.csv": '1,2\n"unclosed,3\n'})
    before = _start_window()
    result = transform(
        tmp_path, *CSV_LINE, "--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]",
        "--data-capture", f"{tmp_path}/capture", name="capture-csv",
    )
    after = _start_window()
    assert result.returncode == 1
    assert f"record 2 of file://{tmp_path}/in/b.csv: malformed CSV: the quoted field starting at byte 0 is not closed" in result.stderr
    found = [re.fullmatch(rf"(\d+),(31\|[\d.]+),({UUID}),({TIME})", line) for line in output(tmp_path, "a.csv").decode().splitlines()]
    assert all(found), output(tmp_path, "a.csv")
    assert [(match[1], match[2]) for match in found] == [(row[0], score(row[1:])) for row in rows]  # type: ignore[index]
    assert len({match[3] for match in found}) == len(rows)  # type: ignore[index]  # a new id per record
    times = {match[4] for match in found}  # type: ignore[index]
    assert len(times) == 1  # the job's start time, the same on every record
    start = times.pop()
    assert before <= datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) <= after
    # The output manifest lists only the objects written: b.csv failed.
    _check_capture(tmp_path, "capture-csv", start, ["a.csv", "b.csv"], ["a.csv.out"])


def test_inference_ids_on_jsonlines(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"accounts.jsonl": JSONL_OBJECTS})
    before = _start_window()
    result = transform(
        tmp_path, *JSONL_LINE, "--input-filter", "$.features", "--join-source", "Input",
        "--output-filter", "$['account_id','SageMakerOutput']", "--data-capture", f"file://{tmp_path}/capture", name="capture-jsonl",
    )
    after = _start_window()
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output(tmp_path, "accounts.jsonl").splitlines()]
    assert [list(record) for record in records] == [["account_id", "SageMakerOutput", "SageMakerInferenceId", "SageMakerInferenceTime"]] * 2
    assert [record["SageMakerOutput"] for record in records] == [{"count": 2, "sum": 3.5}, {"count": 3, "sum": 12}]
    assert all(str(uuid.UUID(record["SageMakerInferenceId"])) == record["SageMakerInferenceId"] for record in records)
    assert records[0]["SageMakerInferenceId"] != records[1]["SageMakerInferenceId"]
    start = records[0]["SageMakerInferenceTime"]
    assert re.fullmatch(TIME, start) and records[1]["SageMakerInferenceTime"] == start
    assert before <= datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) <= after
    _check_capture(tmp_path, "capture-jsonl", start, ["accounts.jsonl"], ["accounts.jsonl.out"])


@pytest.mark.parametrize(
    ("files", "flags"),
    [
        pytest.param(
            {"a.csv": "1,2\n3,4\n"}, ("--content-type", "text/csv", "--split-type", "Line", "--data-capture", "{tmp}/capture"),
            id="csv-inference-ids",
        ),
        pytest.param(
            {"a.jsonl": "[1]\n[2, 3]\n"}, ("--content-type", "application/jsonlines", "--split-type", "Line", "--output-filter", "$.sum"),
            id="jsonlines-output-filter",
        ),
    ],
)
def test_per_record_outputs_keep_one_line_each_under_assemble_with_none(
    tmp_path: Path, files: dict[str, str], flags: tuple[str, ...]
) -> None:
    write_inputs(tmp_path, files)
    result = transform(tmp_path, *(flag.format(tmp=tmp_path) for flag in flags))
    assert result.returncode == 0, result.stderr
    (name,) = files
    assert len(output(tmp_path, name).splitlines()) == 2, output(tmp_path, name)


def test_server_job_inference_ids_and_capture(conveyor_server: Any, tmp_path: Path) -> None:
    """The same through the API: the inference time is the job's TransformStartTime."""
    sm = conveyor_server.client()
    model_name = f"score-{uuid.uuid4().hex[:8]}"
    job = f"capture-{uuid.uuid4().hex[:8]}"
    model_dir = write_model(tmp_path, SCORE, "model")
    sm.create_model(
        ModelName=model_name, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"}, ExecutionRoleArn=ROLE,
    )
    rows = cancer_rows(3)
    write_inputs(tmp_path, {"a.csv": lines(rows)})
    sm.create_transform_job(
        TransformJobName=job,
        ModelName=model_name,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/out", "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        DataCaptureConfig={"DestinationS3Uri": f"file://{tmp_path}/capture", "GenerateInferenceId": True},
    )
    description = wait_for_status(sm, job)
    assert description["TransformJobStatus"] == "Completed", description.get("FailureReason")
    start = description["TransformStartTime"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = [rf"{row[0]},{re.escape(score(row[1:]))},{UUID},{start}" for row in rows]
    produced = output(tmp_path, "a.csv").decode().splitlines()
    assert len(produced) == len(rows) and all(re.fullmatch(pattern, line) for pattern, line in zip(expected, produced)), produced
    _check_capture(tmp_path, job, start, ["a.csv"], ["a.csv.out"])


# -- create-time errors (exit 2): each names the field, the position and what is allowed -------


CSV_ALLOWED = 'Supported operators for "text/csv" are $, [n,m]'
JSONL_ALLOWED = "Supported operators for \"application/jsonlines\" are $ (the record), .name, ['name','name']"


def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The command in this process (the same entry point, without a process start per case)."""
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    write_inputs(tmp_path, {"a.csv": "1,2\n"})
    model = write_model(tmp_path, SCORE, "model")
    status = conveyor_main(
        ["transform", "--quiet", "--model", str(model), "--input", f"{tmp_path}/in/", "--output", f"{tmp_path}/out", *args]
    )
    return status, capsys.readouterr().err


FILTER_ERRORS = [
    # (id, layout, flag, expression, the fault and its position)
    ("csv-name", CSV_LINE, "--input-filter", "$.id", 'The name operator "." does not apply to "text/csv" at position 1.'),
    ("csv-names", CSV_LINE, "--output-filter", "$['id']", 'Names do not apply to "text/csv" at position 2.'),
    ("two-ranges", CSV_LINE, "--output-filter", "$[0:2,246:]",
     "Only one range per bracket list is supported (as in $[0,5:]); a second range starts at position 6."),
    ("slice-backwards", CSV_LINE, "--input-filter", "$[4:1]", "Slice start 4 is after its end 1 (slices include their end) at position 2."),
    ("csv-second-step", CSV_LINE, "--input-filter", "$[0][1]",
     "A CSV row is a flat array of fields, so only one index step applies; a second step starts at position 4."),
    ("no-root", CSV_LINE, "--input-filter", "[0]", 'Expected "$" (a filter starts at the record root) at position 0.'),
    ("empty-brackets", CSV_LINE, "--input-filter", "$[]", "Empty brackets at position 2."),
    ("star-in-list", CSV_LINE, "--input-filter", "$[*,1]", '"*" cannot be combined with other items in a bracket list at position 3.'),
    ("letter-index", CSV_LINE, "--input-filter", "$[a]", 'Unexpected "a" at position 2.'),
    ("unclosed-bracket", CSV_LINE, "--input-filter", "$[1", 'Expected "]" but the expression ends at position 3.'),
    ("bare-minus", CSV_LINE, "--input-filter", "$[-]", 'Expected digits after "-" at position 3.'),
    ("trailing-comma", CSV_LINE, "--input-filter", "$[1,]", "Expected an index at position 4."),
    ("recursive-descent", JSONL_LINE, "--input-filter", "$..id", 'Recursive descent ".." is not supported at position 2.'),
    ("nested-name", JSONL_LINE, "--output-filter", "$.field1.['child1','child2.grandchild']",
     'Nested path "child2.grandchild" in a bracket list (select one level per step) at position 19.'),
    ("unclosed-quote", JSONL_LINE, "--input-filter", "$['id", "Unterminated quoted name starting at position 2."),
    ("names-and-indexes", JSONL_LINE, "--input-filter", "$['a',1]", "Names and indexes cannot be mixed in one bracket list at position 6."),
    ("dot-at-end", JSONL_LINE, "--input-filter", "$.", 'Expected a name after "." at position 2.'),
]


@pytest.mark.parametrize(
    ("layout", "flag", "expression", "fault"),
    [pytest.param(layout, flag, expression, fault, id=name) for name, layout, flag, expression, fault in FILTER_ERRORS],
)
def test_bad_filter_is_refused_naming_the_filter_the_position_and_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    layout: tuple[str, ...], flag: str, expression: str, fault: str,
) -> None:
    status, stderr = run_cli(tmp_path, monkeypatch, capsys, *layout, flag, expression)
    assert status == 2
    field = "InputFilter" if flag == "--input-filter" else "OutputFilter"
    allowed = CSV_ALLOWED if layout == CSV_LINE else JSONL_ALLOWED
    assert stderr.startswith(f'conveyor transform: {flag} (DataProcessing.{field}): Invalid {field}: "{expression}". {fault} {allowed}'), stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            (*JSONL_LINE, "--input-filter", "$[" + "1," * 31 + "1]"),
            "--input-filter (DataProcessing.InputFilter) '$[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]' "
            "failed to satisfy constraint: Member must have length less than or equal to 63",
            id="filter-too-long",
        ),
        pytest.param(
            ("--content-type", "text/csv", "--split-type", "Line", "--accept", "application/json", "--assemble-with", "Line",
             "--join-source", "Input"),
            "Accept 'application/json' at 'transformOutput.accept' must equal ContentType 'text/csv' when JoinSource is Input",
            id="join-accept-differs",
        ),
        pytest.param(
            ("--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--join-source", "Input"),
            "Accept (not given) at 'transformOutput.accept' must equal ContentType 'text/csv' when JoinSource is Input",
            id="join-accept-missing",
        ),
        pytest.param(
            ("--content-type", "application/jsonlines", "--split-type", "Line", "--accept", "application/jsonlines",
             "--join-source", "Input"),
            "AssembleWith 'None' at 'transformOutput.assembleWith' must equal SplitType 'Line' when JoinSource is Input",
            id="join-assemble-differs",
        ),
        pytest.param(
            ("--content-type", "text/csv", "--accept", "text/csv", "--assemble-with", "Line", "--input-filter", "$[1:]"),
            "SplitType 'None' at 'transformInput.splitType' must be Line when ContentType is text/csv and DataProcessing is used",
            id="csv-without-line-split",
        ),
        pytest.param(
            ("--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv", "--output-filter", "$[0]"),
            "AssembleWith 'None' at 'transformOutput.assembleWith' must be Line when Accept is text/csv and DataProcessing is used",
            id="csv-without-line-assembly",
        ),
        pytest.param(
            ("--content-type", "application/x-image", "--input-filter", "$[0]"),
            "ContentType 'application/x-image' at 'transformInput.contentType' is not supported with DataProcessing "
            "(InputFilter, OutputFilter or JoinSource Input): ContentType must be one of text/csv, application/json, application/jsonlines",
            id="content-type-unsupported",
        ),
        pytest.param(
            ("--content-type", "application/jsonlines", "--split-type", "Line", "--accept", "application/x-recordio-protobuf",
             "--output-filter", "$[0]"),
            "Accept 'application/x-recordio-protobuf' at 'transformOutput.accept' is not supported with DataProcessing "
            "(InputFilter, OutputFilter or JoinSource Input): Accept must be one of text/csv, application/json, application/jsonlines",
            id="accept-unsupported",
        ),
    ],
)
def test_content_types_and_layouts_are_checked_at_create_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    status, stderr = run_cli(tmp_path, monkeypatch, capsys, *flags)
    assert status == 2
    assert stderr.startswith("conveyor transform: ") and message in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_several_errors_are_reported_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    status, stderr = run_cli(
        tmp_path, monkeypatch, capsys, "--content-type", "text/csv", "--accept", "application/jsonlines",
        "--join-source", "Input", "--input-filter", "$.id",
    )
    assert status == 2
    assert stderr.startswith("conveyor transform: --accept (TransformOutput.Accept): ") and stderr.count("; --") == 2
    for message in ["Accept 'application/jsonlines' at 'transformOutput.accept' must equal ContentType 'text/csv'",
                    "SplitType 'None' at 'transformInput.splitType' must be Line",
                    'Invalid InputFilter: "$.id".']:
        assert message in stderr


def test_join_source_outside_its_enum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    request = {"DataProcessing": {"JoinSource": "Output"}}
    (tmp_path / "request.json").write_text(json.dumps(request))
    status, stderr = run_cli(tmp_path, monkeypatch, capsys, "--request", str(tmp_path / "request.json"), *CSV_LINE)
    assert status == 2
    assert (
        "DataProcessing.JoinSource 'Output' failed to satisfy constraint: Member must satisfy enum value set: [Input, None]"
    ) in stderr


def test_create_time_error_from_a_real_process(tmp_path: Path) -> None:
    write_inputs(tmp_path, {"a.csv": "1,2\n"})
    result = transform(tmp_path, "--content-type", "text/csv", "--split-type", "Line", "--input-filter", "$.id")
    assert result.returncode == 2
    assert 'Invalid InputFilter: "$.id". The name operator "." does not apply to "text/csv" at position 1.' in result.stderr


# -- the examples in docs/data-processing.md, run as written -----------------------------------


DOCS = Path(__file__).parent.parent / "docs" / "data-processing.md"
DOC_EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\n"
    r"`in/(?P<input_name>[^`]+)`:\n```\w*\n(?P<input>.*?)```\n"
    r"```sh\n(?P<command>.*?)```\n"
    r"`out/(?P<output_name>[^`]+)`[^\n]*:\n```\w*\n(?P<output>.*?)```",
    re.DOTALL,
)
DOC_EXAMPLES = {match["name"]: match for match in DOC_EXAMPLE.finditer(DOCS.read_text())}


def test_the_docs_hold_their_examples() -> None:
    text = DOCS.read_text()
    assert len(DOC_EXAMPLES) == text.count("<!-- example: ") >= 6


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_docs_example(tmp_path: Path, name: str) -> None:
    example = DOC_EXAMPLES[name]
    handler = re.search(r"<!-- example model -->\n```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[1]  # type: ignore[index]
    write_model(tmp_path, handler, "model")
    write_inputs(tmp_path, {example["input_name"]: example["input"]})
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / "conveyor"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m conveyor "$@"\n')
    shim.chmod(0o755)
    environment = {
        **os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01",
    }
    result = subprocess.run(["bash", "-c", example["command"]], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = re.escape(example["output"]).replace("<uuid>", UUID).replace("<time>", TIME)
    produced = (tmp_path / "out" / example["output_name"]).read_text()
    assert re.fullmatch(expected, produced), produced
