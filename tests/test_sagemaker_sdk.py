"""The SageMaker Python SDK 2.x itself (`sagemaker>=2,<3`) against a real `conveyor server`.

The Developer Guide's high-level example (the seed): upload `valid-data.csv` with boto3, then
`sagemaker.transformer.Transformer(...)`, `transform(...)`, `wait()` with its default
`logs=True`, download `valid-data.csv.out`, and `Transformer.attach`. The SDK tails the job's
log through CloudWatch Logs' API, which the server emulates (`AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`
points the SDK's logs client at it). S3 is the session's `moto_server`; the model is a k-means
handler in an s3:// `model.tar.gz`.

Offline: the SDK's telemetry is opted out through its own config (`TelemetryOptOut`), every
client's endpoint is on 127.0.0.1, and an audit hook records every socket connection and name
lookup this process makes while the SDK is imported and runs: none may leave 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest

from tests.s3_server import S3Server, patched_environment
from tests.server import ServerProcess, start_server
from tests.test_s3_jobs import KMEANS_OUTPUT, KMEANS_ROWS, kmeans_tarball, put_model

LOG_GROUP = "/aws/sagemaker/TransformJobs"
TELEMETRY_OPT_OUT = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


# -- no traffic beyond 127.0.0.1 -----------------------------------------------------------------


class _NetworkWatch:
    """Records, while armed, every connect to and every name lookup of a host other than loopback
    in this process (Python's audit events `socket.connect` and `socket.getaddrinfo`)."""

    def __init__(self) -> None:
        self.armed = False
        self.outbound: list[str] = []
        self._lock = threading.Lock()
        sys.addaudithook(self._hook)  # audit hooks cannot be removed: this one is installed once

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event == "socket.connect":
            address = args[1]
            if isinstance(address, tuple) and not _is_loopback(str(address[0])):
                with self._lock:
                    self.outbound.append(f"connect {address}")
        elif event == "socket.getaddrinfo":
            host = args[0]
            if host is not None and not _is_loopback(host.decode() if isinstance(host, bytes) else str(host)):
                with self._lock:
                    self.outbound.append(f"getaddrinfo {host!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


OFFLINE = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups for keys or region
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # a service given no endpoint of its own: nowhere
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
}
"""The environment the SDK runs in. Importing it builds a default `Session` (jumpstart's
constants), whose clients look for credentials; without keys in the environment botocore would
ask the EC2 instance metadata service (169.254.169.254)."""


_WATCH = _NetworkWatch()
_WATCH.armed = True  # importing the SDK must not reach out either
try:
    with patched_environment(OFFLINE):
        sagemaker = pytest.importorskip("sagemaker", minversion="2")
        import sagemaker.session  # noqa: E402
        import sagemaker.transformer  # noqa: E402
finally:
    _WATCH.armed = False
OUTBOUND_ON_IMPORT = list(_WATCH.outbound)


@pytest.fixture
def network_watch() -> Iterator[_NetworkWatch]:
    _WATCH.outbound.clear()
    _WATCH.armed = True
    try:
        yield _WATCH
    finally:
        _WATCH.armed = False


# -- the SDK's clock, compressed ----------------------------------------------------------------


class _FastClock:
    """`time` for `sagemaker.session`: `sleep(s)` waits at most 0.2 s of real time and moves this
    clock on by `s`, so the SDK's log tailer (10 s polls, a DescribeTransformJob every 30 s)
    runs its state machine unchanged in a fraction of the time."""

    def __init__(self) -> None:
        self._offset = 0.0

    def sleep(self, seconds: float) -> None:
        real = min(seconds, 0.2)
        time.sleep(real)
        self._offset += seconds - real

    def time(self) -> float:
        return time.time() + self._offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("sagemaker-sdk-home"), "--s3-endpoint", s3_server.endpoint_url)
    yield process
    process.stop()


