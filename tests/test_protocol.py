"""AWS JSON 1.1 framing, driven by real boto3 clients and raw HTTP against uvicorn."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conveyor.api.protocol import (
    AwsJsonEndpoint,
    AwsRequest,
    aws_error,
    aws_response,
    to_epoch,
)
from conveyor.errors import FieldError, ValidationException
from tests.live_server import serve

ACCESS_KEY = "AKIAPROTOCOLTEST0000"
SECRET = "protocol-test-secret"
LIMIT = 64 * 1024
CREATED = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def list_models(call: AwsRequest) -> dict[str, Any]:
    return {
        "Models": [{"ModelName": "m", "ModelArn": "arn:aws:sagemaker:us-east-1:0:model/m", "CreationTime": CREATED}],
        "NextToken": call.access_key_id,
    }


def list_transform_jobs(call: AwsRequest) -> dict[str, Any]:
    """Echo what arrived, with the timestamp (epoch seconds, as botocore sends it) read, so tests see the request side."""
    after = datetime.fromtimestamp(call.body["CreationTimeAfter"], tz=timezone.utc) if "CreationTimeAfter" in call.body else None
    echo = {"body": call.body, "after": after.isoformat() if after else None, "target": call.target}
    return {"TransformJobSummaries": [], "NextToken": orjson.dumps(echo).decode()}


def describe_model(call: AwsRequest) -> dict[str, Any]:
    raise ValidationException([FieldError("modelName", "x" * 64, "Member must have length less than or equal to 63")])


async def delete_model(call: AwsRequest) -> None:
    raise RuntimeError("database password is hunter2")


def stop_transform_job(call: AwsRequest) -> None:
    return None


APP = AwsJsonEndpoint(
    {
        "SageMaker.ListModels": list_models,
        "SageMaker.ListTransformJobs": list_transform_jobs,
        "SageMaker.DescribeModel": describe_model,
        "SageMaker.DeleteModel": delete_model,
        "SageMaker.StopTransformJob": stop_transform_job,
    },
    credentials={ACCESS_KEY: SECRET}.get,
    max_body_bytes=LIMIT,
)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve(APP) as url:
        yield url


@pytest.fixture(scope="module")
def sagemaker(endpoint: str) -> Any:
    return boto3.client(
        "sagemaker",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def post(
    endpoint: str,
    body: bytes,
    *,
    target: str = "SageMaker.ListModels",
    content_type: str = "application/x-amz-json-1.1",
    signed: bool = True,
) -> httpx.Response:
    """A raw call, signed by botocore, for inputs a boto3 client would never send."""
    request = AWSRequest(
        method="POST", url=endpoint + "/", data=body, headers={"Content-Type": content_type, "X-Amz-Target": target}
    )
    if signed:
        SigV4Auth(Credentials(ACCESS_KEY, SECRET), "sagemaker", "us-east-1").add_auth(request)
    return httpx.post(endpoint + "/", content=body, headers=dict(request.headers.items()))


def error_body(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert UUID.match(response.headers["x-amzn-requestid"])
    return orjson.loads(response.content)


# --- through boto3 -----------------------------------------------------------------------------


def test_success_response_is_parsed_by_botocore(sagemaker: Any) -> None:
    response = sagemaker.list_models()
    assert response["NextToken"] == ACCESS_KEY
    assert response["Models"][0]["CreationTime"] == CREATED
    metadata = response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == 200
    assert UUID.match(metadata["RequestId"])
    assert metadata["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"


def test_request_ids_differ_per_request(sagemaker: Any) -> None:
    first = sagemaker.list_models()["ResponseMetadata"]["RequestId"]
    second = sagemaker.list_models()["ResponseMetadata"]["RequestId"]
    assert first != second


def test_validation_exception_is_parsed_by_botocore(sagemaker: Any) -> None:
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_model(ModelName="m")
    response = caught.value.response
    assert response["Error"] == {
        "Code": "ValidationException",
        "Message": f"1 validation error detected: Value '{'x' * 64}' at 'modelName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63",
    }
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert UUID.match(response["ResponseMetadata"]["RequestId"])
    assert caught.value.operation_name == "DescribeModel"


def test_unexpected_exception_is_internal_failure_without_details(sagemaker: Any) -> None:
    with pytest.raises(ClientError) as caught:
        sagemaker.delete_model(ModelName="m")
    response = caught.value.response
    assert response["Error"]["Code"] == "InternalFailure"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert UUID.match(response["ResponseMetadata"]["RequestId"])
    assert "hunter2" not in str(response) and "Traceback" not in str(response)


def test_operation_without_output_answers_an_empty_object(sagemaker: Any, endpoint: str) -> None:
    assert sagemaker.stop_transform_job(TransformJobName="j")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert post(endpoint, b'{"TransformJobName": "j"}', target="SageMaker.StopTransformJob").content == b"{}"


def test_request_timestamps_arrive_as_epoch_seconds(sagemaker: Any) -> None:
    after = datetime(2023, 1, 1, tzinfo=timezone.utc)
    echo = orjson.loads(sagemaker.list_transform_jobs(CreationTimeAfter=after)["NextToken"])
    assert echo["body"] == {"CreationTimeAfter": 1672531200}
    assert echo["after"] == "2023-01-01T00:00:00+00:00"
    assert echo["target"] == "SageMaker.ListTransformJobs"


# --- raw framing -------------------------------------------------------------------------------


def test_response_timestamps_are_epoch_floats_with_milliseconds(endpoint: str) -> None:
    response = post(endpoint, b"{}")
    assert response.status_code == 200
    assert b'"CreationTime":1704164645.678' in response.content


def test_unknown_operation(endpoint: str) -> None:
    response = post(endpoint, b"{}", target="SageMaker.CreateTrainingJob")
    assert response.status_code == 400
    assert error_body(response) == {
        "__type": "UnknownOperationException",
        "message": "Unknown operation 'CreateTrainingJob' for SageMaker.",
    }


@pytest.mark.parametrize("target", ["DynamoDB_20120810.GetItem", "ListModels", "", "SageMaker."])
def test_unknown_or_malformed_target(endpoint: str, target: str) -> None:
    response = post(endpoint, b"{}", target=target, signed=False)
    assert response.status_code == 400
    assert error_body(response)["__type"] == "UnknownOperationException"


def test_malformed_json_is_a_serialization_exception(endpoint: str) -> None:
    response = post(endpoint, b'{"MaxResults": ')
    assert response.status_code == 400
    body = error_body(response)
    assert body["__type"] == "SerializationException"
    assert body["message"].startswith("The request body is not valid JSON: ")


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[1, 2]", "an array"), (b'"text"', "a string"), (b"null", "null"), (b"3", "a number")]
)
def test_body_must_be_a_json_object(endpoint: str, raw: bytes, kind: str) -> None:
    response = post(endpoint, raw)
    assert response.status_code == 400
    assert error_body(response) == {
        "__type": "SerializationException",
        "message": f"The request body must be a JSON object, not {kind}.",
    }


def test_signature_must_be_scoped_to_the_targets_service(endpoint: str) -> None:
    response = post(endpoint, b"{}", target="Logs_20140328.DescribeLogGroups")  # signed for sagemaker
    assert response.status_code == 400
    assert error_body(response) == {
        "__type": "InvalidSignatureException",
        "message": "Credential should be scoped to correct service: 'logs'. ",
    }


def test_unauthenticated_body_is_not_parsed(endpoint: str) -> None:
    response = post(endpoint, b"not json", signed=False)
    assert response.status_code == 403
    assert error_body(response)["__type"] == "MissingAuthenticationTokenException"


def test_empty_body_means_no_arguments(endpoint: str) -> None:
    assert post(endpoint, b"").status_code == 200


def test_content_type(endpoint: str) -> None:
    assert post(endpoint, b"{}", content_type="application/json").status_code == 200
    assert post(endpoint, b"{}", content_type="application/x-amz-json-1.1; charset=utf-8").status_code == 200
    response = post(endpoint, b"{}", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error_body(response)["__type"] == "UnsupportedMediaTypeException"


def test_declared_oversized_body_is_refused(endpoint: str) -> None:
    response = post(endpoint, b" " * (LIMIT + 1), signed=False)
    assert response.status_code == 413
    assert error_body(response) == {
        "__type": "RequestEntityTooLargeException",
        "message": f"Request body of {LIMIT + 1} bytes exceeds the limit of {LIMIT} bytes.",
    }
    assert post(endpoint, b"{}" + b" " * (LIMIT - 2)).status_code == 200


def test_chunked_oversized_body_is_refused_without_reading_it(endpoint: str) -> None:
    chunk = b" " * 65536
    ceiling = 256 * 1024 * 1024
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent < ceiling:  # far more than the server may buffer
            sent += len(chunk)
            yield chunk

    response = httpx.post(
        endpoint + "/",
        content=body(),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers  # really chunked
    assert response.status_code == 413
    assert error_body(response) == {
        "__type": "RequestEntityTooLargeException",
        "message": f"Request body exceeds the limit of {LIMIT} bytes.",
    }
    assert response.headers["connection"] == "close"
    # The server stopped reading: what the client got to send is socket buffers, not the body.
    assert sent < ceiling // 4


def test_streamed_body_is_not_pulled_past_the_limit() -> None:
    """In-process: count the ASGI body messages the endpoint asks for."""
    pulled = 0
    chunk = b" " * 4096

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-amz-json-1.1"), (b"x-amz-target", b"SageMaker.ListModels")],
    }
    # A thread of its own: a session-wide browser fixture may hold an event loop in this one.
    runner = threading.Thread(target=lambda: asyncio.run(APP(scope, receive, send)))
    runner.start()
    runner.join()
    assert sent[0]["status"] == 413
    assert pulled == LIMIT // len(chunk) + 1


def test_method_other_than_post(endpoint: str) -> None:
    response = httpx.get(endpoint + "/", headers={"X-Amz-Target": "SageMaker.ListModels"})
    assert response.status_code == 400
    assert error_body(response)["__type"] == "UnknownOperationException"


def test_every_error_carries_a_request_id(endpoint: str) -> None:
    for response in (
        post(endpoint, b"{}", signed=False),
        post(endpoint, b"{", content_type="text/plain"),
        post(endpoint, b" " * (LIMIT + 1), signed=False),
        post(endpoint, b"{}", target="SageMaker.DeleteModel"),
    ):
        assert UUID.match(response.headers["x-amzn-requestid"])


# --- building blocks ---------------------------------------------------------------------------


def test_aws_error_and_response_shapes() -> None:
    error = aws_error(ValidationException("bad"), request_id="rid")
    assert (error.status_code, error.headers["x-amzn-requestid"]) == (400, "rid")
    assert orjson.loads(error.body) == {"__type": "ValidationException", "message": "bad"}
    response = aws_response({"When": datetime(1970, 1, 1, 0, 0, 1, 500000)})
    assert response.body == b'{"When":1.5}'
    assert uuid.UUID(response.headers["x-amzn-requestid"]).version == 4


def test_to_epoch_has_millisecond_precision() -> None:
    assert to_epoch(CREATED) == 1704164645.678
    assert to_epoch(datetime(2024, 1, 2, 3, 4, 5, 678499, tzinfo=timezone.utc)) == 1704164645.678
    assert to_epoch(datetime(2024, 1, 2, 3, 4, 5)) == 1704164645.0  # naive is UTC
    assert to_epoch(datetime(2024, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))) == 1704164645.0
