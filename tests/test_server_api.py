"""The control plane through real boto3 clients against a real `conveyor server` on 127.0.0.1.

Most tests share the session's server (`conveyor_server`, capacity 2) and keep to their own job
names; the ones that need the whole capacity, or look at queueing, start a private server.
Protocol-level checks (unknown target, malformed or oversized bodies, signatures) speak raw
HTTP, signed by hand or with botocore's `SigV4Auth`, since boto3 never sends such requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from time import gmtime, strftime
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, WaiterError

from tests.job_requests import job_request
from tests.models import BRACKET, FAIL_ON_BAD, sleepy, slow_on_slow, write_model
from tests.server import ServerProcess, start_server, wait_for_status

TEMP_MARKER = ".conveyor-tmp-"
ROLE = "arn:aws:iam::000000000000:role/conveyor-tests"
TERMINAL = ("Completed", "Failed", "Stopped")

# Hangs for a body containing "slow" (a stuck model), answers at once otherwise.
HANGS_ON_SLOW = slow_on_slow(60)

# Sleeps a second per request: long enough to watch a job hold its instances.
SLEEPY = sleepy(1.0)


# Helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_model(sm: Any, root: Path, handler: str, name: str | None = None, **extra: Any) -> str:
    name = name or unique("model")
    model_dir = write_model(root, handler, name)
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"},
        ExecutionRoleArn=ROLE,
        **extra,
    )
    return name


def write_inputs(directory: Path, files: dict[str, str]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return f"file://{directory}/"


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def temporaries(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if TEMP_MARKER in path.name] if root.exists() else []


def keys(server: ServerProcess) -> tuple[str, str]:
    credentials = server.session().get_credentials()
    return credentials.access_key, credentials.secret_key


def sign_by_hand(access_key: str, secret: str, host: str, target: str, body: bytes, when: datetime) -> dict[str, str]:
    """SigV4 headers for an AWS JSON 1.1 call signed at `when`, computed as botocore computes them."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": target,
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["POST", "/", "", "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)), signed, hashlib.sha256(body).hexdigest()]
    )
    scope = f"{date}/us-east-1/sagemaker/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (date, "us-east-1", "sagemaker", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return headers


def signed_call(server: ServerProcess, target: str, body: bytes, *, content_type: str = "application/x-amz-json-1.1") -> httpx.Response:
    """POST / with botocore's SigV4Auth over exactly `body` (which need not be JSON)."""
    access_key, secret = keys(server)
    request = AWSRequest(
        method="POST",
        url=f"{server.endpoint}/",
        data=body,
        headers={"Content-Type": content_type, "X-Amz-Target": target},
    )
    SigV4Auth(botocore.credentials.Credentials(access_key, secret), "sagemaker", "us-east-1").add_auth(request)
    return httpx.post(f"{server.endpoint}/", content=body, headers=dict(request.headers.items()), timeout=10)


def signed_get(server: ServerProcess, path: str, *, secret: str | None = None) -> httpx.Response:
    access_key, real_secret = keys(server)
    request = AWSRequest(method="GET", url=f"{server.endpoint}{path}")
    SigV4Auth(botocore.credentials.Credentials(access_key, secret or real_secret), "sagemaker", "us-east-1").add_auth(request)
    return httpx.get(f"{server.endpoint}{path}", headers=dict(request.headers.items()), timeout=10)


def assert_aws_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"__type", "message"}, body
    assert body["__type"] == code, body
    assert response.headers["x-amzn-RequestId"]
    return body["message"]


def botocore_members(operation: str) -> set[str]:
    return set(boto3.client("sagemaker", region_name="us-east-1").meta.service_model.operation_model(operation).output_shape.members)


@pytest.fixture
def sm(conveyor_server: ServerProcess) -> Any:
    return conveyor_server.client("sagemaker")


# The seed's low-level example


