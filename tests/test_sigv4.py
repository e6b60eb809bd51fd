"""SigV4 verification against signatures computed by botocore, directly and over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import orjson
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.api.sigv4 import SIGNATURE_MISMATCH, canonical_query, canonical_uri, verify_sigv4
from conveyor.errors import (
    AuthError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from tests.live_server import serve

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEYS = {ACCESS_KEY: SECRET, "AKIASECONDKEY0000000": "second-secret"}
BODY = b'{"MaxResults": 10}'
NOW = datetime(2026, 11, 23, 4, 1, 46, tzinfo=timezone.utc)


def sign(
    *,
    url: str = "https://api.sagemaker.us-east-1.amazonaws.com/",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    token: str | None = None,
    service: str = "sagemaker",
    region: str = "us-east-1",
    when: datetime = NOW,
) -> AWSRequest:
    """A request signed by botocore as if its clock read `when`."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "SageMaker.ListModels",
            **(headers or {}),
        },
    )
    naive_utc = when.astimezone(timezone.utc).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *args, **kwargs: naive_utc):
        SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return request


def verify(request: AWSRequest, *, now: datetime = NOW, body: bytes | None = None, **options: object) -> str:
    """Check `request` as the server would receive it: wire path and query, all headers, body."""
    parts = urlsplit(request.url)
    headers = {name: value for name, value in request.headers.items()}
    headers.setdefault("host", parts.netloc)
    return verify_sigv4(
        method=request.method,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        body=request.body if body is None else body,
        credentials=KEYS.get,
        now=now,
        **options,  # type: ignore[arg-type]
    )


# --- direct: botocore signs, verify_sigv4 checks ---------------------------------------------


def test_valid_signature_returns_the_access_key() -> None:
    assert verify(sign()) == ACCESS_KEY
    assert verify(sign(access_key="AKIASECONDKEY0000000", secret="second-secret")) == "AKIASECONDKEY0000000"


def test_wrong_secret_is_invalid_signature_with_the_canonical_request() -> None:
    with pytest.raises(InvalidSignatureException) as caught:
        verify(sign(secret="not-the-secret"))
    error = caught.value
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert error.message.startswith(SIGNATURE_MISMATCH)
    # What a client author needs to find their bug, as AWS shows it.
    assert "The Canonical String for this request should have been\n'POST\n/\n\n" in error.message
    assert "The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20261123T040146Z\n" in error.message


def test_unknown_access_key_is_unrecognized_client() -> None:
    with pytest.raises(UnrecognizedClientException) as caught:
        verify(sign(access_key="AKIANOBODYKNOWSTHIS0"))
    assert caught.value.message == "The security token included in the request is invalid."
    assert caught.value.status == 400


def test_signature_older_than_15_minutes_has_expired() -> None:
    request = sign(when=NOW - timedelta(minutes=16))
    with pytest.raises(InvalidSignatureException) as caught:
        verify(request)
    assert caught.value.message == (
        "Signature expired: 20261123T034546Z is now earlier than 20261123T034646Z (20261123T040146Z - 15 min.)"
    )
    assert verify(sign(when=NOW - timedelta(minutes=14))) == ACCESS_KEY


def test_signature_more_than_15_minutes_ahead_is_not_yet_current() -> None:
    with pytest.raises(InvalidSignatureException) as caught:
        verify(sign(when=NOW + timedelta(minutes=16)))
    assert caught.value.message == (
        "Signature not yet current: 20261123T041746Z is still later than 20261123T041646Z (20261123T040146Z + 15 min.)"
    )
    assert verify(sign(when=NOW + timedelta(minutes=14))) == ACCESS_KEY


def test_session_token_is_verified_as_a_signed_header() -> None:
    request = sign(token="FwoGZXIvYXdzEJr//////////token")
    assert "x-amz-security-token" in request.headers["Authorization"]
    assert verify(request) == ACCESS_KEY
    request.headers.replace_header("X-Amz-Security-Token", "another-token")
    with pytest.raises(InvalidSignatureException):
        verify(request)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2", "local"])
def test_any_region_is_accepted(region: str) -> None:
    assert verify(sign(region=region)) == ACCESS_KEY


def test_logs_service_is_accepted_and_other_services_are_not() -> None:
    assert verify(sign(service="logs")) == ACCESS_KEY
    with pytest.raises(InvalidSignatureException) as caught:
        verify(sign(service="s3"))
    assert caught.value.message == "Credential should be scoped to correct service: 'sagemaker'. "
    with pytest.raises(InvalidSignatureException):
        verify(sign(service="logs"), services=("sagemaker",))


