"""Fuzz the AWS JSON endpoint with raw signed HTTP: random and truncated bodies, wrong types,
huge strings, unknown members, edge values, unknown targets and media types, for every operation.

Every answer to a refused request must be a well-formed AWS error (`{"__type", "message"}` with a
4xx status, never a 500), the server must keep answering, and nothing a refused request carried
may reach the store. Requests are signed with botocore's `SigV4Auth` over whatever bytes are sent,
so the fuzz reaches past authentication into parsing and validation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import botocore.credentials
import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.models import BRACKET, write_model
from tests.server import ServerProcess, start_server, wait_for_status

ERROR_STATUSES = {400, 413, 415}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

MODEL = "fuzz-model"
JOB = "fuzz-job"
MODEL_ARN = f"arn:aws:sagemaker:us-east-1:000000000000:model/{MODEL}"
LOG_GROUP = "/aws/sagemaker/TransformJobs"


def base_requests(tmp: Path) -> dict[str, dict[str, Any]]:
    """One valid request per operation, by X-Amz-Target. Write operations aim at names that do
    not exist (or at a finished job), so that only a mutation could make them change the store."""
    job = {
        "TransformJobName": "fuzz-new-job",
        "ModelName": MODEL,
        "MaxConcurrentTransforms": 1,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"file://{tmp}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {"S3OutputPath": f"file://{tmp}/fuzz-out", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "DataProcessing": {"InputFilter": "$[0]", "OutputFilter": "$", "JoinSource": "None"},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    return {
        "SageMaker.CreateModel": {
            "ModelName": "fuzz-new-model",
            "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{tmp}/model", "Environment": {"A": "1"}},
            "ExecutionRoleArn": "arn:aws:iam::000000000000:role/fuzz",
            "Tags": [{"Key": "k", "Value": "v"}],
        },
        "SageMaker.DescribeModel": {"ModelName": MODEL},
        "SageMaker.ListModels": {"NameContains": "fuzz", "SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 5, "CreationTimeAfter": 1},
        "SageMaker.DeleteModel": {"ModelName": "fuzz-absent-model"},
        "SageMaker.CreateTransformJob": job,
        "SageMaker.DescribeTransformJob": {"TransformJobName": JOB},
        "SageMaker.ListTransformJobs": {
            "NameContains": "fuzz", "StatusEquals": "Completed", "SortBy": "Status", "SortOrder": "Descending",
            "MaxResults": 3, "CreationTimeAfter": 1, "LastModifiedTimeBefore": 4102444800,
        },
        "SageMaker.StopTransformJob": {"TransformJobName": JOB},
        "SageMaker.AddTags": {"ResourceArn": MODEL_ARN, "Tags": [{"Key": "added", "Value": "x"}]},
        "SageMaker.ListTags": {"ResourceArn": MODEL_ARN},
        "SageMaker.DeleteTags": {"ResourceArn": MODEL_ARN, "TagKeys": ["team"]},
        "Logs_20140328.DescribeLogStreams": {"logGroupName": LOG_GROUP, "logStreamNamePrefix": JOB, "limit": 5},
        "Logs_20140328.GetLogEvents": {"logGroupName": LOG_GROUP, "logStreamName": f"{JOB}/instance-1", "startFromHead": True, "limit": 5},
        "Logs_20140328.FilterLogEvents": {"logGroupName": LOG_GROUP, "logStreamNamePrefix": JOB, "startTime": 0, "limit": 5},
    }


READ_ONLY = {
    "SageMaker.DescribeModel", "SageMaker.ListModels", "SageMaker.DescribeTransformJob", "SageMaker.ListTransformJobs",
    "SageMaker.ListTags", "Logs_20140328.DescribeLogStreams", "Logs_20140328.GetLogEvents", "Logs_20140328.FilterLogEvents",
}
# Members whose value is a map: any key is allowed there, so an "unknown member" is not unknown.
MAPS = {"Environment"}


class Caller:
    """Signs and sends raw calls over one keep-alive connection."""

    def __init__(self, server: ServerProcess) -> None:
        credentials = server.session().get_credentials()
        self.credentials = botocore.credentials.Credentials(credentials.access_key, credentials.secret_key)
        self.endpoint = server.endpoint
        self.http = httpx.Client(timeout=30)

    def call(self, target: str, body: bytes, *, content_type: str = "application/x-amz-json-1.1") -> httpx.Response:
        service = "logs" if target.startswith("Logs_") else "sagemaker"
        request = AWSRequest(method="POST", url=f"{self.endpoint}/", data=body, headers={"Content-Type": content_type, "X-Amz-Target": target})
        SigV4Auth(self.credentials, service, "us-east-1").add_auth(request)
        return self.http.post(f"{self.endpoint}/", content=body, headers=dict(request.headers.items()))

    def json(self, target: str, request: dict[str, Any]) -> dict[str, Any]:
        response = self.call(target, orjson.dumps(request))
        assert response.status_code == 200, response.text
        return response.json()


def snapshot(caller: Caller) -> dict[str, Any]:
    """Everything a refused request could have changed, as the API shows it."""
    def pages(target: str, key: str, request: dict[str, Any]) -> list[Any]:
        items, token = [], None
        while True:
            page = caller.json(target, {**request, **({"NextToken": token} if token else {})})
            items += page[key]
            token = page.get("NextToken")
            if not token:
                return items

    return {
        "jobs": pages("SageMaker.ListTransformJobs", "TransformJobSummaries", {"MaxResults": 100}),
        "models": pages("SageMaker.ListModels", "Models", {"MaxResults": 100}),
        "job": caller.json("SageMaker.DescribeTransformJob", {"TransformJobName": JOB}),
        "model": caller.json("SageMaker.DescribeModel", {"ModelName": MODEL}),
        "model_tags": caller.json("SageMaker.ListTags", {"ResourceArn": MODEL_ARN}),
        "job_tags": caller.json("SageMaker.ListTags", {"ResourceArn": f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{JOB}"}),
    }


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Caller, dict[str, dict[str, Any]], ServerProcess]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    server = start_server(tmp / "home")
    try:
        sm = server.client()
        model_dir = write_model(tmp, BRACKET)
        sm.create_model(ModelName=MODEL, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"}, Tags=[{"Key": "team", "Value": "ml"}])
        (tmp / "in").mkdir()
        (tmp / "in" / "a.csv").write_text("1,2\n")
        request = copy.deepcopy(base_requests(tmp)["SageMaker.CreateTransformJob"])
        request["TransformJobName"] = JOB
        request["TransformOutput"]["S3OutputPath"] = f"file://{tmp}/job-out"
        sm.create_transform_job(**request)
        assert wait_for_status(sm, JOB)["TransformJobStatus"] == "Completed"
        caller = Caller(server)
        before = snapshot(caller)
        yield caller, base_requests(tmp), server
        assert snapshot(caller) == before, "a refused request changed the store"
        assert server.process.poll() is None, "the server died"
        assert "Traceback" not in server.log(), server.log()
    finally:
        server.stop()


def encode(value: Any) -> bytes:
    """JSON as a client might send it: integers of any size, lone surrogates passed through."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def assert_well_formed(response: httpx.Response, *, allow_success: bool = False) -> None:
    if allow_success and response.status_code == 200:
        assert isinstance(response.json(), dict)
        return
    assert response.status_code in ERROR_STATUSES, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers.get("x-amzn-RequestId")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"__type", "message"}, body
    assert isinstance(body["__type"], str) and body["__type"] and body["__type"] != "InternalFailure"
    assert isinstance(body["message"], str)


