"""`conveyor jobs`, `conveyor models` and `conveyor logs`, run as a user runs them, against a
real server: tables and descriptions, progress, stop and wait, the log (and `--follow`), and
the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conveyor.cli import main
from tests.models import BRACKET, FAIL_ON_BAD, SLOW_ON_SLOW, sleepy, write_model
from tests.server import ServerProcess, free_port, wait_for_status

# Half a second per record: a job that runs long enough for `--follow` to see it running.
SLEEPY = sleepy(0.5)


def conveyor(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


@pytest.fixture(scope="module")
def env(conveyor_server: ServerProcess) -> dict[str, str]:
    """A user's shell: keys in the standard AWS chain, the server in CONVEYOR_ENDPOINT."""
    return {**conveyor_server.client_env(), "CONVEYOR_ENDPOINT": conveyor_server.endpoint, "COLUMNS": "200"}


@pytest.fixture(scope="module")
def suffix() -> str:
    return uuid.uuid4().hex[:8]


def create_model(server: ServerProcess, root: Path, name: str, handler: str) -> str:
    model_dir = write_model(root, handler, name)
    server.client().create_model(ModelName=name, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(model_dir)})
    return name


def create_job(server: ServerProcess, root: Path, name: str, model: str, objects: dict[str, bytes]) -> str:
    source = root / f"{name}-in"
    source.mkdir()
    for key, data in objects.items():
        (source / key).write_bytes(data)
    server.client().create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source.as_uri()}},
            "ContentType": "application/octet-stream",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": (root / f"{name}-out").as_uri(), "AssembleWith": "Line"},
        TransformResources={"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        ModelClientConfig={"InvocationsMaxRetries": 0},
    )
    return name


@pytest.fixture(scope="module")
def jobs(conveyor_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory, suffix: str) -> dict[str, str]:
    """A completed job and a failed one, started together and awaited by the tests that need them."""
    root = tmp_path_factory.mktemp("cli-client")
    bracket = create_model(conveyor_server, root, f"cli-bracket-{suffix}", BRACKET)
    failing = create_model(conveyor_server, root, f"cli-failing-{suffix}", FAIL_ON_BAD)
    return {
        "done": create_job(conveyor_server, root, f"cli-done-{suffix}", bracket, {"a.txt": b"one\ntwo\n", "b.txt": b"three\n"}),
        "failed": create_job(conveyor_server, root, f"cli-failed-{suffix}", failing, {"bad.txt": b"bad\n"}),
    }


# jobs wait, list, describe


def test_jobs_wait_shows_progress_until_the_job_completes(env: dict[str, str], jobs: dict[str, str]) -> None:
    result = conveyor("jobs", "wait", jobs["done"], "--interval", "0.2", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Completed {jobs['done']}: 2/2 objects, 3 records")
    assert jobs["done"] in result.stderr  # the bar, labelled with the job


def test_jobs_wait_exits_1_with_the_reason_when_the_job_fails(env: dict[str, str], jobs: dict[str, str]) -> None:
    result = conveyor("jobs", "wait", jobs["failed"], "--interval", "0.2", "--quiet", env=env)
    assert result.returncode == 1
    assert result.stdout.startswith(f"Failed {jobs['failed']}: 1/1 objects (1 failed)")
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"conveyor jobs wait: {jobs['failed']} failed: 1 of 1 input object failed. First: "
    )
    assert "cannot score a bad record" in result.stderr


def test_jobs_list_is_a_table_filtered_by_status_and_name(env: dict[str, str], jobs: dict[str, str], suffix: str, conveyor_server: ServerProcess) -> None:
    for name in jobs.values():
        wait_for_status(conveyor_server.client(), name)
    result = conveyor("jobs", "list", "--name-contains", suffix, "--sort-by", "name", "--sort-order", "ascending", env=env)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATUS", "CREATED", "DURATION"]
    assert [row.split()[:2] for row in rows] == [[jobs["done"], "Completed"], [jobs["failed"], "Failed"]]
    assert "1 of 1 input object failed." in rows[1]

    failed_only = conveyor("jobs", "list", "--status", "Failed", "--name-contains", suffix, env=env)
    assert [row.split()[0] for row in failed_only.stdout.splitlines()[1:]] == [jobs["failed"]]

    limited = conveyor("jobs", "list", "--name-contains", suffix, "--max", "1", env=env)
    assert len(limited.stdout.splitlines()) == 2
    assert "more jobs than --max 1" in limited.stderr


