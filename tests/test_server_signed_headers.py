"""The signed-headers rule against a real `conveyor server` on 127.0.0.1.

A signature is only as strong as what it covers: one over `host;x-amz-date` alone would stay
valid with `X-Amz-Target` changed from DescribeModel to DeleteModel. botocore always signs the
target and the content type, so the server requires them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

import httpx
import pytest

from tests.server import ServerProcess

JSON_HEADERS = {"content-type": "application/x-amz-json-1.1", "x-amz-target": "SageMaker.DescribeModel"}


def signed_over(server: ServerProcess, method: str, path: str, headers: dict[str, str], signed: list[str], body: bytes = b"") -> dict[str, str]:
    """`headers` plus host, date and an Authorization whose signature covers only `signed`."""
    access_key, secret = server.session().get_credentials().access_key, server.session().get_credentials().secret_key
    amz_date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    all_headers = {**headers, "host": f"127.0.0.1:{server.port}", "x-amz-date": amz_date}
    names = sorted(signed)
    canonical = "\n".join(
        [method, path, "", "".join(f"{name}:{all_headers[name]}\n" for name in names), ";".join(names), hashlib.sha256(body).hexdigest()]
    )
    scope = f"{amz_date[:8]}/us-east-1/sagemaker/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], "us-east-1", "sagemaker", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return {**all_headers, "authorization": authorization}


@pytest.mark.parametrize(
    ("signed", "missing"),
    [
        (["host", "x-amz-date"], "X-Amz-Target"),
        (["host", "x-amz-date", "content-type"], "X-Amz-Target"),
        (["host", "x-amz-date", "x-amz-target"], "Content-Type"),
    ],
)
def test_aws_json_call_must_sign_target_and_content_type(conveyor_server: ServerProcess, signed: list[str], missing: str) -> None:
    body = b'{"ModelName": "nobody"}'
    headers = signed_over(conveyor_server, "POST", "/", JSON_HEADERS, signed, body)
    # The replay the probe made: the same signature with the operation changed.
    headers["x-amz-target"] = "SageMaker.DeleteModel"
    response = httpx.post(f"{conveyor_server.endpoint}/", content=body, headers=headers, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "__type": "IncompleteSignatureException",
        "message": f"'{missing}' must be a 'SignedHeader' in the AWS Authorization.",
    }


def test_aws_json_call_signing_all_four_is_accepted(conveyor_server: ServerProcess) -> None:
    body = b'{"ModelName": "nobody"}'
    headers = signed_over(conveyor_server, "POST", "/", JSON_HEADERS, ["host", "x-amz-date", "x-amz-target", "content-type"], body)
    response = httpx.post(f"{conveyor_server.endpoint}/", content=body, headers=headers, timeout=10)
    assert response.status_code == 400 and response.json()["__type"] == "ValidationException", response.text


def test_conveyor_get_routes_need_host_and_date_only(conveyor_server: ServerProcess) -> None:
    path = "/conveyor/v1/jobs/never-created/progress"
    headers = signed_over(conveyor_server, "GET", path, {}, ["host", "x-amz-date"])
    response = httpx.get(f"{conveyor_server.endpoint}{path}", headers=headers, timeout=10)
    assert response.status_code == 400 and response.json()["__type"] == "ValidationException", response.text

    headers = signed_over(conveyor_server, "GET", path, {}, ["host"])
    response = httpx.get(f"{conveyor_server.endpoint}{path}", headers=headers, timeout=10)
    assert response.json() == {
        "__type": "IncompleteSignatureException",
        "message": "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.",
    }