def test_tampered_body_fails() -> None:
    with pytest.raises(InvalidSignatureException):
        verify(sign(), body=b'{"MaxResults": 11}')


def test_changed_or_removed_signed_header_fails() -> None:
    request = sign()
    request.headers.replace_header("X-Amz-Target", "SageMaker.DeleteModel")
    with pytest.raises(InvalidSignatureException):
        verify(request)
    request = sign()
    del request.headers["X-Amz-Target"]
    with pytest.raises(InvalidSignatureException):
        verify(request)


def test_unsigned_headers_may_be_added_or_changed() -> None:
    request = sign()
    request.headers["User-Agent"] = "something-else"
    request.headers["X-Forwarded-For"] = "10.0.0.1"
    assert verify(request) == ACCESS_KEY


def test_header_values_are_trimmed_and_spaces_collapsed() -> None:
    request = sign(headers={"X-Custom": "  a   b  "})
    request.headers.replace_header("X-Custom", "a b")
    assert verify(request) == ACCESS_KEY


def test_missing_authorization_header() -> None:
    request = sign()
    del request.headers["Authorization"]
    with pytest.raises(MissingAuthenticationTokenException) as caught:
        verify(request)
    assert (caught.value.code, caught.value.status) == ("MissingAuthenticationTokenException", 403)
    assert caught.value.message == "Request is missing Authentication Token"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (
            "Bearer abc.def",
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' "
            "parameter. Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261123/us-east-1/sagemaker/aws4_request, "
            "SignedHeaders=host;x-amz-date",
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261123/sagemaker/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{ACCESS_KEY}/20261123/sagemaker/aws4_request'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential {ACCESS_KEY}/20261123/us-east-1/sagemaker/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            "not a valid key=value pair (missing equal-sign) in Authorization header",
        ),
        ("AWS4-ECDSA-P256-SHA256 Credential=x", "Unsupported AWS 'algorithm': 'AWS4-ECDSA-P256-SHA256'."),
    ],
)
def test_malformed_authorization_is_incomplete_signature(authorization: str, message: str) -> None:
    request = sign()
    request.headers.replace_header("Authorization", authorization)
    with pytest.raises(IncompleteSignatureException) as caught:
        verify(request)
    assert (caught.value.code, caught.value.status) == ("IncompleteSignatureException", 400)
    assert message in caught.value.message


def test_date_must_be_present_signed_and_well_formed() -> None:
    request = sign()
    del request.headers["X-Amz-Date"]
    with pytest.raises(IncompleteSignatureException, match="either a 'X-Amz-Date' or a 'Date' header"):
        verify(request)
    request = sign()
    request.headers.replace_header("X-Amz-Date", "2026-11-23T04:01:46Z")
    with pytest.raises(IncompleteSignatureException, match="ISO-8601 'basic format'"):
        verify(request)


def test_credential_scope_date_must_match_request_date() -> None:
    request = sign()
    request.headers.replace_header(
        "Authorization", request.headers["Authorization"].replace("/20261123/", "/20261122/")
    )
    with pytest.raises(InvalidSignatureException, match="Date in Credential scope does not match"):
        verify(request)


def test_content_sha256_header_is_honoured_only_when_it_matches_the_body() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    assert verify(sign(headers={"X-Amz-Content-SHA256": digest})) == ACCESS_KEY
    # A client that signs a hash but sends another body must not pass.
    request = sign(headers={"X-Amz-Content-SHA256": digest})
    with pytest.raises(InvalidSignatureException, match="x-amz-content-sha256"):
        verify(request, body=b"{}")
    with pytest.raises(InvalidSignatureException, match="x-amz-content-sha256"):
        verify(sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))


def test_path_and_query_are_canonicalised_as_botocore_signs_them() -> None:
    request = sign(url="https://example.com/a%20b/./c/../d/?b=2&a=x%20y&a=1&empty=")
    assert verify(request) == ACCESS_KEY
    assert canonical_uri("/a%20b/./c/../d/") == "/a%2520b/d/"
    assert canonical_uri("") == "/"
    assert canonical_query("b=2&a=x%20y&a=1&empty=") == "a=1&a=x%20y&b=2&empty="


def test_non_ascii_signature_is_a_mismatch_not_a_crash() -> None:
    request = sign()
    authorization = request.headers["Authorization"]
    request.headers.replace_header("Authorization", authorization[:-4] + "ÿÿÿÿ")
    with pytest.raises(InvalidSignatureException):
        verify(request)


# --- over HTTP: a real boto3 client against a tiny app under uvicorn ------------------------