def test_jobs_describe_shows_definition_and_progress(env: dict[str, str], jobs: dict[str, str], suffix: str, conveyor_server: ServerProcess) -> None:
    wait_for_status(conveyor_server.client(), jobs["done"])
    result = conveyor("jobs", "describe", jobs["done"], env=env)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["Name"].strip() == jobs["done"]
    assert fields["Status"].strip() == "Completed"
    assert fields["Progress"].strip().startswith("2/2 objects, 3 records")
    assert fields["Model"].strip() == f"cli-bracket-{suffix}"
    assert "split Line" in fields["Input"]
    assert fields["Instances"].strip() == "1 × ml.m5.large"


def test_jobs_describe_json_is_the_raw_response(env: dict[str, str], jobs: dict[str, str], conveyor_server: ServerProcess) -> None:
    wait_for_status(conveyor_server.client(), jobs["failed"])
    result = conveyor("jobs", "describe", jobs["failed"], "--json", env=env)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert described["TransformJobName"] == jobs["failed"]
    assert described["TransformJobStatus"] == "Failed"
    assert "cannot score a bad record" in described["FailureReason"]
    assert "ResponseMetadata" not in described


# jobs stop


def test_jobs_stop_then_stop_wait(env: dict[str, str], conveyor_server: ServerProcess, tmp_path: Path, suffix: str) -> None:
    model = create_model(conveyor_server, tmp_path, f"cli-slow-{suffix}", SLOW_ON_SLOW)
    first = create_job(conveyor_server, tmp_path, f"cli-stop-{suffix}", model, {"a.bin": b"slow\n"})
    second = create_job(conveyor_server, tmp_path, f"cli-stop-wait-{suffix}", model, {"a.bin": b"slow\n"})

    stopped = conveyor("jobs", "stop", first, env=env)
    assert (stopped.returncode, stopped.stdout.strip()) == (0, f"Stopping {first}"), stopped.stderr

    waited = conveyor("jobs", "stop", second, "--wait", "--interval", "0.2", env=env, timeout=40)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"Stopped {second}: 0/1 objects")

    assert wait_for_status(conveyor_server.client(), first, timeout=30)["TransformJobStatus"] == "Stopped"
    again = conveyor("jobs", "stop", first, env=env)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "conveyor jobs stop: ValidationException: The request was rejected because the transform job is in status Stopped."
    )


# logs


