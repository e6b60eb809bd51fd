"""The AWS CLI (v1, the real `aws` command) against a real server: SageMaker's transform-job
commands and CloudWatch Logs' `get-log-events` / `describe-log-streams`, signed as AWS signs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.job_requests import job_request
from tests.models import BRACKET, SLOW_ON_SLOW, write_model
from tests.server import ServerProcess, wait_for_status

AWS = str(Path(sys.executable).with_name("aws"))
LOG_GROUP = "/aws/sagemaker/TransformJobs"


def aws(server: ServerProcess, service: str, operation: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [AWS, service, operation, *args, "--endpoint-url", server.endpoint, "--region", "us-east-1", "--output", "json"]
    return subprocess.run(command, capture_output=True, text=True, env={**server.client_env(), **(env or {})}, timeout=60)


def aws_json(server: ServerProcess, service: str, operation: str, *args: str) -> dict[str, Any]:
    result = aws(server, service, operation, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def create_from_file(server: ServerProcess, operation: str, request: dict[str, Any], folder: Path) -> dict[str, Any]:
    path = folder / f"{operation}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(request))
    return aws_json(server, "sagemaker", operation, "--cli-input-json", f"file://{path}")


@pytest.fixture(scope="module")
def finished_job(conveyor_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model and a completed job, both created with `--cli-input-json file://…`."""
    root = tmp_path_factory.mktemp("awscli")
    suffix = uuid.uuid4().hex[:8]
    model = f"awscli-model-{suffix}"
    created = create_from_file(
        conveyor_server,
        "create-model",
        {"ModelName": model, "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": str(write_model(root, BRACKET))}},
        root,
    )
    assert created["ModelArn"].endswith(f":model/{model}")
    (root / "in").mkdir()
    (root / "in" / "a.txt").write_text("one\ntwo\n")
    name = f"awscli-job-{suffix}"
    created = create_from_file(conveyor_server, "create-transform-job", job_request(name, model, (root / "in").as_uri(), (root / "out").as_uri(), content_type="text/plain", AssembleWith="Line"), root)
    assert created["TransformJobArn"].endswith(f":transform-job/{name}")
    wait_for_status(conveyor_server.client(), name)
    return {"name": name, "model": model, "root": root}


def test_create_transform_job_from_cli_input_json_runs_the_job(finished_job: dict[str, Any]) -> None:
    assert (finished_job["root"] / "out" / "a.txt.out").read_text() == "<one\ntwo\n>\n"


def test_list_transform_jobs_filters_by_status(conveyor_server: ServerProcess, finished_job: dict[str, Any]) -> None:
    name = finished_job["name"]
    completed = aws_json(conveyor_server, "sagemaker", "list-transform-jobs", "--status-equals", "Completed", "--name-contains", name)
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in completed["TransformJobSummaries"]] == [(name, "Completed")]
    failed = aws_json(conveyor_server, "sagemaker", "list-transform-jobs", "--status-equals", "Failed", "--name-contains", name)
    assert failed["TransformJobSummaries"] == []


def test_describe_transform_job(conveyor_server: ServerProcess, finished_job: dict[str, Any]) -> None:
    job = aws_json(conveyor_server, "sagemaker", "describe-transform-job", "--transform-job-name", finished_job["name"])
    assert job["TransformJobStatus"] == "Completed"
    assert job["ModelName"] == finished_job["model"]
    assert job["TransformOutput"]["S3OutputPath"] == (finished_job["root"] / "out").as_uri()
    assert job["TransformEndTime"] >= job["TransformStartTime"] >= job["CreationTime"]


def test_describe_unknown_job_shows_the_validation_error(conveyor_server: ServerProcess) -> None:
    result = aws(conveyor_server, "sagemaker", "describe-transform-job", "--transform-job-name", "no-such-job-here")
    assert result.returncode in (254, 255)
    assert "(ValidationException)" in result.stderr
    assert 'Could not find requested job with name "no-such-job-here"' in result.stderr


