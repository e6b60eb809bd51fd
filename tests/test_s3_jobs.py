"""Transform jobs whose data and models live in S3, end to end.

A real `conveyor server` (its own process, CONVEYOR_HOME in tmp) is started with
`--s3-endpoint` pointing at the session's `moto_server` on 127.0.0.1, or at a small HTTP proxy in
front of it (`CountingProxy`) where a test counts requests or makes the store misbehave (503 for a
while, 403 on listing). Clients are real boto3 clients; nothing is mocked in-process. Models are
`model.tar.gz` archives in S3 holding `code/inference.py`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import textwrap
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from botocore.exceptions import ClientError

import conveyor
from conveyor.sdk import LocalSession, RemoteSession
from tests.job_requests import job_request
from tests.models import slow_on_slow
from tests.numbered_lines import numbered_lines
from tests.s3_proxy import S3Proxy
from tests.s3_server import S3Server
from tests.server import ServerProcess, start_server, wait_for_status

MiB = 1 << 20
ROLE = "arn:aws:iam::000000000000:role/conveyor-tests"
KMS_KEY = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# -- models -------------------------------------------------------------------------------------

# The seed's model is k-means: each CSV row gets its closest centroid (from centroids.json in the
# model archive) and the distance to it, one JSON line per row.
KMEANS = '''
import json
import math
import os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "centroids.json")) as f:
        return json.load(f)

def transform_fn(centroids, body, content_type, accept):
    text = body.decode() if isinstance(body, bytes) else body  # text/csv arrives decoded
    lines = []
    for row in text.splitlines():
        if not row.strip():
            continue
        point = [float(value) for value in row.split(",")]
        distances = [math.dist(point, centroid) for centroid in centroids]
        best = min(range(len(centroids)), key=distances.__getitem__)
        lines.append(json.dumps({"closest_cluster": float(best), "distance_to_cluster": round(distances[best], 6)}))
    return "".join(line + "\\n" for line in lines)
'''
CENTROIDS = [[0.0, 0.0], [10.0, 10.0]]
KMEANS_ROWS = b"1,1\n9,9\n0.5,0\n10,11\n"
KMEANS_OUTPUT = [
    {"closest_cluster": 0.0, "distance_to_cluster": 1.414214},
    {"closest_cluster": 1.0, "distance_to_cluster": 1.414214},
    {"closest_cluster": 0.0, "distance_to_cluster": 0.5},
    {"closest_cluster": 1.0, "distance_to_cluster": 1.0},
]

# Writes eight times what it reads (a large multipart output from a small input); sleeps long on
# a payload holding "tail", so a job can be stopped while its output is half uploaded, and fails
# on one holding "bad".
EIGHTFOLD = '''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    if b"tail" in body:
        time.sleep(120)
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body * 8
'''

# Answers with its input; sleeps a few seconds on a payload holding "slow".
ECHO = slow_on_slow(3)


def model_tarball(handler: str, files: dict[str, bytes] | None = None) -> bytes:
    """A `model.tar.gz` holding `code/inference.py` and `files` at its root, as SageMaker's are."""
    members = {"code/inference.py": textwrap.dedent(handler).encode(), **(files or {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def kmeans_tarball() -> bytes:
    return model_tarball(KMEANS, {"centroids.json": json.dumps(CENTROIDS).encode()})


def put_model(sm: Any, s3: Any, bucket: str, tarball: bytes, *, name: str | None = None, key: str = "models/model.tar.gz") -> str:
    """Upload the archive and create a model whose ModelDataUrl is its s3:// URI."""
    s3.put_object(Bucket=bucket, Key=key, Body=tarball)
    name = name or unique("model")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"s3://{bucket}/{key}"},
        ExecutionRoleArn=ROLE,
    )
    return name


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def keys_under(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(entry["Key"] for entry in page.get("Contents", []))
    return keys


def pending_uploads(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def error_of(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


# -- a proxy in front of moto -------------------------------------------------------------------


class CountingProxy(S3Proxy):
    """Counts the requests it forwards, and can misbehave on purpose.

    `fail_attempts`: while > 0, each distinct request (method, path and query) gets that many
    `503 SlowDown` answers before it is let through, so every S3 call a job makes is retried.
    `deny`: requests it matches get `403 AccessDenied`.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.fail_attempts = 0
        self.deny: Callable[[str, str], bool] = lambda method, path: False
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, path without query)
        self.served_503: Counter[str] = Counter()  # by method
        self._attempts: Counter[tuple[str, str]] = Counter()

    def gets(self, key: str) -> int:
        """Whole-object GETs of `/<bucket>/<key>` (listings have a query, so are not counted)."""
        return sum(count for (method, path), count in self.requests.items() if method == "GET" and path.endswith("/" + key))

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        path = request.path.partition("?")[0]
        with self._lock:
            self.requests[(request.command, path)] += 1
            attempt_key = (request.command, request.path)
            fail = self.fail_attempts > 0 and self._attempts[attempt_key] < self.fail_attempts
            self._attempts[attempt_key] += 1
            if fail:
                self.served_503[request.command] += 1
        if fail:
            return self.slow_down(request)
        if self.deny(request.command, request.path):
            return self.error(request, 403, "AccessDenied", "Access Denied")
        self.forward(request, body)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A conveyor server whose s3:// locations go to the moto server."""
    process = start_server(tmp_path_factory.mktemp("s3-jobs-home"), "--s3-endpoint", s3_server.endpoint_url)
    yield process
    process.stop()


@pytest.fixture
def proxied(s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[ServerProcess, CountingProxy]]:
    """A private conveyor server whose S3 traffic goes through a `CountingProxy` in front of moto."""
    with CountingProxy(s3_server.endpoint_url) as proxy:
        process = start_server(tmp_path / "home", "--s3-endpoint", proxy.endpoint_url)
        try:
            yield process, proxy
        finally:
            process.stop()


@pytest.fixture
def sm(server: ServerProcess) -> Any:
    return server.client()


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    return s3_server.client()


def completed(sm: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    description = wait_for_status(sm, name, timeout=timeout)
    assert description["TransformJobStatus"] == "Completed", description.get("FailureReason")
    return description


def kmeans_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


# -- the seed's flows ---------------------------------------------------------------------------


def test_seed_low_level_flow_with_boto3(sm: Any, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    """The Developer Guide's boto3 example, against S3 this time: upload_file, CreateTransformJob
    (S3Prefix, MultiRecord, Line), poll DescribeTransformJob, download_file of the `.out`."""
    bucket = s3_bucket
    model_name = put_model(sm, s3, bucket, kmeans_tarball())
    batch_job_name = "Batch-Transform-" + time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime()) + "-" + uuid.uuid4().hex[:4]
    input_location = f"s3://{bucket}/kmeans_batch_example/input"
    output_location = f"s3://{bucket}/kmeans_batch_example/output"
    (tmp_path / "valid-data.csv").write_bytes(KMEANS_ROWS)
    s3.upload_file(str(tmp_path / "valid-data.csv"), bucket, "kmeans_batch_example/input/valid_data.csv")

    request = {
        "TransformJobName": batch_job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformOutput": {"S3OutputPath": output_location},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_location}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1},
    }
    sm.create_transform_job(**request)
    response = completed(sm, batch_job_name)
    assert response["TransformInput"] == request["TransformInput"]
    assert response["TransformOutput"] == request["TransformOutput"]

    s3.download_file(bucket, "kmeans_batch_example/output/valid_data.csv.out", str(tmp_path / "valid-result"))
    assert kmeans_lines((tmp_path / "valid-result").read_bytes()) == KMEANS_OUTPUT


def test_conveyor_transformer_on_s3(
    server: ServerProcess, sm: Any, s3: Any, s3_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's high-level flow through `conveyor.Transformer` (the SDK's interface), then attach."""
    bucket = s3_bucket
    model_name = put_model(sm, s3, bucket, kmeans_tarball())
    input_key = "kmeans_batch_example/input/valid-data.csv"
    s3.put_object(Bucket=bucket, Key=input_key, Body=KMEANS_ROWS)
    session = RemoteSession(server.endpoint, boto_session=server.session())

    transformer = conveyor.Transformer(
        base_transform_job_name="Batch-Transform",
        model_name=model_name,
        instance_count=1,
        instance_type="ml.c4.xlarge",
        output_path=f"s3://{bucket}/kmeans_batch_example/output",
        session=session,
    )
    transformer.transform(f"s3://{bucket}/{input_key}", content_type="text/csv", split_type="Line")
    transformer.wait()
    job_name = transformer.latest_transform_job.job_name
    assert job_name.startswith("Batch-Transform-")
    assert capsys.readouterr().out.splitlines()[-1] == "Completed."

    s3.download_file(bucket, "kmeans_batch_example/output/valid-data.csv.out", str(tmp_path / "valid-result"))
    with open(tmp_path / "valid-result") as f:
        results = f.readlines()
    assert json.loads(results[0]) == KMEANS_OUTPUT[0]
    assert [json.loads(line) for line in results] == KMEANS_OUTPUT

    attached = conveyor.Transformer.attach(job_name, session=session)
    assert (attached.model_name, attached.instance_count, attached.instance_type) == (model_name, 1, "ml.c4.xlarge")
    assert attached.output_path == f"s3://{bucket}/kmeans_batch_example/output"
    assert attached.wait(logs=False)["TransformJobStatus"] == "Completed"


def test_conveyor_transformer_in_process_on_s3(
    s3_server: S3Server, s3: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor.Model` / `Transformer` with no server: the S3 endpoint comes from CONVEYOR_S3_ENDPOINT."""
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVEYOR_CAPACITY", "1")
    monkeypatch.setenv("CONVEYOR_S3_ENDPOINT", s3_server.endpoint_url)
    s3.put_object(Bucket=s3_bucket, Key="models/kmeans.tar.gz", Body=kmeans_tarball())
    s3.put_object(Bucket=s3_bucket, Key="input/valid-data.csv", Body=KMEANS_ROWS)
    session = LocalSession()
    try:
        model = conveyor.Model(f"s3://{s3_bucket}/models/kmeans.tar.gz", name=unique("in-process"), session=session)
        transformer = model.transformer(instance_count=1, instance_type="ml.c4.xlarge", output_path=f"s3://{s3_bucket}/output")
        transformer.transform(f"s3://{s3_bucket}/input/valid-data.csv", content_type="text/csv", split_type="Line", logs=False)
        assert transformer.describe()["TransformJobStatus"] == "Completed"
    finally:
        session.close()
    assert kmeans_lines(s3.get_object(Bucket=s3_bucket, Key="output/valid-data.csv.out")["Body"].read()) == KMEANS_OUTPUT
    assert len(list((tmp_path / "home" / "cache" / "models").glob("*/model.tar.gz"))) == 1


# -- model data ---------------------------------------------------------------------------------


def test_model_tarball_downloaded_once_and_cached_by_etag(proxied: tuple[ServerProcess, CountingProxy], s3: Any, s3_bucket: str) -> None:
    server, proxy = proxied
    sm = server.client()
    bucket = s3_bucket
    key = "models/kmeans/model.tar.gz"
    model_name = put_model(sm, s3, bucket, kmeans_tarball(), key=key)
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=KMEANS_ROWS)
    s3.put_object(Bucket=bucket, Key="in/b.csv", Body=KMEANS_ROWS)
    cache = server.home / "cache" / "models"

    def run(output: str, instances: int) -> None:
        name = unique("cached")
        request = job_request(name, model_name, f"s3://{bucket}/in/", f"s3://{bucket}/{output}")
        request["TransformResources"]["InstanceCount"] = instances
        sm.create_transform_job(**request)
        completed(sm, name)

    run("out1", instances=2)  # two instances, one download
    assert proxy.gets(key) == 1
    entries = [path for path in cache.iterdir() if path.is_dir()]
    assert len(entries) == 1 and (entries[0] / "model.tar.gz").is_file()
    archive_mtime = (entries[0] / "model.tar.gz").stat().st_mtime_ns

    run("out2", instances=1)  # the same archive (same ETag): from the cache
    assert proxy.gets(key) == 1
    assert (entries[0] / "model.tar.gz").stat().st_mtime_ns == archive_mtime

    s3.put_object(Bucket=bucket, Key=key, Body=model_tarball(KMEANS, {"centroids.json": b"[[1.0, 1.0], [9.0, 9.0]]"}))
    run("out3", instances=1)  # a new ETag: downloaded again, into its own entry
    assert proxy.gets(key) == 2
    assert len([path for path in cache.iterdir() if path.is_dir()]) == 2
    assert kmeans_lines(s3.get_object(Bucket=bucket, Key="out3/a.csv.out")["Body"].read())[0] == {
        "closest_cluster": 0.0, "distance_to_cluster": 0.0,
    }  # fmt: skip


# -- create-time errors -------------------------------------------------------------------------


def test_missing_bucket_is_refused_at_create(sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, kmeans_tarball())
    name = unique("no-bucket")
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**job_request(name, model_name, f"s3://{missing}/in/", f"s3://{s3_bucket}/out"))
    code, message = error_of(caught)
    assert (code, message) == (
        "ValidationException",
        f'Could not list the input data source s3://{missing}/in/: NoSuchBucket: the bucket "{missing}" does not exist in '
        "the selected region (us-east-1).",
    )
    with pytest.raises(ClientError, match="Could not find requested job"):
        sm.describe_transform_job(TransformJobName=name)


def test_empty_prefix_is_refused_with_sagemakers_message(sm: Any, s3: Any, s3_bucket: str) -> None:
    """Folder placeholders (`in/`, `in/sub/`) are not input objects: the prefix is empty."""
    model_name = put_model(sm, s3, s3_bucket, kmeans_tarball())
    for key in ("in/", "in/sub/"):
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"")
    name = unique("empty")
    uri = f"s3://{s3_bucket}/in/"
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**job_request(name, model_name, uri, f"s3://{s3_bucket}/out"))
    assert error_of(caught) == (
        "ValidationException",
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the bucket exists in the '
        f'selected region (us-east-1), that objects exist under that S3 prefix, and that the credentials in use have '
        f'"s3:ListBucket" permissions on bucket "{s3_bucket}".',
    )
    with pytest.raises(ClientError, match="Could not find requested job"):
        sm.describe_transform_job(TransformJobName=name)


def test_access_denied_is_refused_at_create(proxied: tuple[ServerProcess, CountingProxy], s3: Any, s3_bucket: str) -> None:
    server, proxy = proxied
    sm = server.client()
    model_name = put_model(sm, s3, s3_bucket, kmeans_tarball())
    s3.put_object(Bucket=s3_bucket, Key="in/a.csv", Body=KMEANS_ROWS)
    proxy.deny = lambda method, path: method == "GET" and "list-type=2" in path
    name = unique("denied")
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**job_request(name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out"))
    code, message = error_of(caught)
    assert (code, message) == (
        "ValidationException",
        f"Could not list the input data source s3://{s3_bucket}/in/: AccessDenied: listing: Access Denied. Please ensure "
        f'that the credentials in use have "s3:ListBucket" permissions on bucket "{s3_bucket}".',
    )

    # A manifest that cannot be read names s3:GetObject.
    s3.put_object(Bucket=s3_bucket, Key="manifest.json", Body=json.dumps([{"prefix": f"s3://{s3_bucket}/in/"}, "a.csv"]).encode())
    proxy.deny = lambda method, path: path.startswith(f"/{s3_bucket}/manifest.json")
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(
            **job_request(unique("denied"), model_name, f"s3://{s3_bucket}/manifest.json", f"s3://{s3_bucket}/out", data_type="ManifestFile")
        )
    code, message = error_of(caught)
    assert code == "ValidationException"
    assert message.startswith(f"Could not read the manifest file s3://{s3_bucket}/manifest.json: AccessDenied: ")
    assert message.endswith(f'Please ensure that the credentials in use have "s3:GetObject" permissions on bucket "{s3_bucket}".')


# -- listing and manifests ----------------------------------------------------------------------


def test_prefix_skips_placeholders_and_names_outputs(sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, model_tarball(ECHO))
    for key, body in {
        "data/in/": b"", "data/in/a.csv": b"1\n", "data/in/sub/": b"", "data/in/sub/b.csv": b"2\n", "data/input2.csv": b"3\n",
    }.items():  # fmt: skip
        s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
    name = unique("placeholders")
    sm.create_transform_job(**job_request(name, model_name, f"s3://{s3_bucket}/data/in/", f"s3://{s3_bucket}/out/"))
    completed(sm, name)
    assert sorted(keys_under(s3, s3_bucket, "out/")) == ["out/a.csv.out", "out/sub/b.csv.out"]
    assert s3.get_object(Bucket=s3_bucket, Key="out/sub/b.csv.out")["Body"].read() == b"2\n"

    name = unique("bare-prefix")  # a bare prefix ending mid-name (decision 1)
    sm.create_transform_job(**job_request(name, model_name, f"s3://{s3_bucket}/data/in", f"s3://{s3_bucket}/bare"))
    completed(sm, name)
    assert sorted(keys_under(s3, s3_bucket, "bare/")) == ["bare/a.csv.out", "bare/input2.csv.out", "bare/sub/b.csv.out"]


def test_manifest_file_in_s3(sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, kmeans_tarball())
    s3.put_object(Bucket=s3_bucket, Key="customer/some/prefix/relative/path/to/custdata-1", Body=b"1,1\n")
    s3.put_object(Bucket=s3_bucket, Key="customer/some/prefix/relative/path/custdata-2", Body=b"10,11\n")
    s3.put_object(Bucket=s3_bucket, Key="customer/some/prefix/not-listed.csv", Body=b"0,0\n")
    manifest = [{"prefix": f"s3://{s3_bucket}/customer/some/prefix/"}, "relative/path/to/custdata-1", "relative/path/custdata-2"]
    s3.put_object(Bucket=s3_bucket, Key="manifests/input.manifest", Body=json.dumps(manifest).encode())
    name = unique("manifest")
    sm.create_transform_job(
        **job_request(name, model_name, f"s3://{s3_bucket}/manifests/input.manifest", f"s3://{s3_bucket}/out", data_type="ManifestFile")
    )
    completed(sm, name)
    assert sorted(keys_under(s3, s3_bucket, "out/")) == [
        "out/relative/path/custdata-2.out", "out/relative/path/to/custdata-1.out",
    ]  # fmt: skip
    assert kmeans_lines(s3.get_object(Bucket=s3_bucket, Key="out/relative/path/custdata-2.out")["Body"].read()) == [KMEANS_OUTPUT[3]]

    # A manifest naming an object that is not there is refused at create, naming it.
    manifest.append("relative/missing.csv")
    s3.put_object(Bucket=s3_bucket, Key="manifests/bad.manifest", Body=json.dumps(manifest).encode())
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(
            **job_request(unique("manifest"), model_name, f"s3://{s3_bucket}/manifests/bad.manifest", f"s3://{s3_bucket}/o", data_type="ManifestFile")
        )
    code, message = error_of(caught)
    assert code == "ValidationException"
    assert f"s3://{s3_bucket}/customer/some/prefix/relative/missing.csv" in message and "NoSuchKey" in message


def test_https_forms_of_s3_urls(sm: Any, s3: Any, s3_bucket: str) -> None:
    """Virtual-hosted and path-style URLs name a bucket and key; the bytes go to the configured endpoint."""
    model_name = put_model(sm, s3, s3_bucket, kmeans_tarball())
    s3.put_object(Bucket=s3_bucket, Key="https/in/rows.csv", Body=KMEANS_ROWS)
    forms = [
        (f"https://{s3_bucket}.s3.us-east-1.amazonaws.com/https/in/", f"https://s3.us-east-1.amazonaws.com/{s3_bucket}/https/out-a"),
        (f"https://s3.amazonaws.com/{s3_bucket}/https/in/", f"https://{s3_bucket}.s3.amazonaws.com/https/out-b"),
    ]
    for input_uri, output_path in forms:
        name = unique("https")
        sm.create_transform_job(**job_request(name, model_name, input_uri, output_path))
        description = completed(sm, name)
        assert description["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == input_uri  # echoed as given
    for output in ("https/out-a", "https/out-b"):
        assert kmeans_lines(s3.get_object(Bucket=s3_bucket, Key=f"{output}/rows.csv.out")["Body"].read()) == KMEANS_OUTPUT


# -- run-time errors ----------------------------------------------------------------------------


def test_vanished_object_fails_with_its_key_and_code(server: ServerProcess, sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, model_tarball(ECHO))
    s3.put_object(Bucket=s3_bucket, Key="in/a.csv", Body=b"slow\n")  # keeps the one instance busy
    s3.put_object(Bucket=s3_bucket, Key="in/b.csv", Body=b"gone\n")
    name = unique("vanished")
    sm.create_transform_job(**job_request(name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out"))
    deadline = time.monotonic() + 60
    while server.progress(name)["ObjectsTotal"] < 2:  # the job lists its objects as it starts
        assert time.monotonic() < deadline, "the job did not list its two objects"
        time.sleep(0.02)
    s3.delete_object(Bucket=s3_bucket, Key="in/b.csv")  # listed, and deleted before it is read
    description = wait_for_status(sm, name, timeout=120)
    assert description["TransformJobStatus"] == "Failed"
    reason = description["FailureReason"]
    assert reason.startswith("1 of 2 input objects failed.")
    assert f"s3://{s3_bucket}/in/b.csv" in reason and "NoSuchKey" in reason
    assert keys_under(s3, s3_bucket, "out/") == ["out/a.csv.out"]  # the other object completed


def test_stop_during_multipart_output_leaves_nothing(sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, model_tarball(EIGHTFOLD))
    line = b"%07d,the quick brown fox jumps over the lazy dog\n"
    body = b"".join(line % number for number in range(3 * MiB // len(line % 0))) + b"tail\n"
    s3.put_object(Bucket=s3_bucket, Key="in/big.csv", Body=body)
    name = unique("stopped")
    sm.create_transform_job(
        **job_request(name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out", MaxPayloadInMB=1, BatchStrategy="MultiRecord")
    )
    deadline = time.monotonic() + 120
    while True:  # wait until the output's multipart upload holds a part
        uploads = [upload for upload in pending_uploads(s3, s3_bucket) if upload["Key"] == "out/big.csv.out"]
        if uploads and s3.list_parts(Bucket=s3_bucket, Key="out/big.csv.out", UploadId=uploads[0]["UploadId"]).get("Parts"):
            break
        assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "InProgress"
        assert time.monotonic() < deadline, "no part of the output was uploaded"
        time.sleep(0.1)

    assert keys_under(s3, s3_bucket, "out/") == []  # parts stored, but no object until it is whole

    sm.stop_transform_job(TransformJobName=name)
    assert wait_for_status(sm, name, timeout=60)["TransformJobStatus"] == "Stopped"
    assert pending_uploads(s3, s3_bucket) == []
    assert keys_under(s3, s3_bucket, "out/") == []


def test_failed_object_aborts_its_multipart_upload(sm: Any, s3: Any, s3_bucket: str) -> None:
    """The model fails on the last payload, after 24 MiB of output went up in parts: the upload
    is aborted, so neither an object nor a pending upload is left."""
    model_name = put_model(sm, s3, s3_bucket, model_tarball(EIGHTFOLD))
    body = b"".join(b"%09d\n" % number for number in range(3 * MiB // 10)) + b"bad\n"
    s3.put_object(Bucket=s3_bucket, Key="in/big.csv", Body=body)
    name = unique("failed")
    sm.create_transform_job(
        **job_request(
            name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out", MaxPayloadInMB=1, BatchStrategy="MultiRecord",
            ModelClientConfig={"InvocationsMaxRetries": 0},
        )
    )
    description = wait_for_status(sm, name, timeout=120)
    assert description["TransformJobStatus"] == "Failed"
    assert "cannot score a bad record" in description["FailureReason"]
    assert pending_uploads(s3, s3_bucket) == []
    assert keys_under(s3, s3_bucket, "out/") == []


def test_503_for_a_while_is_retried(proxied: tuple[ServerProcess, CountingProxy], s3: Any, s3_bucket: str) -> None:
    """Every S3 request the job makes (listing, model download, reads, writes) is answered 503
    SlowDown twice before it goes through: the job still completes, with the right output."""
    server, proxy = proxied
    sm = server.client()
    model_name = put_model(sm, s3, s3_bucket, model_tarball(EIGHTFOLD), key="models/retried.tar.gz")
    big = b"".join(b"%09d\n" % number for number in range(3 * MiB // 10))  # 24 MiB out: a multipart upload
    s3.put_object(Bucket=s3_bucket, Key="in/big.csv", Body=big)
    s3.put_object(Bucket=s3_bucket, Key="in/small.csv", Body=b"1,2\n")
    proxy.fail_attempts = 2
    name = unique("retried")
    request = job_request(name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out", MaxPayloadInMB=1, BatchStrategy="MultiRecord")
    sm.create_transform_job(**request)
    completed(sm, name, timeout=240)
    proxy.fail_attempts = 0
    assert {"GET", "HEAD", "PUT", "POST"} <= set(proxy.served_503)  # list/get, stat, put/part, create/complete
    assert proxy.gets("models/retried.tar.gz") == 3  # two 503s, then the download
    assert s3.get_object(Bucket=s3_bucket, Key="out/small.csv.out")["Body"].read() == b"1,2\n" * 8
    output = s3.get_object(Bucket=s3_bucket, Key="out/big.csv.out")
    assert output["ETag"].strip('"').endswith("-2")
    assert hashlib.sha256(output["Body"].read()).digest() == hashlib.sha256(_eightfold_payloads(big, MiB)).digest()
    assert pending_uploads(s3, s3_bucket) == []


def _eightfold_payloads(data: bytes, max_payload: int) -> bytes:
    """What EIGHTFOLD writes for Line-split MultiRecord payloads of at most `max_payload` bytes."""
    out = []
    start = 0
    while start < len(data):
        end = start
        while end < len(data):
            next_end = data.index(b"\n", end) + 1
            if next_end - start > max_payload and end > start:
                break
            end = next_end
        out.append(data[start:end] * 8)
        start = end
    return b"".join(out)


def test_kms_key_on_every_output_object(sm: Any, s3: Any, s3_bucket: str) -> None:
    model_name = put_model(sm, s3, s3_bucket, model_tarball(EIGHTFOLD))
    s3.put_object(Bucket=s3_bucket, Key="in/small.csv", Body=b"1,2\n")
    s3.put_object(Bucket=s3_bucket, Key="in/large.csv", Body=b"".join(b"%09d\n" % n for n in range(int(2.5 * MiB) // 10)))
    name = unique("kms")
    sm.create_transform_job(
        **job_request(
            name, model_name, f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out", KmsKeyId=KMS_KEY, MaxPayloadInMB=1, BatchStrategy="MultiRecord"
        )
    )
    completed(sm, name)
    for key, multipart in (("out/small.csv.out", False), ("out/large.csv.out", True)):
        head = s3.head_object(Bucket=s3_bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)
        assert ("-" in head["ETag"]) == multipart  # one PutObject, or a multipart upload
    assert sm.describe_transform_job(TransformJobName=name)["TransformOutput"]["KmsKeyId"] == KMS_KEY


# -- scale (slow) -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_thousand_objects(sm: Any, s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client(max_pool_connections=32)
    model_name = put_model(sm, s3, s3_bucket, model_tarball(ECHO))
    keys = [f"many/{number:05d}.csv" for number in range(10_000)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=s3_bucket, Key=key, Body=key.encode() + b"\n"), keys))
    for placeholder in ("many/", "many/sub/"):
        s3.put_object(Bucket=s3_bucket, Key=placeholder, Body=b"")
    name = unique("ten-thousand")
    request = job_request(name, model_name, f"s3://{s3_bucket}/many/", f"s3://{s3_bucket}/many-out")
    request["TransformResources"]["InstanceCount"] = 2
    started = time.monotonic()
    sm.create_transform_job(**request)
    created = time.monotonic() - started
    description = completed(sm, name, timeout=1500)
    elapsed = time.monotonic() - started
    print(f"\n10,000 objects: create {created:.1f} s (listing), job {elapsed:.1f} s")
    outputs = keys_under(s3, s3_bucket, "many-out/")
    assert outputs == [f"many-out/{number:05d}.csv.out" for number in range(10_000)]
    for number in (0, 4_567, 9_999):
        key = f"many/{number:05d}.csv"
        assert s3.get_object(Bucket=s3_bucket, Key=key.replace("many/", "many-out/") + ".out")["Body"].read() == key.encode() + b"\n"
    assert description["TransformJobStatus"] == "Completed"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_one_gigabyte_object_with_bounded_memory(sm: Any, server: ServerProcess, s3_server: S3Server, s3_bucket: str) -> None:
    """1 GiB in, 1 GiB out (an echo model), streamed: no process of the server grows anywhere near it."""
    import psutil

    s3 = s3_server.client()
    model_name = put_model(sm, s3, s3_bucket, model_tarball(ECHO))
    total = 1024 * MiB
    digest = hashlib.sha256()
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="huge/input.csv")
    parts = []
    for number, block in enumerate(numbered_lines(total, 64 * MiB), start=1):
        digest.update(block)
        part = s3.upload_part(Bucket=s3_bucket, Key="huge/input.csv", UploadId=upload["UploadId"], PartNumber=number, Body=block)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    s3.complete_multipart_upload(Bucket=s3_bucket, Key="huge/input.csv", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})

    name = unique("gigabyte")
    started = time.monotonic()
    sm.create_transform_job(**job_request(name, model_name, f"s3://{s3_bucket}/huge/", f"s3://{s3_bucket}/huge-out"))
    peak = {"server": 0, "instance": 0}
    parent = psutil.Process(server.process.pid)
    while sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "InProgress":
        try:
            peak["server"] = max(peak["server"], parent.memory_info().rss)
            for child in parent.children(recursive=True):
                peak["instance"] = max(peak["instance"], child.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
        assert time.monotonic() - started < 1500
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    completed(sm, name)
    print(
        f"\n1 GiB object: {elapsed:.1f} s ({total / MiB / elapsed:.0f} MiB/s); "
        f"peak RSS server {peak['server'] / MiB:.0f} MiB, instance {peak['instance'] / MiB:.0f} MiB"
    )
    assert 0 < peak["instance"] < 400 * MiB
    assert peak["server"] < 400 * MiB

    output = s3.get_object(Bucket=s3_bucket, Key="huge-out/input.csv.out")
    assert output["ContentLength"] == total
    assert "-" in output["ETag"]  # a multipart upload
    received = hashlib.sha256()
    for chunk in output["Body"].iter_chunks(8 * MiB):
        received.update(chunk)
    assert received.hexdigest() == digest.hexdigest()
    assert pending_uploads(s3, s3_bucket) == []
