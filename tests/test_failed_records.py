"""Tolerating bad records (a Conveyor extension): a payload that fails for good is bisected down
to the records that fail; their outputs are empty lines, the others are in place and in order,
and `<output>/<job>.errors.jsonl` lists the failed ones. Without a limit, SageMaker's behaviour."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.models import write_model
from tests.server import ServerProcess, start_server, wait_for_status
from tests.test_server_trust import sign_in
from tests.test_transform_cli import conveyor

# Upper-cases each line; fails any payload holding a "bad" record; counts its invocations.
COUNTING_FAIL_ON_BAD = """
from pathlib import Path

CALLS = Path(__file__).parent / "calls"

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    with CALLS.open("a") as calls:
        calls.write("x")
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body.upper()
"""

ROWS = [f"bad-{n}" if n in (5, 13) else f"row-{n}" for n in range(1, 21)]


def write_rows(folder: Path, name: str, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f"{row}\n" for row in rows))
    return folder / name


def run(tmp_path: Path, *flags: str, rows: list[str] = ROWS):
    model = write_model(tmp_path, COUNTING_FAIL_ON_BAD)
    write_rows(tmp_path / "in", "rows.csv", rows)
    result = conveyor(
        "transform", "--name", "tolerant", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--retries", "1", *flags,
        home=tmp_path / "home",
    )  # fmt: skip
    calls = len((model / "code" / "calls").read_text()) if (model / "code" / "calls").exists() else 0
    return result, calls


def manifest(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "tolerant.errors.jsonl").read_text().splitlines()]


def offset_of(rows: list[str], number: int) -> int:
    return sum(len(row) + 1 for row in rows[: number - 1])


def test_within_the_limit_every_other_record_is_in_place_and_the_manifest_lists_the_bad_ones(tmp_path: Path) -> None:
    result, calls = run(tmp_path, "--max-failed-records", "5")
    assert result.returncode == 0, result.stderr
    expected = "".join("\n" if row.startswith("bad") else row.upper() + "\n" for row in ROWS)
    assert (tmp_path / "out" / "rows.csv.out").read_text() == expected
    source = f"file://{tmp_path / 'in' / 'rows.csv'}"
    assert manifest(tmp_path) == [
        {"object": source, "record": number, "offset": offset_of(ROWS, number),
         "error": manifest(tmp_path)[index]["error"], "attempts": manifest(tmp_path)[index]["attempts"]}
        for index, number in enumerate((5, 13))
    ]  # fmt: skip
    for entry in manifest(tmp_path):
        assert "cannot score a bad record" in entry["error"] and entry["attempts"] >= 3
    # The payload (1 try + 1 retry), then at most 2·log2(n) tries per bad record.
    assert calls <= 2 + 2 * math.ceil(math.log2(len(ROWS))) * 2
    assert "2 records failed in all; the errors manifest" in result.stderr


def test_single_record_payloads_fail_alone(tmp_path: Path) -> None:
    result, calls = run(tmp_path, "--max-failed-records", "2", "--strategy", "SingleRecord")
    assert result.returncode == 0, result.stderr
    assert [entry["record"] for entry in manifest(tmp_path)] == [5, 13]
    assert calls == len(ROWS) + 2  # each bad record: one try and one retry, no bisection


def test_without_a_limit_the_job_fails_as_sagemaker_does_naming_the_object(tmp_path: Path) -> None:
    result, _ = run(tmp_path)
    assert result.returncode == 1
    assert f"FailureReason: 1 of 1 input object failed. First: file://{tmp_path / 'in' / 'rows.csv'}: " in result.stderr
    assert not (tmp_path / "out" / "rows.csv.out").exists()
    assert not (tmp_path / "out" / "tolerant.errors.jsonl").exists()


def test_over_the_limit_the_job_fails_naming_the_limit_and_the_manifest(tmp_path: Path) -> None:
    result, _ = run(tmp_path, "--max-failed-records", "1")
    assert result.returncode == 1
    uri = f"file://{tmp_path / 'out' / 'tolerant.errors.jsonl'}"
    assert "More records failed than CONVEYOR_MAX_FAILED_RECORDS=1 allows: 2 of " in result.stderr
    assert f"The errors manifest {uri} lists them." in result.stderr
    assert [entry["record"] for entry in manifest(tmp_path)] == [5, 13]


def test_a_percentage_is_checked_against_the_jobs_records_at_the_end(tmp_path: Path) -> None:
    result, _ = run(tmp_path, "--max-failed-records", "10%")
    assert result.returncode == 0, result.stderr  # 2 of 20 is 10 %
    result, _ = run(tmp_path / "tighter", "--max-failed-records", "9.9%")
    assert result.returncode == 1
    assert "More records failed than CONVEYOR_MAX_FAILED_RECORDS=9.9% allows: 2 of 20 records failed." in result.stderr


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (("--max-failed-records", "lots"), "Environment CONVEYOR_MAX_FAILED_RECORDS='lots' is not a limit Conveyor can use: it must be a whole number"),
        (("--max-failed-records", "101%"), "from 0% to 100%"),
        (("--max-failed-records", "3", "--assemble-with", "None"), "needs each record's output to be told apart"),
        (("--max-failed-records", "3", "--env", "CONVEYOR_MAX_FAILED_RECORDS=4"),
         "--max-failed-records 3 and Environment CONVEYOR_MAX_FAILED_RECORDS='4' disagree: give one of them"),
    ],
)
def test_a_limit_that_cannot_be_used_is_refused_before_running(tmp_path: Path, flags: tuple[str, ...], fragment: str) -> None:
    result, calls = run(tmp_path, *flags)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert calls == 0


def test_the_environment_key_is_consumed_not_passed_to_the_model(tmp_path: Path) -> None:
    handler = "import os\n\ndef model_fn(model_dir):\n    return None\n\ndef transform_fn(model, body, content_type, accept):\n" \
              "    return repr(os.environ.get('CONVEYOR_MAX_FAILED_RECORDS')) + '\\n'\n"  # fmt: skip
    model = write_model(tmp_path, handler)
    write_rows(tmp_path / "in", "rows.csv", ["a"])
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--content-type", "text/csv",
        "--split-type", "Line", "--assemble-with", "Line", "--env", "CONVEYOR_MAX_FAILED_RECORDS=2", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "rows.csv.out").read_text() == "None\n"


def test_the_limit_through_boto3_against_the_server_has_the_flags_effect(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm = conveyor_server.client()
    model_dir = write_model(tmp_path, COUNTING_FAIL_ON_BAD)
    model, name = f"tolerant-{uuid.uuid4().hex[:8]}", f"tolerant-{uuid.uuid4().hex[:8]}"
    sm.create_model(ModelName=model, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"})
    write_rows(tmp_path / "in", "rows.csv", ROWS)
    sm.create_transform_job(
        TransformJobName=name, ModelName=model, Environment={"CONVEYOR_MAX_FAILED_RECORDS": "5"},
        ModelClientConfig={"InvocationsMaxRetries": 0},
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/out/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )  # fmt: skip
    assert wait_for_status(sm, name)["TransformJobStatus"] == "Completed"
    expected = "".join("\n" if row.startswith("bad") else row.upper() + "\n" for row in ROWS)
    assert (tmp_path / "out" / "rows.csv.out").read_text() == expected
    lines = [json.loads(line) for line in (tmp_path / "out" / f"{name}.errors.jsonl").read_text().splitlines()]
    assert [entry["record"] for entry in lines] == [5, 13]
    environment = {**conveyor_server.client_env(), "CONVEYOR_ENDPOINT": conveyor_server.endpoint, "COLUMNS": "300"}
    described = subprocess.run([sys.executable, "-m", "conveyor", "jobs", "describe", name], capture_output=True, text=True, env=environment)
    assert f"2 records failed (listed in file://{tmp_path}/out/{name}.errors.jsonl)" in described.stdout, described.stdout
    logs = conveyor_server.client("logs").get_log_events(
        logGroupName="/aws/sagemaker/TransformJobs", logStreamName=f"{name}/instance-1", startFromHead=True
    )["events"]  # fmt: skip
    assert any(f"2 records failed in all; the errors manifest file://{tmp_path}/out/{name}.errors.jsonl lists them." in e["message"] for e in logs)
    console = sign_in(conveyor_server)
    try:
        state = console.get(f"/console/api/jobs/{name}").json()
        page = console.get(f"/console/jobs/{name}").text
    finally:
        console.close()
    assert (state["failed_records"], state["errors_manifest"]) == (2, f"file://{tmp_path}/out/{name}.errors.jsonl")
    assert "Failed records" in page and f"listed in file://{tmp_path}/out/{name}.errors.jsonl" in page
    with pytest.raises(sm.exceptions.ClientError, match="needs each record's output to be told apart"):
        sm.create_transform_job(
            TransformJobName=f"{name}-whole", ModelName=model, Environment={"CONVEYOR_MAX_FAILED_RECORDS": "5"},
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}}},
            TransformOutput={"S3OutputPath": f"file://{tmp_path}/out2/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )  # fmt: skip


SLOW_FAIL_ON_BAD = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    time.sleep(0.15)
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body.upper()
"""