def test_stop_transform_job_on_a_slow_model(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    model = f"awscli-slow-{uuid.uuid4().hex[:8]}"
    model_dir = write_model(tmp_path, SLOW_ON_SLOW)
    create_from_file(conveyor_server, "create-model", {"ModelName": model, "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": str(model_dir)}}, tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.bin").write_bytes(b"slow\n")
    name = f"{model}-job"
    create_from_file(conveyor_server, "create-transform-job", job_request(name, model, (tmp_path / "in").as_uri(), (tmp_path / "out").as_uri(), content_type="application/octet-stream", AssembleWith="Line"), tmp_path)

    assert aws(conveyor_server, "sagemaker", "stop-transform-job", "--transform-job-name", name).returncode == 0
    status = aws_json(conveyor_server, "sagemaker", "describe-transform-job", "--transform-job-name", name)["TransformJobStatus"]
    assert status in ("Stopping", "Stopped")
    wait_for_status(conveyor_server.client(), name, ("Stopped",), timeout=30)
    assert not (tmp_path / "out" / "a.bin.out").exists()


def test_describe_log_streams_lists_the_jobs_streams(conveyor_server: ServerProcess, finished_job: dict[str, Any]) -> None:
    name = finished_job["name"]
    response = aws_json(
        conveyor_server, "logs", "describe-log-streams", "--log-group-name", LOG_GROUP, "--log-stream-name-prefix", f"{name}/"
    )
    streams = [stream["logStreamName"] for stream in response["logStreams"]]
    assert f"{name}/instance-1" in streams
    assert all(stream.startswith(f"{name}/") for stream in streams)


def test_describe_log_streams_without_a_prefix_lists_every_jobs_streams(
    conveyor_server: ServerProcess, finished_job: dict[str, Any]
) -> None:
    name = finished_job["name"]
    everything = aws_json(conveyor_server, "logs", "describe-log-streams", "--log-group-name", LOG_GROUP)  # the CLI pages
    names = [stream["logStreamName"] for stream in everything["logStreams"]]
    assert f"{name}/instance-1" in names and names == sorted(names)
    by_job_prefix = aws_json(
        conveyor_server, "logs", "describe-log-streams", "--log-group-name", LOG_GROUP, "--log-stream-name-prefix", name[:-2]
    )
    assert f"{name}/instance-1" in [stream["logStreamName"] for stream in by_job_prefix["logStreams"]]


def test_get_log_events_prints_the_jobs_log(conveyor_server: ServerProcess, finished_job: dict[str, Any]) -> None:
    name = finished_job["name"]
    result = aws(
        conveyor_server, "logs", "get-log-events", "--log-group-name", LOG_GROUP, "--log-stream-name", f"{name}/instance-1",
        "--start-from-head",
    )
    assert result.returncode == 0, result.stderr
    messages = [event["message"] for event in json.loads(result.stdout)["events"]]
    assert any("MaxConcurrentTransforms=" in message for message in messages), messages
    assert messages[-1] == "Completed."


def test_get_log_events_for_an_unknown_stream(conveyor_server: ServerProcess) -> None:
    result = aws(conveyor_server, "logs", "get-log-events", "--log-group-name", LOG_GROUP, "--log-stream-name", "no-such-job/instance-1")
    assert result.returncode in (254, 255)
    assert "(ResourceNotFoundException)" in result.stderr


@pytest.mark.parametrize(
    ("service", "operation", "args"),
    [
        ("sagemaker", "list-transform-jobs", ()),
        ("logs", "describe-log-streams", ("--log-group-name", LOG_GROUP)),
    ],
)
def test_a_wrong_secret_is_refused_with_invalid_signature(
    conveyor_server: ServerProcess, tmp_path: Path, service: str, operation: str, args: tuple[str, ...]
) -> None:
    access_key_id = conveyor_server.session().get_credentials().access_key
    wrong = tmp_path / "credentials"
    wrong.write_text(f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {'x' * 40}\n")
    result = aws(conveyor_server, service, operation, *args, env={"AWS_SHARED_CREDENTIALS_FILE": str(wrong)})
    assert result.returncode in (254, 255)
    assert "(InvalidSignatureException)" in result.stderr
    assert result.stdout == ""


def test_an_unknown_access_key_is_refused(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    unknown = tmp_path / "credentials"
    unknown.write_text(f"[default]\naws_access_key_id = AKIA{'Z' * 16}\naws_secret_access_key = {'x' * 40}\n")
    result = aws(conveyor_server, "sagemaker", "list-transform-jobs", env={"AWS_SHARED_CREDENTIALS_FILE": str(unknown)})
    assert result.returncode in (254, 255)
    assert "(UnrecognizedClientException)" in result.stderr
