"""The attempts a job allows hold under the server as they do under `conveyor transform`: a
hanging handler is tried once plus InvocationsMaxRetries times, then its object fails, however
often its item goes back to the store between tries."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.models import sleepy, write_model
from tests.server import ServerProcess, wait_for_status

LOG_GROUP = "/aws/sagemaker/TransformJobs"


def test_a_hanging_handler_is_retried_exactly_invocations_max_retries_times(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm, logs = conveyor_server.client("sagemaker"), conveyor_server.client("logs")
    name, model = f"hang-{uuid.uuid4().hex[:8]}", f"hang-model-{uuid.uuid4().hex[:8]}"
    model_dir = write_model(tmp_path, sleepy(3600))
    sm.create_model(ModelName=model, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 1},
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp_path}/in/"}}, "ContentType": "text/csv"},
        TransformOutput={"S3OutputPath": f"file://{tmp_path}/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    description = wait_for_status(sm, name, timeout=90)
    assert description["TransformJobStatus"] == "Failed"
    assert description["FailureReason"] == (
        f"1 of 1 input object failed. First: file://{tmp_path}/in/a.csv: the model did not answer within "
        "InvocationsTimeoutInSeconds=1 in 2 attempts (InvocationsMaxRetries=1)"
    )
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=f"{name}/instance-1/data-log", startFromHead=True)["events"]
    restarts = [event["message"] for event in events if "took longer than InvocationsTimeoutInSeconds=1" in event["message"]]
    assert len(restarts) == 2
    assert not (tmp_path / "out" / "a.csv.out").exists()