def test_a_kill_9_mid_job_resumes_with_the_same_outputs_and_manifest(tmp_path: Path) -> None:
    objects = {f"part-{n}.csv": [f"bad-{n}-{i}" if i in (2, 7) else f"row-{n}-{i}" for i in range(1, 9)] for n in range(6)}
    for name, rows in objects.items():
        write_rows(tmp_path / "in", name, rows)
    model_dir = write_model(tmp_path, SLOW_FAIL_ON_BAD)
    server = start_server(tmp_path / "home")
    try:
        sm = server.client()
        sm.create_model(ModelName="slow", PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"})
        sm.create_transform_job(
            TransformJobName="resumed", ModelName="slow", BatchStrategy="SingleRecord", Environment={"CONVEYOR_MAX_FAILED_RECORDS": "20"},
            ModelClientConfig={"InvocationsMaxRetries": 0},
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}},
                            "ContentType": "text/csv", "SplitType": "Line"},
            TransformOutput={"S3OutputPath": f"file://{tmp_path}/out/", "AssembleWith": "Line"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "out").glob("*.csv.out"))) < 2:
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)
        server.kill()
        assert len(list((tmp_path / "out").glob("*.csv.out"))) < len(objects), "the job ended before the kill"
        server = server.restart()
        assert wait_for_status(server.client(), "resumed", timeout=120)["TransformJobStatus"] == "Completed"
    finally:
        server.stop()
    for name, rows in objects.items():
        expected = "".join("\n" if row.startswith("bad") else row.upper() + "\n" for row in rows)
        assert (tmp_path / "out" / f"{name}.out").read_text() == expected
    entries = [json.loads(line) for line in (tmp_path / "out" / "resumed.errors.jsonl").read_text().splitlines()]
    listed = [(Path(entry["object"]).name, entry["record"]) for entry in entries]
    assert listed == [(name, record) for name in sorted(objects) for record in (2, 7)]


def test_a_payload_that_times_out_for_good_counts_its_records_as_failed(tmp_path: Path) -> None:
    handler = (
        "import time\n\ndef model_fn(model_dir):\n    return None\n\n"
        "def transform_fn(model, body, content_type, accept):\n"
        "    body = body if isinstance(body, bytes) else body.encode()\n"
        "    if b'slow' in body:\n        time.sleep(3600)\n    return body.upper()\n"
    )  # fmt: skip
    model = write_model(tmp_path, handler)
    rows = ["a", "b", "slow", "d", "e"]
    write_rows(tmp_path / "in", "rows.csv", rows)
    result = conveyor(
        "transform", "--name", "tolerant", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--strategy", "SingleRecord",
        "--timeout", "1", "--retries", "0", "--max-failed-records", "1", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "rows.csv.out").read_text() == "A\nB\n\nD\nE\n"
    [entry] = manifest(tmp_path)
    assert (entry["record"], entry["attempts"]) == (3, 1)
    assert "did not answer within InvocationsTimeoutInSeconds=1 in 1 attempts" in entry["error"]