# Strategies

targets = st.sampled_from(sorted(base_requests(Path("/tmp")).keys()))
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a request (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(request: dict[str, Any], path: tuple, new: Any) -> dict[str, Any]:
    result = copy.deepcopy(request)
    holder = result
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return result


def lookup(request: dict[str, Any], path: tuple) -> Any:
    value: Any = request
    for step in path:
        value = value[step]
    return value


def wrong_type_for(value: Any) -> st.SearchStrategy[Any]:
    """A non-null value of another JSON type than `value` (null would mean "absent")."""
    options = {
        "string": st.text(max_size=20),
        "integer": st.integers(min_value=-(10**6), max_value=10**6),
        "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
        "boolean": st.booleans(),
        "list": st.lists(json_scalars, max_size=3),
        "object": st.dictionaries(st.text(max_size=8), json_scalars, max_size=3),
    }
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "list"
    elif isinstance(value, dict):
        kind = "object"
    else:
        kind = "float"
    excluded = {kind}
    if kind == "integer":
        excluded.add("float")  # an integer is a valid value of a float member
    return st.sampled_from(sorted(set(options) - excluded)).flatmap(lambda k: options[k])


@st.composite
def invalid_calls(draw: st.DrawFn, bases: dict[str, dict[str, Any]]) -> tuple[str, bytes, str]:
    """(target, body, what was done to it) for a request that must be refused."""
    target = draw(targets)
    request = bases[target]
    how = draw(st.sampled_from(["random", "truncated", "not-an-object", "wrong-type", "huge-string", "unknown-member", "nested-unknown"]))
    if how == "random":
        body = draw(st.binary(min_size=1, max_size=300))
        if not body.strip():
            body = b"[" + body  # a blank body means {}, a valid call of the List operations
        try:
            if isinstance(orjson.loads(body), dict):
                body = b"{" + body  # a JSON object by chance: make it not one
        except orjson.JSONDecodeError:
            pass
        return target, body, how
    if how == "truncated":
        whole = orjson.dumps(request)
        return target, whole[: draw(st.integers(min_value=1, max_value=len(whole) - 1))], how
    if how == "not-an-object":
        return target, encode(draw(st.lists(json_scalars, max_size=3) | json_scalars.filter(lambda v: v is not None))), how
    if how == "wrong-type":
        path = draw(st.sampled_from(paths(request)))
        new = draw(wrong_type_for(lookup(request, path)))
        if len(path) >= 2 and path[-2] in MAPS:  # a map value: only a non-string is wrong
            new = draw(st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2))
        return target, encode(replaced(request, path, new)), f"{how} at {path}"
    if how == "huge-string":
        strings = [p for p in paths(request) if isinstance(lookup(request, p), str)]
        path = draw(st.sampled_from(strings))
        size = draw(st.sampled_from([20_000, 100_000, 600_000, 1_500_000]))
        filler = draw(st.sampled_from(["a", "é", "\U0001f600", "%", "\\"]))
        return target, encode(replaced(request, path, filler * size)), f"{how} at {path}"
    structures = [()] + [p for p in paths(request) if isinstance(lookup(request, p), dict) and p[-1] not in MAPS]
    path = () if how == "unknown-member" else draw(st.sampled_from(structures))
    name = "Unknown" + draw(st.text(alphabet=st.characters(categories=["L", "N"]), max_size=12))
    holder = lookup(request, path) if path else request
    new = {**holder, name: draw(json_values.filter(lambda v: v is not None))}
    mutated = replaced(request, path, new) if path else new
    return target, encode(mutated), f"{how} at {path}"