def test_logs_prints_time_stream_and_message(env: dict[str, str], jobs: dict[str, str], conveyor_server: ServerProcess) -> None:
    wait_for_status(conveyor_server.client(), jobs["done"])
    result = conveyor("logs", jobs["done"], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    moment, stream, message = lines[0].split(" ", 2)
    assert moment[:4].isdigit() and "T" in moment
    assert stream == "instance-1"
    assert any("MaxConcurrentTransforms=" in line for line in lines)
    assert lines[-1].split(" ", 2)[1:] == ["instance-1", "Completed."]


def test_logs_follow_prints_until_the_job_ends(env: dict[str, str], conveyor_server: ServerProcess, tmp_path: Path, suffix: str) -> None:
    model = create_model(conveyor_server, tmp_path, f"cli-sleepy-{suffix}", SLEEPY)
    name = create_job(conveyor_server, tmp_path, f"cli-follow-{suffix}", model, {"a.txt": b"1\n", "b.txt": b"2\n", "c.txt": b"3\n"})
    started = time.monotonic()
    result = conveyor("logs", name, "--follow", "--interval", "0.2", env=env)
    assert result.returncode == 0, result.stderr
    assert conveyor_server.client().describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "Completed"
    messages = [line.split(" ", 2)[2] for line in result.stdout.splitlines()]
    assert messages[0].startswith("Starting")
    assert messages[-1] == "Completed."
    assert len(messages) == len(set(result.stdout.splitlines())), "no event printed twice"
    assert time.monotonic() - started >= 1.0  # it really followed a running job


def test_logs_of_an_unknown_job(env: dict[str, str]) -> None:
    result = conveyor("logs", "no-such-job", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == 'conveyor logs: ValidationException: Could not find requested job with name "no-such-job".'


# models


def test_models_create_describe_list_delete(env: dict[str, str], tmp_path: Path, suffix: str, conveyor_server: ServerProcess) -> None:
    write_model(tmp_path, BRACKET, "my-model")
    name = f"cli-model-{suffix}"
    created = conveyor("models", "create", name, "--model-data", "my-model", "--env", "A=1", "--env", "B=x=y", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().endswith(f":model/{name}")

    container = conveyor_server.client().describe_model(ModelName=name)["PrimaryContainer"]
    assert container == {"Image": "conveyor:python", "ModelDataUrl": str(tmp_path / "my-model"), "Environment": {"A": "1", "B": "x=y"}}

    described = conveyor("models", "describe", name, env=env)
    fields = {key: value.strip() for key, value in (line.split(":", 1) for line in described.stdout.splitlines())}
    assert fields["Image"] == "conveyor:python"
    assert fields["ModelDataUrl"] == str(tmp_path / "my-model")
    assert fields["Environment"] == "A=1 B=x=y"
    assert json.loads(conveyor("models", "describe", name, "--json", env=env).stdout)["ModelName"] == name

    listed = conveyor("models", "list", "--name-contains", name, env=env)
    assert [row.split()[0] for row in listed.stdout.splitlines()] == ["NAME", name]

    assert conveyor("models", "delete", name, env=env).stdout.strip() == f"Deleted model {name}"
    gone = conveyor("models", "describe", name, env=env)
    assert gone.returncode == 1
    assert gone.stderr.startswith('conveyor models describe: ValidationException: Could not find model "arn:aws:sagemaker:')


def test_models_create_passes_uris_through(env: dict[str, str], suffix: str, conveyor_server: ServerProcess) -> None:
    name = f"cli-s3-model-{suffix}"
    result = conveyor("models", "create", name, "--model-data", "s3://bucket/model.tar.gz", "--image", "my-image:1", env=env)
    assert result.returncode == 0, result.stderr
    container = conveyor_server.client().describe_model(ModelName=name)["PrimaryContainer"]
    assert (container["Image"], container["ModelDataUrl"]) == ("my-image:1", "s3://bucket/model.tar.gz")


# connection and errors


def test_keys_fall_back_to_the_servers_key_file(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    """With nothing in the AWS chain, `$CONVEYOR_HOME/credentials` (the server's file) signs."""
    environment = {
        key: value for key, value in conveyor_server.client_env().items() if not key.startswith("AWS_")
    } | {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "CONVEYOR_HOME": str(conveyor_server.home),
        "HOME": str(tmp_path),
    }
    result = conveyor("models", "list", "--endpoint", conveyor_server.endpoint, "--max", "1", env=environment)
    assert result.returncode == 0, result.stderr

    environment["CONVEYOR_HOME"] = str(tmp_path / "elsewhere")
    result = conveyor("models", "list", "--endpoint", conveyor_server.endpoint, env=environment)
    assert result.returncode == 1
    assert result.stderr.startswith("conveyor models list: no AWS credentials found")


def test_a_wrong_secret_is_one_line_with_the_aws_code(env: dict[str, str], conveyor_server: ServerProcess, tmp_path: Path) -> None:
    access_key_id = conveyor_server.session().get_credentials().access_key
    wrong = tmp_path / "credentials"
    wrong.write_text(f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {'x' * 40}\n")
    environment = {**env, "AWS_SHARED_CREDENTIALS_FILE": str(wrong)}
    for command, shown in ((("jobs", "list"), "jobs list"), (("logs", "any-job"), "logs")):  # SageMaker's API, Conveyor's routes
        result = conveyor(*command, env=environment)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith(f"conveyor {shown}: InvalidSignatureException: The request signature we calculated")


# without a server: flags, help and connection failures, run in-process


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exit:
        status = int(exit.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + "A" * 16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_an_unreachable_server_is_named(capsys: pytest.CaptureFixture[str], keys: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    status, out, err = cli(capsys, "jobs", "list", "--endpoint", endpoint)
    assert (status, out) == (1, "")
    assert err.startswith(f"conveyor jobs list: cannot reach a Conveyor server at {endpoint}")
    assert len(err.splitlines()) == 1


def test_models_create_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], keys: None, tmp_path: Path) -> None:
    status, _, err = cli(capsys, "models", "create", "m", "--model-data", str(tmp_path / "absent"))
    assert status == 2
    assert err.startswith(f"conveyor models create: --model-data {tmp_path / 'absent'}: no such file or directory")
    status, _, err = cli(capsys, "models", "create", "m", "--model-data", str(tmp_path), "--env", "NOVALUE")
    assert (status, err.strip()) == (2, "conveyor models create: --env 'NOVALUE': expected KEY=VALUE")


@pytest.mark.parametrize(
    "args",
    [("jobs", "list", "--status", "Done"), ("jobs", "list", "--max", "0"), ("jobs", "list", "--endpoint", "localhost:8765"), ("jobs",), ("logs",)],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], keys: None, args: tuple[str, ...]) -> None:
    status, out, err = cli(capsys, *args)
    assert (status, out) == (2, "")
    assert err.strip().splitlines()[-1].startswith("conveyor ")


def test_status_names_are_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    from conveyor.cli import build_parser

    args = build_parser().parse_args(["jobs", "list", "--status", "inprogress", "--sort-by", "name"])
    assert (args.status, args.sort_by, args.sort_order) == ("InProgress", "Name", "Descending")


@pytest.mark.parametrize("command", [("jobs",), ("models",), ("logs",), ("jobs", "wait"), ("models", "create")])
def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    status, out, _ = cli(capsys, *command, "--help")
    assert status == 0
    assert "example" in out
    assert "conveyor " + command[0] in out.split("example", 1)[1]