def test_seed_low_level_example(sm: Any, tmp_path: Path) -> None:
    """The Developer Guide's boto3 example, verbatim but for its file:// locations."""
    model_name = create_model(sm, tmp_path, BRACKET)
    input_location = write_inputs(tmp_path / "kmeans_batch_example" / "input", {"valid_data.csv": "1.5,2\n3,4.25\n5,6\n"})
    output_location = f"file://{tmp_path}/kmeans_batch_example/output"

    batch_job_name = "Batch-Transform-" + strftime("%Y-%m-%d-%H-%M-%S", gmtime()) + "-" + uuid.uuid4().hex[:6]
    request = \
    {
        "TransformJobName": batch_job_name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformOutput": {
            "S3OutputPath": output_location
        },
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": input_location
                }
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None"
        },
        "TransformResources": {
                "InstanceType": "ml.m4.xlarge",
                "InstanceCount": 1
        }
    }
    created = sm.create_transform_job(**request)
    assert created["TransformJobArn"] == f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{batch_job_name}"

    seen = []
    deadline = time.monotonic() + 60
    while True:
        response = sm.describe_transform_job(TransformJobName=batch_job_name)
        status = response["TransformJobStatus"]
        seen.append(status)
        if status == "Completed":
            break
        assert status == "InProgress", response.get("FailureReason")
        assert time.monotonic() < deadline, "the job did not complete in 60 s"
        time.sleep(0.2)

    assert response["TransformJobName"] == batch_job_name
    assert response["ModelName"] == model_name
    assert response["TransformInput"] == request["TransformInput"]
    assert response["TransformOutput"] == request["TransformOutput"]
    assert response["TransformResources"] == request["TransformResources"]
    assert (response["MaxConcurrentTransforms"], response["MaxPayloadInMB"], response["BatchStrategy"]) == (4, 6, "MultiRecord")
    assert response["CreationTime"] <= response["TransformStartTime"] <= response["TransformEndTime"]
    assert set(response) - {"ResponseMetadata"} <= botocore_members("DescribeTransformJob")
    output = tmp_path / "kmeans_batch_example" / "output" / "valid_data.csv.out"
    assert output.read_bytes() == b"<1.5,2\n3,4.25\n5,6\n>"  # AssembleWith None: responses as they came

    listing = sm.list_transform_jobs(**{"StatusEquals": "Completed", "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 20})
    summaries = listing["TransformJobSummaries"]
    assert 1 <= len(summaries) <= 20
    assert all(s["TransformJobStatus"] == "Completed" for s in summaries)
    assert [s["CreationTime"] for s in summaries] == sorted((s["CreationTime"] for s in summaries), reverse=True)
    mine = [s for s in summaries if s["TransformJobName"] == batch_job_name]
    assert mine and mine[0]["TransformJobArn"] == created["TransformJobArn"]
    assert set(mine[0]) <= set(boto3.client("sagemaker", region_name="us-east-1").meta.service_model.shape_for("TransformJobSummary").members)


def test_waiter_completed_or_stopped(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("waited")
    sm.create_transform_job(**job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{tmp_path}/out"))
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "Completed"
    assert (tmp_path / "out" / "a.csv.out").read_bytes() == b"<1\n>"

    failing = create_model(sm, tmp_path, FAIL_ON_BAD)
    failed = unique("waited-failing")
    sm.create_transform_job(**job_request(failed, failing, write_inputs(tmp_path / "bad", {"b.csv": "bad\n"}), f"file://{tmp_path}/out-bad"))
    with pytest.raises(WaiterError) as excinfo:
        sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=failed, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    assert "Failed" in str(excinfo.value)
    description = sm.describe_transform_job(TransformJobName=failed)
    assert "cannot score a bad record" in description["FailureReason"]
    assert not (tmp_path / "out-bad" / "b.csv.out").exists()

    # The waiter's error acceptor: an unknown job is a ValidationException, which stops it at once.
    with pytest.raises(WaiterError):
        sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=unique("nobody"), WaiterConfig={"Delay": 0.2, "MaxAttempts": 5})


# Listing: paginator, filters, sorts


def _stop_all(sm: Any, names: list[str]) -> None:
    for name in names:
        try:
            sm.stop_transform_job(TransformJobName=name)
        except ClientError:
            pass  # already over


def test_paginator_over_25_jobs(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    inputs = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    prefix = unique("pages")
    names = [f"{prefix}-{index:02d}" for index in range(25)]
    try:
        for name in names:
            sm.create_transform_job(**job_request(name, model, inputs, f"file://{tmp_path}/out/{name}"))

        pages = list(sm.get_paginator("list_transform_jobs").paginate(NameContains=prefix, SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 10}))
        assert [len(page["TransformJobSummaries"]) for page in pages] == [10, 10, 5]
        assert "NextToken" in pages[0] and "NextToken" in pages[1] and "NextToken" not in pages[2]
        assert [s["TransformJobName"] for page in pages for s in page["TransformJobSummaries"]] == names

        # MaxResults=10 by hand, newest first (the default sort).
        seen, token = [], None
        while True:
            arguments = {"NameContains": prefix.upper(), "MaxResults": 10}  # NameContains ignores case
            if token:
                arguments["NextToken"] = token
            page = sm.list_transform_jobs(**arguments)
            seen += [s["TransformJobName"] for s in page["TransformJobSummaries"]]
            token = page.get("NextToken")
            if not token:
                break
        assert seen == names[::-1]

        capped = sm.get_paginator("list_transform_jobs").paginate(NameContains=prefix, PaginationConfig={"MaxItems": 13, "PageSize": 4}).build_full_result()
        assert len(capped["TransformJobSummaries"]) == 13 and capped.get("NextToken")

        everything = sm.list_transform_jobs(NameContains=prefix, MaxResults=100)
        assert len(everything["TransformJobSummaries"]) == 25 and "NextToken" not in everything
        default = sm.list_transform_jobs(NameContains=prefix)
        assert len(default["TransformJobSummaries"]) == 10  # SageMaker's default page size
    finally:
        _stop_all(sm, names)


def test_list_filters_and_sorts(sm: Any, tmp_path: Path) -> None:
    """Every ListTransformJobs filter and sort, over jobs of three statuses created in two
    different seconds (boto3 sends request timestamps as whole epoch seconds)."""
    good = create_model(sm, tmp_path, BRACKET)
    failing = create_model(sm, tmp_path, FAIL_ON_BAD)
    inputs = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    bad_inputs = write_inputs(tmp_path / "bad", {"b.csv": "bad\n"})
    prefix = unique("filters")
    early = [f"{prefix}-c-early", f"{prefix}-f-early"]
    sm.create_transform_job(**job_request(early[0], good, inputs, f"file://{tmp_path}/o1"))
    sm.create_transform_job(**job_request(early[1], failing, bad_inputs, f"file://{tmp_path}/o2"))
    for name in early:
        wait_for_status(sm, name)

    boundary = int(time.time()) + 1
    time.sleep(boundary - time.time() + 0.1)
    late = [f"{prefix}-s-late", f"{prefix}-c-late"]
    sm.create_transform_job(**job_request(late[0], good, inputs, f"file://{tmp_path}/o3"))
    sm.stop_transform_job(TransformJobName=late[0])
    sm.create_transform_job(**job_request(late[1], good, inputs, f"file://{tmp_path}/o4"))
    for name in late:
        wait_for_status(sm, name)
    names = early + late
    described = {name: sm.describe_transform_job(TransformJobName=name) for name in names}
    assert [described[n]["TransformJobStatus"] for n in names] == ["Completed", "Failed", "Stopped", "Completed"]

    def listed(**arguments: Any) -> list[str]:
        return [s["TransformJobName"] for s in sm.list_transform_jobs(NameContains=prefix, MaxResults=100, **arguments)["TransformJobSummaries"]]

    for status in ("Completed", "Failed", "Stopped", "InProgress", "Stopping"):
        expected = [n for n in names if described[n]["TransformJobStatus"] == status]
        assert sorted(listed(StatusEquals=status)) == sorted(expected), status

    cut = datetime.fromtimestamp(boundary, tz=timezone.utc)
    assert sorted(listed(CreationTimeAfter=cut)) == sorted(late)
    assert sorted(listed(CreationTimeBefore=cut)) == sorted(early)
    assert sorted(listed(LastModifiedTimeAfter=cut)) == sorted(late)
    assert sorted(listed(LastModifiedTimeBefore=cut)) == sorted(early)
    assert listed(CreationTimeAfter=cut, CreationTimeBefore=cut) == []
    assert listed(CreationTimeAfter=cut, StatusEquals="Stopped") == [late[0]]
    upper = sm.list_transform_jobs(NameContains=f"{prefix}-C-".upper())["TransformJobSummaries"]  # ignores case
    assert sorted(s["TransformJobName"] for s in upper) == sorted([early[0], late[1]])

    by_creation = sorted(names, key=lambda n: described[n]["CreationTime"])
    assert listed() == by_creation[::-1]  # default: CreationTime, Descending
    assert listed(SortBy="CreationTime", SortOrder="Ascending") == by_creation
    assert listed(SortBy="Name", SortOrder="Ascending") == sorted(names)
    assert listed(SortBy="Name", SortOrder="Descending") == sorted(names, reverse=True)
    by_status = sorted(names, key=lambda n: (described[n]["TransformJobStatus"], described[n]["CreationTime"], n))
    assert listed(SortBy="Status", SortOrder="Ascending") == by_status
    assert listed(SortBy="Status", SortOrder="Descending") == by_status[::-1]

    # Pages of one under every sort still cover every job exactly once.
    for sort_by in ("Name", "CreationTime", "Status"):
        for order in ("Ascending", "Descending"):
            pages = sm.get_paginator("list_transform_jobs").paginate(NameContains=prefix, SortBy=sort_by, SortOrder=order, PaginationConfig={"PageSize": 1})
            assert [s["TransformJobName"] for p in pages for s in p["TransformJobSummaries"]] == listed(SortBy=sort_by, SortOrder=order)

    summary = sm.list_transform_jobs(NameContains=early[1])["TransformJobSummaries"][0]
    assert "cannot score a bad record" in summary["FailureReason"]
    assert summary["TransformEndTime"] == described[early[1]]["TransformEndTime"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"StatusEquals": "Running"}, "Value 'Running' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: ["),
        ({"SortBy": "Size"}, "Value 'Size' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: ["),
        ({"SortOrder": "Up"}, "Value 'Up' at 'sortOrder' failed to satisfy constraint"),
        ({"MaxResults": 101}, "Value '101' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100"),
        ({"NameContains": "a_b"}, "Value 'a_b' at 'nameContains' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        ({"NextToken": "not-a-token"}, "Invalid pagination token"),
    ],
)
def test_list_bad_filters(sm: Any, arguments: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        sm.list_transform_jobs(**arguments)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def test_max_results_below_one(conveyor_server: ServerProcess) -> None:
    """botocore refuses MaxResults=0 itself; a client that does not validate gets SageMaker's answer."""
    unchecked = conveyor_server.session().client(
        "sagemaker", endpoint_url=conveyor_server.endpoint,
        config=botocore.config.Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    for call in (unchecked.list_transform_jobs, unchecked.list_models):
        with pytest.raises(ClientError) as excinfo:
            call(MaxResults=0)
        code, message, _ = error_of(excinfo)
        assert code == "ValidationException"
        assert "Value '0' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1" in message


def test_list_two_bad_filters_in_one_message(sm: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        sm.list_transform_jobs(StatusEquals="Done", MaxResults=500)
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert message.startswith("2 validation errors detected: ")
    assert "'statusEquals'" in message and "'maxResults'" in message


def test_next_token_of_another_sort_is_refused(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    inputs = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    prefix = unique("token")
    names = [f"{prefix}-{i}" for i in range(3)]
    try:
        for name in names:
            sm.create_transform_job(**job_request(name, model, inputs, f"file://{tmp_path}/out/{name}"))
        token = sm.list_transform_jobs(NameContains=prefix, MaxResults=1, SortBy="Name")["NextToken"]
        with pytest.raises(ClientError) as excinfo:
            sm.list_transform_jobs(NameContains=prefix, MaxResults=1, SortBy="CreationTime", NextToken=token)
        assert error_of(excinfo)[0] == "ValidationException"
    finally:
        _stop_all(sm, names)


# Create-time validation


def test_duplicate_job_name_is_resource_in_use(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("dup")
    request = job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{tmp_path}/out")
    arn = sm.create_transform_job(**request)["TransformJobArn"]
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**request)
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ResourceInUse", 400)
    assert arn in message
    wait_for_status(sm, name)
    with pytest.raises(ClientError) as excinfo:  # names are never reused, even after the job ends
        sm.create_transform_job(**request)
    assert error_of(excinfo)[0] == "ResourceInUse"


def test_unknown_model_is_refused_and_nothing_is_stored(sm: Any, tmp_path: Path) -> None:
    name = unique("orphan")
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**job_request(name, "no-such-model", write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{tmp_path}/out"))
    code, message, status = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message == 'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/no-such-model".'
    assert sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"] == []


def test_empty_input_prefix_is_refused_and_nothing_is_stored(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    (tmp_path / "empty").mkdir()
    name = unique("empty")
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**job_request(name, model, f"file://{tmp_path}/empty/", f"file://{tmp_path}/out"))
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    # SageMaker's sentence, worded for a local path: "No objects found under "file://…" given in input data source."
    assert f'objects found under "file://{tmp_path}/empty/" given in input data source.' in message
    with pytest.raises(ClientError) as excinfo:
        sm.describe_transform_job(TransformJobName=name)
    code, message, _ = error_of(excinfo)
    assert (code, message) == ("ValidationException", f'Could not find requested job with name "{name}".')


@pytest.mark.parametrize("where", ["input", "inside", "file"])
def test_output_a_rerun_would_read_or_that_is_a_file_is_refused_at_create(sm: Any, tmp_path: Path, where: str) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    source = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    (tmp_path / "results.csv").write_text("a file\n")
    output = {"input": source, "inside": f"{source}out/", "file": f"file://{tmp_path}/results.csv"}[where]
    name = unique("badoutput")
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**job_request(name, model, source, output))
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert message.startswith(f"1 validation error detected: Value '{output}' at 'transformOutput.s3OutputPath' failed to satisfy constraint: Member must ")
    assert sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"] == []


def test_bad_data_processing_filter_is_refused_at_create(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("badfilter")
    request = job_request(name, model, write_inputs(tmp_path / "in", {"a.json": '{"a": 1}\n'}), f"file://{tmp_path}/out")
    request["TransformInput"]["ContentType"] = "application/jsonlines"
    request["DataProcessing"] = {"InputFilter": "$[", "JoinSource": "None"}
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**request)
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert message.startswith('Invalid InputFilter: "$["'), message
    assert sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"] == []


def test_generic_validation_message_names_the_member(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    request = job_request("bad_name!", model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{tmp_path}/out")
    with pytest.raises(ClientError) as excinfo:
        sm.create_transform_job(**request)
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert message == (
        "1 validation error detected: Value 'bad_name!' at 'transformJobName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    )


# Describe, Stop


def test_describe_echoes_resolved_parameters(sm: Any, tmp_path: Path) -> None:
    """Decision 9: once resolved, Describe shows the execution parameters the caller omitted."""
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("resolved")
    sm.create_transform_job(**job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n2\n"}), f"file://{tmp_path}/out"))
    description = wait_for_status(sm, name)
    assert description["TransformJobStatus"] == "Completed"
    assert description["MaxConcurrentTransforms"] == 1
    assert description["MaxPayloadInMB"] == 6
    assert description["BatchStrategy"] == "MultiRecord"
    assert description["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 3}
    assert "Tags" not in description and "LastModifiedTime" not in description
    assert set(description) - {"ResponseMetadata"} <= botocore_members("DescribeTransformJob")


def test_describe_and_stop_unknown_job(sm: Any) -> None:
    for call in (sm.describe_transform_job, sm.stop_transform_job):
        with pytest.raises(ClientError) as excinfo:
            call(TransformJobName="never-created-job")
        assert error_of(excinfo) == ("ValidationException", 'Could not find requested job with name "never-created-job".', 400)


def test_stop_moves_to_stopping_at_once_then_stopped(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, HANGS_ON_SLOW)
    out = tmp_path / "out"
    name = unique("stopped")
    inputs = write_inputs(tmp_path / "in", {"a.csv": "fast\n", "b.csv": "slow\n", "c.csv": "fast\n"})
    sm.create_transform_job(**job_request(name, model, inputs, f"file://{out}"))

    deadline = time.monotonic() + 60
    while not ((out / "a.csv.out").exists() and temporaries(out)):  # b.csv is being transformed
        assert time.monotonic() < deadline, "the job never reached its slow object"
        assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "InProgress"
        time.sleep(0.05)

    sm.stop_transform_job(TransformJobName=name)
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Stopping", "Stopped")
    try:
        sm.stop_transform_job(TransformJobName=name)  # stopping twice is fine while it stops
    except ClientError as exc:  # unless its instance was stopped already
        assert "is in status Stopped" in str(exc)
    started = time.monotonic()
    description = wait_for_status(sm, name, timeout=20)
    assert description["TransformJobStatus"] == "Stopped"
    assert time.monotonic() - started < 10, "a stuck model must not hold a stop back"
    assert description["TransformEndTime"] >= description["TransformStartTime"]
    assert "FailureReason" not in description

    assert (out / "a.csv.out").read_bytes() == b"fast\n"  # objects already done stay (decision 14)
    assert not (out / "b.csv.out").exists()
    assert not (out / "c.csv.out").exists()
    assert temporaries(out) == []

    with pytest.raises(ClientError) as excinfo:
        sm.stop_transform_job(TransformJobName=name)
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException" and "Stopped" in message
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 5})


# Models and tags


def test_models_lifecycle(sm: Any, tmp_path: Path) -> None:
    prefix = unique("mdl")
    names = [f"{prefix}-{i}" for i in range(3)]
    arns = [sm.create_model(ModelName=n, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{write_model(tmp_path, BRACKET, n)}"})["ModelArn"] for n in names]
    assert arns[0] == f"arn:aws:sagemaker:us-east-1:000000000000:model/{names[0]}"

    described = sm.describe_model(ModelName=names[0])
    assert described["ModelName"] == names[0] and described["ModelArn"] == arns[0]
    assert described["PrimaryContainer"]["Image"] == "conveyor:python"
    assert set(described) - {"ResponseMetadata"} <= botocore_members("DescribeModel")

    with pytest.raises(ClientError) as excinfo:
        sm.create_model(ModelName=names[0], PrimaryContainer={"Image": "conveyor:python"})
    assert error_of(excinfo) == ("ValidationException", f'Cannot create already existing model "{arns[0]}".', 400)

    pages = sm.get_paginator("list_models").paginate(NameContains=prefix, SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 2})
    assert [m["ModelName"] for p in pages for m in p["Models"]] == names
    newest_first = sm.list_models(NameContains=prefix)["Models"]
    assert [m["ModelName"] for m in newest_first] == names[::-1]

    sm.delete_model(ModelName=names[1])
    assert [m["ModelName"] for m in sm.list_models(NameContains=prefix, SortBy="Name", SortOrder="Ascending")["Models"]] == [names[0], names[2]]
    for call in (sm.describe_model, sm.delete_model):
        with pytest.raises(ClientError) as excinfo:
            call(ModelName=names[1])
        assert error_of(excinfo) == ("ValidationException", f'Could not find model "{arns[1]}".', 400)


def test_a_local_model_whose_handler_is_missing_or_broken_is_refused_at_create(sm: Any, tmp_path: Path) -> None:
    broken = write_model(tmp_path, "def model_fn(model_dir)\n    return None\n", "broken")
    with pytest.raises(ClientError) as excinfo:
        sm.create_model(ModelName=unique("broken"), PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(broken)})
    code, message, _ = error_of(excinfo)
    assert code == "ValidationException"
    assert f"the handler {broken}/code/inference.py does not compile: expected ':' (line 1)" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClientError) as excinfo:
        sm.create_model(ModelName=unique("empty"), PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(tmp_path / "empty")})
    assert "the model directory has no code/inference.py" in error_of(excinfo)[1]
    named = write_model(tmp_path, BRACKET, "named")
    with pytest.raises(ClientError) as excinfo:
        sm.create_model(
            ModelName=unique("named"),
            PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(named), "Environment": {"SAGEMAKER_PROGRAM": "serve.py"}},
        )
    assert "the model directory has no code/serve.py" in error_of(excinfo)[1]
    # A container image runs its own code: checked when a job starts, as in SageMaker.
    sm.create_model(ModelName=unique("image"), PrimaryContainer={"Image": "example.com/model:1", "ModelDataUrl": str(broken)})


def test_tags_on_models_and_jobs(sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET, Tags=[{"Key": "team", "Value": "ml"}])
    model_arn = sm.describe_model(ModelName=model)["ModelArn"]
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "team", "Value": "ml"}]

    name = unique("tagged")
    request = job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{tmp_path}/out")
    job_arn = sm.create_transform_job(**request, Tags=[{"Key": "owner", "Value": "alice"}, {"Key": "cost", "Value": "1"}])["TransformJobArn"]
    assert sorted(sm.list_tags(ResourceArn=job_arn)["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "cost", "Value": "1"}, {"Key": "owner", "Value": "alice"},
    ]

    added = sm.add_tags(ResourceArn=job_arn, Tags=[{"Key": "owner", "Value": "bob"}, {"Key": "stage", "Value": "dev"}])
    assert added["Tags"] == [{"Key": "owner", "Value": "bob"}, {"Key": "stage", "Value": "dev"}]
    sm.delete_tags(ResourceArn=job_arn, TagKeys=["cost", "absent-key"])
    assert sorted(sm.list_tags(ResourceArn=job_arn)["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "owner", "Value": "bob"}, {"Key": "stage", "Value": "dev"},
    ]
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "team", "Value": "ml"}]  # untouched

    missing = "arn:aws:sagemaker:us-east-1:000000000000:transform-job/never-created"
    for call, arguments in (
        (sm.list_tags, {}),
        (sm.add_tags, {"Tags": [{"Key": "k", "Value": "v"}]}),
        (sm.delete_tags, {"TagKeys": ["k"]}),
    ):
        with pytest.raises(ClientError) as excinfo:
            call(ResourceArn=missing, **arguments)
        code, message, status = error_of(excinfo)
        assert (code, status) == ("ResourceNotFound", 400) and missing in message

    with pytest.raises(ClientError) as excinfo:
        sm.add_tags(ResourceArn=job_arn, Tags=[{"Key": "a" * 129, "Value": "v"}])
    assert error_of(excinfo)[0] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        sm.add_tags(ResourceArn=job_arn, Tags=[{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}])
    assert error_of(excinfo)[0] == "ValidationException"
    wait_for_status(sm, name)


# Conveyor's progress route


def test_progress_route_is_signed_json(conveyor_server: ServerProcess, sm: Any, tmp_path: Path) -> None:
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("progress")
    sm.create_transform_job(**job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n2\n3\n", "b.csv": "4\n"}), f"file://{tmp_path}/out"))
    wait_for_status(sm, name)

    response = signed_get(conveyor_server, f"/conveyor/v1/jobs/{name}/progress")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    progress = response.json()
    assert progress["TransformJobName"] == name and progress["TransformJobStatus"] == "Completed"
    assert (progress["ObjectsTotal"], progress["ObjectsDone"], progress["ObjectsFailed"], progress["ObjectsInFlight"]) == (2, 2, 0, 0)
    assert progress["Records"] == 4
    assert progress["BytesIn"] == progress["BytesTotal"] == 8
    assert progress["BytesOut"] > 0 and progress["EtaSeconds"] is None
    assert progress["ElapsedSeconds"] >= 0

    log = signed_get(conveyor_server, f"/conveyor/v1/jobs/{name}/logs")
    assert log.status_code == 200
    assert any("Completed." in event["message"] for event in log.json()["events"])

    unsigned = httpx.get(f"{conveyor_server.endpoint}/conveyor/v1/jobs/{name}/progress", timeout=10)
    assert_aws_error(unsigned, 403, "MissingAuthenticationTokenException")
    assert_aws_error(signed_get(conveyor_server, f"/conveyor/v1/jobs/{name}/progress", secret="wrong"), 400, "InvalidSignatureException")
    for view in ("progress", "logs"):
        message = assert_aws_error(signed_get(conveyor_server, f"/conveyor/v1/jobs/never-created/{view}"), 400, "ValidationException")
        assert message == 'Could not find requested job with name "never-created".'


# Capacity, on a private server of capacity 2


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_server(tmp_path_factory.mktemp("capacity-home"), env={"CONVEYOR_CAPACITY": "2"})
    yield server
    server.stop()


def test_jobs_beyond_capacity_wait_in_creation_order(small_server: ServerProcess, tmp_path: Path) -> None:
    sm = small_server.client()
    slow = create_model(sm, tmp_path, SLEEPY)
    quick = create_model(sm, tmp_path, BRACKET)
    big, waiting = unique("holds-capacity"), unique("waits")
    two_objects = write_inputs(tmp_path / "in2", {"a.csv": "1\n", "b.csv": "2\n"})
    request = job_request(big, slow, two_objects, f"file://{tmp_path}/out-big")
    request["TransformResources"]["InstanceCount"] = 2
    sm.create_transform_job(**request)
    sm.create_transform_job(**job_request(waiting, quick, write_inputs(tmp_path / "in1", {"c.csv": "3\n"}), f"file://{tmp_path}/out-wait"))

    saw_big_running = False
    while True:
        # The waiting job first: had it started, the first job, described after it, would be over.
        second = sm.describe_transform_job(TransformJobName=waiting)
        first = sm.describe_transform_job(TransformJobName=big)
        if first["TransformJobStatus"] != "InProgress":
            break
        saw_big_running = saw_big_running or "TransformStartTime" in first
        assert second["TransformJobStatus"] == "InProgress"
        assert "TransformStartTime" not in second, "the second job started while the first held the whole capacity"
        assert not (tmp_path / "out-wait").exists()
        time.sleep(0.1)
    assert saw_big_running
    first = wait_for_status(sm, big)
    second = wait_for_status(sm, waiting)
    assert (first["TransformJobStatus"], second["TransformJobStatus"]) == ("Completed", "Completed")
    assert second["TransformStartTime"] >= first["TransformEndTime"]
    # The first job ran its two instances (the whole capacity) at once.
    streams = small_server.client("logs").describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{big}/")["logStreams"]
    assert {f"{big}/instance-1", f"{big}/instance-2"} <= {s["logStreamName"] for s in streams}


def test_stopping_a_queued_job_does_not_wait_for_capacity(small_server: ServerProcess, tmp_path: Path) -> None:
    """A job waiting for capacity has no workers to stop: Stop takes it to Stopped at once,
    even from behind another waiting job."""
    sm = small_server.client()
    slow = create_model(sm, tmp_path, SLEEPY)
    big, first, second = unique("holds"), unique("queued-first"), unique("queued-second")
    request = job_request(big, slow, write_inputs(tmp_path / "in-big", {f"{i}.csv": f"{i}\n" for i in range(20)}), f"file://{tmp_path}/out-big")
    request["TransformResources"]["InstanceCount"] = 2
    sm.create_transform_job(**request)
    small_inputs = write_inputs(tmp_path / "in-small", {"a.csv": "1\n"})
    sm.create_transform_job(**job_request(first, slow, small_inputs, f"file://{tmp_path}/out-first"))
    sm.create_transform_job(**job_request(second, slow, small_inputs, f"file://{tmp_path}/out-second"))
    try:
        sm.stop_transform_job(TransformJobName=second)
        stopped = wait_for_status(sm, second, timeout=10)
        assert stopped["TransformJobStatus"] == "Stopped"
        assert "TransformStartTime" not in stopped
        assert sm.describe_transform_job(TransformJobName=big)["TransformJobStatus"] == "InProgress"
        assert "TransformStartTime" not in sm.describe_transform_job(TransformJobName=first)
        assert not (tmp_path / "out-second").exists()
    finally:
        _stop_all(sm, [big, first, second])
        for name in (big, first, second):
            wait_for_status(sm, name, timeout=30)


def test_instance_count_over_capacity_is_logged(small_server: ServerProcess, tmp_path: Path) -> None:
    sm = small_server.client()
    logs = small_server.client("logs")
    model = create_model(sm, tmp_path, BRACKET)
    name = unique("too-many")
    request = job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n", "b.csv": "2\n", "c.csv": "3\n"}), f"file://{tmp_path}/out")
    request["TransformResources"]["InstanceCount"] = 5
    sm.create_transform_job(**request)
    description = wait_for_status(sm, name)
    assert description["TransformJobStatus"] == "Completed"
    assert description["TransformResources"]["InstanceCount"] == 5  # Describe shows what was asked

    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=name)["logStreams"]]
    assert f"{name}/instance-1" in streams and f"{name}/instance-2" in streams
    assert f"{name}/instance-3" not in streams
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamName=f"{name}/instance-1", startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    assert "InstanceCount=5 is more than this server's capacity of 2; running 2 instances." in messages
    data_log = logs.get_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamName=f"{name}/instance-1/data-log", startFromHead=True)["events"]
    assert any("[sagemaker logs]: MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in e["message"] for e in data_log)
    for obj in ("a", "b", "c"):
        assert (tmp_path / "out" / f"{obj}.csv.out").exists()


# Signatures


def test_wrong_secret_is_invalid_signature(conveyor_server: ServerProcess) -> None:
    access_key, _ = keys(conveyor_server)
    client = boto3.client(
        "sagemaker", endpoint_url=conveyor_server.endpoint, region_name="us-east-1",
        aws_access_key_id=access_key, aws_secret_access_key="not-the-secret",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        client.list_transform_jobs()
    code, message, status = error_of(excinfo)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")


def test_unknown_access_key_is_unrecognized_client(conveyor_server: ServerProcess) -> None:
    client = boto3.client(
        "sagemaker", endpoint_url=conveyor_server.endpoint, region_name="us-east-1",
        aws_access_key_id="AKIANOTKNOWNANYWHERE", aws_secret_access_key="whatever",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        client.list_models()
    assert error_of(excinfo) == ("UnrecognizedClientException", "The security token included in the request is invalid.", 400)


@pytest.mark.parametrize(("skew_minutes", "status", "code", "fragment"), [
    (-16, 400, "InvalidSignatureException", "Signature expired"),
    (16, 400, "InvalidSignatureException", "Signature not yet current"),
    (-14, 200, None, None),
    (14, 200, None, None),
])
def test_clock_skew(conveyor_server: ServerProcess, skew_minutes: int, status: int, code: str | None, fragment: str | None) -> None:
    access_key, secret = keys(conveyor_server)
    body = b'{"MaxResults": 1}'
    host = f"127.0.0.1:{conveyor_server.port}"
    when = datetime.now(timezone.utc) + timedelta(minutes=skew_minutes)
    headers = sign_by_hand(access_key, secret, host, "SageMaker.ListTransformJobs", body, when)
    response = httpx.post(f"{conveyor_server.endpoint}/", content=body, headers=headers, timeout=10)
    if code is None:
        assert response.status_code == status, response.text
        assert "TransformJobSummaries" in response.json()
    else:
        assert fragment in assert_aws_error(response, status, code)


def test_unsigned_request_is_refused(conveyor_server: ServerProcess) -> None:
    response = httpx.post(
        f"{conveyor_server.endpoint}/", content=b"{}",
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"}, timeout=10,
    )
    assert_aws_error(response, 403, "MissingAuthenticationTokenException")


def test_body_changed_after_signing_is_refused(conveyor_server: ServerProcess) -> None:
    access_key, secret = keys(conveyor_server)
    headers = sign_by_hand(access_key, secret, f"127.0.0.1:{conveyor_server.port}", "SageMaker.ListModels", b"{}", datetime.now(timezone.utc))
    response = httpx.post(f"{conveyor_server.endpoint}/", content=b'{"MaxResults": 2}', headers=headers, timeout=10)
    assert_aws_error(response, 400, "InvalidSignatureException")


# Framing


def test_unknown_operation(conveyor_server: ServerProcess) -> None:
    message = assert_aws_error(signed_call(conveyor_server, "SageMaker.CreateEndpoint", b"{}"), 400, "UnknownOperationException")
    assert "CreateEndpoint" in message
    assert_aws_error(signed_call(conveyor_server, "DynamoDB_20120810.ListTables", b"{}"), 400, "UnknownOperationException")


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"MaxResults": 1,}'])
def test_malformed_body_is_serialization_exception(conveyor_server: ServerProcess, body: bytes) -> None:
    assert_aws_error(signed_call(conveyor_server, "SageMaker.ListTransformJobs", body), 400, "SerializationException")


def test_wrong_content_type(conveyor_server: ServerProcess) -> None:
    assert_aws_error(signed_call(conveyor_server, "SageMaker.ListModels", b"{}", content_type="text/plain"), 415, "UnsupportedMediaTypeException")


def _send_and_read(port: int, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and only part of its body, then read what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body_part)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < received.find(b"\r\n\r\n") + 4 + 10:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_oversized_body_is_refused_before_it_is_read(conveyor_server: ServerProcess) -> None:
    declared = 64 * 1024 * 1024
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{conveyor_server.port}\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: SageMaker.CreateModel\r\nContent-Length: {declared}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = _send_and_read(conveyor_server.port, head, b'{"ModelName": "' + b"x" * 4096)
    assert time.monotonic() - started < 5
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")
    assert body["__type"] == "RequestEntityTooLargeException"


def test_oversized_chunked_body_is_refused_while_it_streams(conveyor_server: ServerProcess) -> None:
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{conveyor_server.port}\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: SageMaker.CreateModel\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(18))  # 1.1 MiB, never terminated
    answer = _send_and_read(conveyor_server.port, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_server_still_answers(sm: Any) -> None:
    assert "TransformJobSummaries" in sm.list_transform_jobs(MaxResults=1)
