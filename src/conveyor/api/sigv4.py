"""AWS Signature Version 4: check that a request was signed with a key we know.

The server recomputes the signature the client computed (botocore, the AWS CLI, any SDK) over
exactly the headers the client listed in `SignedHeaders`, so extra headers that SDKs sign
(`x-amz-security-token`, `amz-sdk-*`, `x-amz-content-sha256`) verify without special cases.
Only the standard library's `hmac`/`hashlib` do cryptography here.

Error codes and wording are those AWS JSON services (SageMaker among them) answer on the wire;
they are parsed by botocore into `ClientError.response["Error"]`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from conveyor.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_CLOCK_SKEW = timedelta(minutes=15)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_SERVICES = ("sagemaker", "logs")


SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 …` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def verify_sigv4(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Callable[[str], str | None],
    now: datetime | None = None,
    services: tuple[str, ...] = DEFAULT_SERVICES,
    required_headers: Iterable[str] = ("host", "x-amz-date"),
) -> str:
    """Return the access key id that signed the request, or raise an `AuthError`.

    Each of `required_headers` that the request carries must be among the signed headers: a
    signature that leaves out, say, `x-amz-target` would stay valid with the operation changed.

    `path` and `query` are as they were on the wire (still percent-encoded: ASGI's `raw_path`
    and `query_string`), because that is what the client signed. `headers` may be any mapping;
    when its `items()` repeats a name (Starlette's `Headers` does) the values are joined with
    commas, as SigV4 prescribes. Any region is accepted; the service must be one of `services`.
    """
    header_values = _collect_headers(headers)
    authorization = _first(header_values, "authorization")
    if authorization is None:
        raise MissingAuthenticationTokenException()
    auth = parse_authorization(authorization)
    _check_signed(auth, header_values, required_headers)

    request_time, amz_date = _request_time(header_values, auth)
    _check_clock(request_time, now or datetime.now(timezone.utc))
    if auth.date != amz_date[:8]:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    if auth.service not in services:
        raise InvalidSignatureException(f"Credential should be scoped to correct service: '{services[0]}'. ")

    secret = credentials(auth.access_key_id)
    if secret is None:
        raise UnrecognizedClientException()

    payload_hash = _payload_hash(header_values, body)
    canonical = canonical_request(
        method=method,
        path=path,
        query=query,
        headers=header_values,
        signed_headers=auth.signed_headers,
        payload_hash=payload_hash,
    )
    to_sign = string_to_sign(amz_date, auth.scope, canonical)
    expected = signature(secret, auth.date, auth.region, auth.service, to_sign)
    if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("utf-8", "replace")):
        raise InvalidSignatureException(
            f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
            f"The String-to-Sign should have been\n'{to_sign}'\n"
        )
    return auth.access_key_id


def parse_authorization(value: str) -> Authorization:
    """Split `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` into its parts."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        if algorithm.startswith("AWS4-"):
            raise IncompleteSignatureException(f"Unsupported AWS 'algorithm': '{algorithm}'.")
        raise IncompleteSignatureException(_missing_parameters(("Credential", "Signature", "SignedHeaders")))
    parameters: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        name, equals, parameter = part.partition("=")
        if not equals:
            raise IncompleteSignatureException(
                f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
            )
        parameters[name.strip()] = parameter.strip()
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not parameters.get(name)]
    if missing:
        raise IncompleteSignatureException(_missing_parameters(missing))

    credential = parameters["Credential"]
    elements = credential.split("/")
    if len(elements) != 5:
        raise IncompleteSignatureException(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{credential}'"
        )
    access_key_id, date, region, service, terminator = elements
    if terminator != TERMINATOR:
        raise InvalidSignatureException(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
        )
    if not access_key_id:
        raise UnrecognizedClientException()
    signed_headers = tuple(parameters["SignedHeaders"].split(";"))
    if "host" not in signed_headers:
        raise IncompleteSignatureException("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return Authorization(access_key_id, date, region, service, signed_headers, parameters["Signature"])


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, list[str]],
    signed_headers: Iterable[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request; `headers` maps lower-case names to all their values."""
    names = list(signed_headers)
    canonical_headers = "".join(
        f"{name}:{','.join(_trim_all(v) for v in headers.get(name, ()))}\n" for name in names
    )
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(names),
            payload_hash,
        )
    )


def canonical_uri(path: str) -> str:
    """Remove dot segments and empty segments, then URI-encode the (already encoded) path again.

    Services other than S3 encode each segment twice; botocore signs the wire path this way.
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if segments and path.endswith("/"):
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(query: str) -> str:
    """Decode then re-encode each name and value (RFC 3986 unreserved kept), sorted by name, value."""
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signature(secret: str, date: str, region: str, service: str, to_sign: str) -> str:
    """The HMAC chain: secret → date → region → service → `aws4_request` → hex signature."""
    key = f"AWS4{secret}".encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_signed(auth: Authorization, headers: Mapping[str, list[str]], required: Iterable[str]) -> None:
    """Refuse a signature that leaves out a required header the request carries, in AWS's wording."""
    for name in required:
        if name in headers and name not in auth.signed_headers:
            shown = "-".join(part.capitalize() for part in name.split("-"))
            raise IncompleteSignatureException(f"'{shown}' must be a 'SignedHeader' in the AWS Authorization.")


def _collect_headers(headers: Mapping[str, str]) -> dict[str, list[str]]:
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name.lower(), []).append(value)
    return collected


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _trim_all(value: str) -> str:
    return " ".join(value.split())


