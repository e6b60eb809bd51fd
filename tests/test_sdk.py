"""`conveyor.Transformer` and `conveyor.Model` against a real `conveyor server`, and in-process."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

import conveyor
from conveyor.sdk import LocalSession, RemoteSession, UnexpectedStatusException
from conveyor.sdk.session import default_local_session
from conveyor.sdk.transformer import LogFollower
from conveyor.settings import Settings
from tests.models import FAIL_ON_BAD, FIELD_COUNT, SLOW_ON_SLOW, write_model
from tests.server import ServerProcess

TIMESTAMP = r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}"
ROWS = b"1,2,3\n4,5\n6\n"


def write_input(root: Path, body: bytes = ROWS, name: str = "data.csv") -> Path:
    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(body)
    return folder


def remote(server: ServerProcess) -> RemoteSession:
    return RemoteSession(server.endpoint, boto_session=server.session())


def test_join_source_input_waits_and_prints_the_log(conveyor_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = conveyor.Model(write_model(tmp_path, FIELD_COUNT), session=remote(conveyor_server))
    transformer = model.transformer(
        instance_count=1,
        instance_type="ml.m5.xlarge",
        output_path=str(tmp_path / "out"),
        assemble_with="Line",
        accept="text/csv",
        env={"GREETING": "hello"},
        max_payload=1,
        max_concurrent_transforms=2,
        tags={"team": "search"},
        output_kms_key="alias/output",
    )
    transformer.transform(
        str(write_input(tmp_path)),
        content_type="text/csv",
        split_type="Line",
        join_source="Input",
        model_client_config={"InvocationsTimeoutInSeconds": 30, "InvocationsMaxRetries": 1},
        wait=True,
        logs=True,
    )

    assert (tmp_path / "out" / "data.csv.out").read_bytes() == b"1,2,3,3\n4,5,2\n6,1\n"
    job_name = transformer.latest_transform_job.job_name
    assert re.fullmatch(rf"conveyor-{TIMESTAMP}", model.name)
    assert re.fullmatch(rf"conveyor-{TIMESTAMP}", job_name)  # base name from the image, as the SDK names it

    printed = capsys.readouterr().out.splitlines()
    client = conveyor_server.client("logs")
    stream = client.describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{job_name}/")
    logged = [
        event["message"]
        for s in stream["logStreams"]
        for event in client.get_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamName=s["logStreamName"], startFromHead=True)["events"]
    ]
    assert logged and sorted(printed) == sorted(logged)
    assert printed[-1] == "Completed."

    description = transformer.describe()
    assert description["TransformJobStatus"] == "Completed"
    assert description["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(tmp_path / "in")}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    }
    assert description["TransformOutput"] == {
        "S3OutputPath": str(tmp_path / "out"), "KmsKeyId": "alias/output", "AssembleWith": "Line", "Accept": "text/csv",
    }  # fmt: skip
    assert description["TransformResources"] == {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"}
    assert description["DataProcessing"] == {"JoinSource": "Input"}
    assert description["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 30, "InvocationsMaxRetries": 1}
    assert (description["Environment"], description["MaxPayloadInMB"], description["MaxConcurrentTransforms"]) == ({"GREETING": "hello"}, 1, 2)
    tags = conveyor_server.client().list_tags(ResourceArn=description["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "search"}]
    container = conveyor_server.client().describe_model(ModelName=model.name)["PrimaryContainer"]
    assert container == {"Image": "conveyor:python", "Environment": {}, "ModelDataUrl": str(tmp_path / "model")}


def test_failed_job_raises_with_the_failure_reason(conveyor_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = remote(conveyor_server)
    model_name = conveyor.Model(write_model(tmp_path, FAIL_ON_BAD), name="sdk-fails", session=session).create()
    transformer = conveyor.Transformer(model_name, 1, "local", output_path=str(tmp_path / "out"), base_transform_job_name="sdk-failing", session=session)
    with pytest.raises(UnexpectedStatusException) as caught:
        transformer.transform(
            str(write_input(tmp_path, b"good\nbad\n")), split_type="Line", model_client_config={"InvocationsMaxRetries": 0}
        )
    reason = transformer.describe()["FailureReason"]
    assert "cannot score a bad record" in reason
    assert caught.value.actual_status == "Failed"
    assert str(caught.value) == f"Error for Transform job {transformer.latest_transform_job.job_name}: Failed. Reason: {reason}"
    assert re.fullmatch(rf"sdk-failing-{TIMESTAMP}", transformer.latest_transform_job.job_name)
    assert f"Failed. FailureReason: {reason}" in capsys.readouterr().out
    assert not (tmp_path / "out" / "data.csv.out").exists()


def test_attach_rebuilds_the_transformer_from_the_job(
    conveyor_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = conveyor.Model(write_model(tmp_path, FIELD_COUNT), session=remote(conveyor_server))
    transformer = model.transformer(
        instance_count=1, output_path=str(tmp_path / "out"), strategy="SingleRecord", assemble_with="Line", accept="text/csv"
    )
    transformer.transform(str(write_input(tmp_path)), content_type="text/csv", split_type="Line", job_name="sdk-attach", wait=False)

    # endpoint_url alone: keys come from the standard chain (here the server's credentials file)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(conveyor_server.credentials_file))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    attached = conveyor.Transformer.attach("sdk-attach", endpoint_url=conveyor_server.endpoint)
    assert (attached.model_name, attached.instance_count, attached.instance_type) == (model.name, 1, "local")
    assert (attached.strategy, attached.assemble_with, attached.accept) == ("SingleRecord", "Line", "text/csv")
    assert (attached.output_path, attached.base_transform_job_name) == (str(tmp_path / "out"), "sdk-attach")
    assert attached.latest_transform_job.job_name == "sdk-attach"
    assert attached.wait(logs=False)["TransformJobStatus"] == "Completed"
    assert attached.describe()["TransformJobArn"].endswith(":transform-job/sdk-attach")
    assert capsys.readouterr().out == ""
    assert (tmp_path / "out" / "data.csv.out").read_bytes() == b"3\n2\n1\n"

    with pytest.raises(botocore.exceptions.ClientError, match="Could not find requested job"):
        conveyor.Transformer.attach("sdk-no-such-job", endpoint_url=conveyor_server.endpoint)


def test_stop_transform_job_stops_a_slow_job(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    model = conveyor.Model(write_model(tmp_path, SLOW_ON_SLOW), session=remote(conveyor_server))
    transformer = model.transformer(output_path=str(tmp_path / "out"))
    transformer.transform(str(write_input(tmp_path, b"slow\n")), wait=False)
    deadline = time.monotonic() + 30
    while transformer.describe()["TransformJobStatus"] != "InProgress" and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    transformer.stop_transform_job()
    assert transformer.describe()["TransformJobStatus"] == "Stopped"
    assert time.monotonic() - started < 20  # well before the model's 30 s sleep ends
    assert not (tmp_path / "out" / "data.csv.out").exists()
    transformer.stop_transform_job(wait=False)  # already stopped: a no-op, as in the SDK


def test_runs_in_process_without_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVEYOR_CAPACITY", "1")
    monkeypatch.chdir(tmp_path)
    write_model(tmp_path, FIELD_COUNT)
    write_input(tmp_path)
    model = conveyor.Model("model", name="local-model")  # relative paths, made absolute here
    assert isinstance(model.session, LocalSession)
    assert model.model_data == str(tmp_path / "model")
    try:
        transformer = conveyor.Transformer("local-model", assemble_with="Line", accept="text/csv")
        assert transformer.session is model.session  # one in-process service per CONVEYOR_HOME
        model.create()
        transformer.transform("in/", content_type="text/csv", split_type="Line", join_source="Input", job_name="local-job")
        output = tmp_path / "output" / "local-job" / "data.csv.out"
        assert output.read_bytes() == b"1,2,3,3\n4,5,2\n6,1\n"
        assert transformer.describe()["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == str(tmp_path / "in") + "/"
        assert capsys.readouterr().out.splitlines()[-1] == "Completed."

        with pytest.raises(botocore.exceptions.ClientError) as refused:
            conveyor.Transformer("no-such-model").transform("in/", job_name="local-missing-model")
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert 'Could not find model "' in str(refused.value)
    finally:
        model.session.close()


def test_model_refuses_a_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        conveyor.Model(tmp_path / "no-such-model", session=RemoteSession("http://127.0.0.1:9", region_name="us-east-1"))


def test_the_quick_start_in_the_docs_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = (Path(__file__).parent.parent / "docs" / "sdk.md").read_text()
    example = re.search(r"```python\n(.*?)```", source, re.DOTALL).group(1)  # type: ignore[union-attr]
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVEYOR_CAPACITY", "1")
    monkeypatch.chdir(tmp_path)
    write_model(tmp_path, FIELD_COUNT)
    write_input(tmp_path, b"1,2,3\n4,5\n")
    try:
        exec(compile(example, "docs/sdk.md", "exec"), {"__name__": "__main__"})
    finally:
        default_local_session().close()
    printed = capsys.readouterr().out
    assert printed.endswith("Completed.\n1,2,3,3\n4,5,2\n\n")


class _DataLogBegunWhileRead(LocalSession):
    """The in-process service, where a job's data log begins while the follower reads: the
    instance log's closing line and the data log's first line (the older of the two) are
    logged once the follower has listed the streams, before it reads them."""

    def __init__(self, home: Path) -> None:
        super().__init__(Settings(home=home))
        self.logged = False

    def get_log_events(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.logged:
            self.logged = True
            self.service.store.logs.append("job", "job/instance-1/data-log", 1_000, "[sagemaker logs]: MaxConcurrentTransforms=1")
            self.service.store.logs.append("job", "job/instance-1", 1_001, "Completed.")
        return super().get_log_events(request)


def test_a_log_stream_begun_while_the_follower_reads_is_printed_in_time_order(tmp_path: Path) -> None:
    session = _DataLogBegunWhileRead(tmp_path / "home")
    try:
        session.service.store.logs.append("job", "job/instance-1", 999, "Starting: 1 input object.")
        printed: list[str] = []
        LogFollower(session, "job", printed.append).drain()
    finally:
        session.close()
    assert printed == ["Starting: 1 input object.", "[sagemaker logs]: MaxConcurrentTransforms=1", "Completed."]