# Tests


def test_invalid_requests_get_aws_errors(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    caller, bases, _ = fuzzed

    @FUZZ
    @given(call=invalid_calls(bases))
    def check(call: tuple[str, bytes, str]) -> None:
        target, body, how = call
        response = caller.call(target, body)
        assert_well_formed(response)
        if how == "random" or how == "truncated" or how == "not-an-object":
            assert response.json()["__type"] == "SerializationException", (how, body[:100], response.text[:300])

    check()


@st.composite
def edge_calls(draw: st.DrawFn, bases: dict[str, dict[str, Any]]) -> tuple[str, bytes]:
    """A read-only request with one value swapped for an edge value of any type: these may be
    valid (then 200) but must never fail the server."""
    target = draw(st.sampled_from(sorted(READ_ONLY)))
    request = bases[target]
    path = draw(st.sampled_from(paths(request)))
    edge = draw(
        st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1e300, -1e300, 1e-300, "", " ", "\x00", "0", "1e400", "nan", "-1",
                         "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "../../etc", "%00", "a" * 9000, [], {}, [None], True])
        | json_values
    )
    return target, encode(replaced(request, path, edge))


def test_edge_values_never_fail_the_server(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    caller, bases, _ = fuzzed

    @FUZZ
    @given(call=edge_calls(bases))
    def check(call: tuple[str, bytes]) -> None:
        assert_well_formed(caller.call(*call), allow_success=True)

    check()


def test_null_for_any_member_means_absent(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    """Every member of every read-only request set to JSON null, one at a time: the answer is the
    one given when the member is left out (a refusal when it is required), never a 500."""
    caller, bases, _ = fuzzed
    for target in sorted(READ_ONLY):
        for path in paths(bases[target]):
            with_null = caller.call(target, encode(replaced(bases[target], path, None)))
            assert_well_formed(with_null, allow_success=True)
            without = copy.deepcopy(bases[target])
            holder = lookup(without, path[:-1]) if len(path) > 1 else without
            del holder[path[-1]]
            left_out = caller.call(target, encode(without))
            assert with_null.status_code == left_out.status_code, (target, path, with_null.text, left_out.text)
            if with_null.status_code == 200:
                assert with_null.json() == left_out.json(), (target, path)


def test_forged_next_tokens(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    """NextTokens are opaque but decoded by the server: forged ones must be refused, not crash it."""
    import base64

    caller, _, _ = fuzzed
    keys = st.lists(st.integers(min_value=-(2**64), max_value=2**64) | st.floats(allow_nan=False) | st.text(max_size=10) | st.none() | st.booleans(), max_size=4)
    labels = st.sampled_from(["transform-jobs/CreationTime", "transform-jobs/Name", "transform-jobs/Status", "models/CreationTime", "models/Name", "x"])

    @FUZZ
    @given(label=labels, key=keys, target=st.sampled_from(["SageMaker.ListTransformJobs", "SageMaker.ListModels"]), sort=st.sampled_from(["Name", "CreationTime", "Status"]))
    def check(label: str, key: list[Any], target: str, sort: str) -> None:
        token = base64.urlsafe_b64encode(encode([label, *key])).decode()
        if target == "SageMaker.ListModels" and sort == "Status":
            sort = "Name"
        response = caller.call(target, orjson.dumps({"NextToken": token, "SortBy": sort}))
        assert_well_formed(response, allow_success=True)

    check()


def test_unknown_targets_and_media_types(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    caller, bases, _ = fuzzed

    @FUZZ
    @given(
        target=st.sampled_from(["SageMaker.", "SageMaker", ".ListModels", "SageMaker.CreateEndpoint", "sagemaker.ListModels", "Logs_20140328.PutLogEvents"])
        | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40).filter(lambda t: t not in bases),
        content_type=st.sampled_from(["application/x-amz-json-1.1", "application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/xml"]),
    )
    def check(target: str, content_type: str) -> None:
        response = caller.call(target, b"{}", content_type=content_type)
        assert_well_formed(response)
        expected = {"UnknownOperationException", "UnsupportedMediaTypeException", "InvalidSignatureException"}
        assert response.json()["__type"] in expected, response.text

    check()


def test_server_still_answers_after_the_fuzz(fuzzed: tuple[Caller, dict[str, dict[str, Any]], ServerProcess]) -> None:
    caller, _, server = fuzzed
    assert caller.json("SageMaker.DescribeTransformJob", {"TransformJobName": JOB})["TransformJobStatus"] == "Completed"
    assert server.client().list_models()["Models"]