def _missing_parameters(names: Iterable[str]) -> str:
    # AWS appends `Authorization=<header>`; we leave it out so that a non-AWS credential
    # (a bearer token, Basic auth) is never echoed into a response body or a log.
    return " ".join(f"Authorization header requires '{name}' parameter." for name in names)


def _request_time(headers: Mapping[str, list[str]], auth: Authorization) -> tuple[datetime, str]:
    """The signing time from X-Amz-Date (or Date), which must itself be signed."""
    amz_date = _first(headers, "x-amz-date")
    if amz_date is not None:
        if "x-amz-date" not in auth.signed_headers:
            raise IncompleteSignatureException("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
        try:
            when = datetime.strptime(amz_date.strip(), AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ) from None
        return when, amz_date.strip()
    http_date = _first(headers, "date")
    if http_date is None:
        raise IncompleteSignatureException(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if "date" not in auth.signed_headers:
        raise IncompleteSignatureException("'Date' must be a 'SignedHeader' in the AWS Authorization.")
    try:
        when = parsedate_to_datetime(http_date).astimezone(timezone.utc)
    except (TypeError, ValueError):
        raise IncompleteSignatureException(f"Date header is not a valid HTTP date: '{http_date}'.") from None
    return when, when.strftime(AMZ_DATE_FORMAT)


def _check_clock(request_time: datetime, now: datetime) -> None:
    """Refuse signatures more than 15 minutes from our clock, in AWS's words."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc).replace(microsecond=0)
    if request_time < now - MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {request_time:{AMZ_DATE_FORMAT}} is now earlier than "
            f"{now - MAX_CLOCK_SKEW:{AMZ_DATE_FORMAT}} ({now:{AMZ_DATE_FORMAT}} - 15 min.)"
        )
    if request_time > now + MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature not yet current: {request_time:{AMZ_DATE_FORMAT}} is still later than "
            f"{now + MAX_CLOCK_SKEW:{AMZ_DATE_FORMAT}} ({now:{AMZ_DATE_FORMAT}} + 15 min.)"
        )


def _payload_hash(headers: Mapping[str, list[str]], body: bytes) -> str:
    """SHA-256 of the body; a client-sent `x-amz-content-sha256` is used only if it matches it.

    Taking the header on trust would sign a hash, not the body: a changed body would pass.
    """
    actual = hashlib.sha256(body).hexdigest()
    claimed = _first(headers, "x-amz-content-sha256")
    if claimed is None:
        return actual
    claimed = claimed.strip()
    if not hmac.compare_digest(claimed.lower().encode("utf-8", "replace"), actual.encode("ascii")):
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return claimed