@pytest.fixture
def sagemaker_session(server: ServerProcess, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A `sagemaker.Session` whose SageMaker and Logs clients speak to the conveyor server and
    whose S3 client speaks to moto; keys are the server's (moto takes any)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", server.endpoint)  # botocore's name ("CloudWatch Logs")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", server.endpoint)
    for name in ("AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "SAGEMAKER_SUPPRESS_V2_WARNING"):
        monkeypatch.setenv(name, OFFLINE[name])
    monkeypatch.setattr(sagemaker.session, "time", _FastClock())
    boto_session = server.session()
    return sagemaker.session.Session(
        boto_session=boto_session,
        sagemaker_client=boto_session.client("sagemaker", endpoint_url=server.endpoint),
        sagemaker_runtime_client=boto_session.client("sagemaker-runtime", endpoint_url=server.endpoint),
        default_bucket=s3_bucket,
        sagemaker_config=TELEMETRY_OPT_OUT,
    )


# -- the seed -----------------------------------------------------------------------------------


def test_seed_high_level_flow(
    network_watch: _NetworkWatch,
    server: ServerProcess,
    sagemaker_session: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sagemaker.config.config_schema import TELEMETRY_OPT_OUT_PATH
    from sagemaker.utils import resolve_value_from_config

    assert resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, default_value=False, sagemaker_session=sagemaker_session) is True
    bucket = s3_bucket
    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL_S3: moto
    model_name = put_model(server.client(), s3, bucket, kmeans_tarball(), key="kmeans/model.tar.gz")
    monkeypatch.chdir(tmp_path)

    # The seed, as the Developer Guide writes it (but for the session argument).
    input_key = "kmeans_batch_example/input/valid-data.csv"
    input_location = "s3://{}/{}".format(bucket, input_key)
    output_location = "s3://{}/kmeans_batch_example/output".format(bucket)

    Path("valid-data.csv").write_bytes(KMEANS_ROWS)
    s3_client = boto3.client("s3")
    s3_client.upload_file("valid-data.csv", bucket, input_key)

    transformer = sagemaker.transformer.Transformer(
        base_transform_job_name="Batch-Transform",
        model_name=model_name,
        instance_count=1,
        instance_type="ml.c4.xlarge",
        output_path=output_location,
        sagemaker_session=sagemaker_session,
    )
    transformer.transform(input_location, content_type="text/csv", split_type="Line")
    transformer.wait()

    s3_client.download_file(bucket, "kmeans_batch_example/output/valid-data.csv.out", "valid-result")
    with open("valid-result") as f:
        results = f.readlines()
    print("Sample transform result: {}".format(results[0]))

    assert [json.loads(line) for line in results] == KMEANS_OUTPUT
    job_name = transformer.latest_transform_job.job_name
    assert job_name.startswith("Batch-Transform-")

    # wait() printed the job's log, as read back through CloudWatch Logs' API.
    printed = capsys.readouterr().out
    logs = server.client("logs")
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    logged = [
        event["message"]
        for stream in streams
        for event in logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True)["events"]
    ]
    assert logged
    assert set(logged) <= set(printed.splitlines())
    assert "Completed." in printed.splitlines()
    assert f"Sample transform result: {results[0]}" in printed

    description = transformer.sagemaker_session.describe_transform_job(job_name)
    assert description["TransformJobStatus"] == "Completed"
    assert description["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_location}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    }
    assert description["TransformOutput"]["S3OutputPath"] == output_location
    assert description["TransformResources"] == {"InstanceCount": 1, "InstanceType": "ml.c4.xlarge"}

    attached = sagemaker.transformer.Transformer.attach(job_name, sagemaker_session=sagemaker_session)
    assert (attached.model_name, attached.instance_count, attached.instance_type) == (model_name, 1, "ml.c4.xlarge")
    assert attached.output_path == output_location
    assert attached.base_transform_job_name == job_name
    assert attached.latest_transform_job.job_name == job_name
    attached.wait(logs=False)

    assert OUTBOUND_ON_IMPORT == []
    assert network_watch.outbound == []


def test_the_network_watch_sees_a_lookup_and_a_connect(network_watch: _NetworkWatch) -> None:
    """The guard above works. Nothing leaves the machine here: the lookup is numeric-only (no DNS
    query) and the connect is made on a closed socket; the audit events come before the calls."""
    import socket

    with pytest.raises(OSError):
        socket.getaddrinfo("conveyor-test.invalid", 443, flags=socket.AI_NUMERICHOST)
    socket.getaddrinfo("127.0.0.1", 80)
    closed = socket.socket()
    closed.close()
    for address in [("192.0.2.1", 9), ("127.0.0.1", 9)]:
        with pytest.raises(OSError):
            closed.connect(address)
    assert network_watch.outbound == ["getaddrinfo 'conveyor-test.invalid'", "connect ('192.0.2.1', 9)"]