async def echo(request: Request) -> Response:
    """Verify the caller and echo its access key id in a field botocore keeps (NextToken)."""
    body = await request.body()
    try:
        key = verify_sigv4(
            method=request.method,
            path=request.scope["raw_path"].decode("latin-1"),
            query=request.scope["query_string"].decode("latin-1"),
            headers=request.headers,
            body=body,
            credentials=KEYS.get,
        )
    except AuthError as error:
        payload, status = {"__type": error.code, "message": error.message}, error.status
    else:
        field = "nextToken" if request.headers["x-amz-target"].startswith("Logs_") else "NextToken"
        payload, status = {field: key}, 200
    return Response(orjson.dumps(payload), status, media_type="application/x-amz-json-1.1")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serve(Starlette(routes=[Route("/", echo, methods=["POST"])])) as url:
        yield url


def client(endpoint: str, service: str = "sagemaker", **options: object):  # type: ignore[no-untyped-def]
    settings: dict[str, object] = {
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET,
        "region_name": "us-east-1",
        "config": Config(retries={"max_attempts": 1, "mode": "standard"}),
    }
    settings.update(options)
    return boto3.client(service, endpoint_url=endpoint, **settings)  # type: ignore[call-overload]


def error_of(call) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as caught:
        call()
    return {**caught.value.response["Error"], "Status": caught.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def test_boto3_call_is_accepted(endpoint: str) -> None:
    assert client(endpoint).list_models()["NextToken"] == ACCESS_KEY


def test_boto3_with_wrong_secret(endpoint: str) -> None:
    error = error_of(client(endpoint, aws_secret_access_key="wrong").list_models)
    assert error["Code"] == "InvalidSignatureException"
    assert str(error["Message"]).startswith(SIGNATURE_MISMATCH)
    assert error["Status"] == 400


def test_boto3_with_unknown_key(endpoint: str) -> None:
    error = error_of(client(endpoint, aws_access_key_id="AKIAUNKNOWNKEY000000").list_models)
    assert error == {
        "Code": "UnrecognizedClientException",
        "Message": "The security token included in the request is invalid.",
        "Status": 400,
    }


def test_boto3_with_a_clock_16_minutes_slow(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=16)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: slow)
    error = error_of(client(endpoint).list_models)
    assert error["Code"] == "InvalidSignatureException"
    assert str(error["Message"]).startswith(f"Signature expired: {slow:%Y%m%dT%H%M%SZ} is now earlier than ")


def test_boto3_with_session_token(endpoint: str) -> None:
    assert client(endpoint, aws_session_token="session-token").list_models()["NextToken"] == ACCESS_KEY


@pytest.mark.parametrize("region", ["eu-central-1", "ap-northeast-1"])
def test_boto3_in_other_regions(endpoint: str, region: str) -> None:
    assert client(endpoint, region_name=region).list_models()["NextToken"] == ACCESS_KEY


def test_boto3_logs_client(endpoint: str) -> None:
    assert client(endpoint, "logs").describe_log_groups()["nextToken"] == ACCESS_KEY


def test_boto3_body_changed_after_signing(endpoint: str) -> None:
    sagemaker = client(endpoint)

    def tamper(request, **kwargs):  # type: ignore[no-untyped-def]
        request.body = b'{"MaxResults": 99}'
        request.headers["Content-Length"] = str(len(request.body))

    sagemaker.meta.events.register("before-send.sagemaker.ListModels", tamper)
    error = error_of(lambda: sagemaker.list_models(MaxResults=10))
    assert error["Code"] == "InvalidSignatureException"


def test_boto3_unsigned_request(endpoint: str) -> None:
    error = error_of(client(endpoint, config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1})).list_models)
    assert error == {
        "Code": "MissingAuthenticationTokenException",
        "Message": "Request is missing Authentication Token",
        "Status": 403,
    }


def test_required_headers_the_request_carries_must_be_signed() -> None:
    request = sign()
    authorization = request.headers["Authorization"]
    signed = authorization.split("SignedHeaders=")[1].split(",")[0]
    assert "x-amz-target" in signed
    required = ("host", "x-amz-date", "x-amz-target", "content-type")
    assert verify(request, required_headers=required) == ACCESS_KEY
    # The same check sees only what the client listed; a list without the target is refused
    # before the signature is computed, so a replay with another target cannot pass.
    request.headers.replace_header("Authorization", authorization.replace(signed, "host;x-amz-date"))
    with pytest.raises(IncompleteSignatureException, match="'X-Amz-Target' must be a 'SignedHeader'"):
        verify(request, required_headers=required)
    # A header that is not sent need not be signed.
    request = sign(headers={})
    assert verify(request, required_headers=("host", "x-amz-date", "x-amz-not-sent")) == ACCESS_KEY
