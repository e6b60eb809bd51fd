"""Where data lives: the location forms a request may use, mapped to one canonical URI.

SageMaker's S3 fields (`S3Uri`, `S3OutputPath`, `DestinationS3Uri`, `ModelDataUrl`) take
`s3://bucket/key` and, by botocore's pattern `(https|s3)://([^/]+)/?(.*)`, `https://` URLs.
Conveyor maps the https forms of S3 object URLs to `s3://bucket/key` (docs/semantics.md, decision 20)
and adds local locations: `file:///absolute/path` and plain paths (decision 16). Everything
downstream sees only `s3://bucket/key` or `file:///absolute/path`.

Choices made here:

- https URLs are S3's own: virtual-hosted (`https://bucket.s3.region.amazonaws.com/key`, also
  without a region, with `s3-region`, dualstack, and `.amazonaws.com.cn`) and path style
  (`https://s3.region.amazonaws.com/bucket/key`). Any other host is refused, since the URL names
  no bucket Conveyor could reach. The key is percent-decoded, `+` as a space, as S3 writes keys
  in object URLs; a query string is refused (a presigned URL's signature would be dropped).
- A plain path is resolved against the working directory (`~` expanded), as the `conveyor`
  command would resolve it. Something that looks like a URI of another scheme (`s3:/b`, `ftp://h`)
  is refused rather than taken for a relative path.
- A trailing `/` is kept: it decides how output objects are named (decision 1).
- `file://` URIs are not percent-decoded: `file:///data/a b.csv` names the file `a b.csv`.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit

from conveyor.errors import FieldError
from conveyor.sagemaker.shapes import full_match, length_errors, pattern_rule

if TYPE_CHECKING:
    from conveyor.sagemaker.shapes import Shape

S3_URL_FORMS = "https://<bucket>.s3.<region>.amazonaws.com/<key> or https://s3.<region>.amazonaws.com/<bucket>/<key>"
LOCAL_FORMS = "a local path (file:///absolute/path or a path)"

_S3_ENDPOINT = r"s3(?:-accelerate)?(?:[.-](?:dualstack\.)?[a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?"
_PATH_STYLE_HOST = re.compile(rf"{_S3_ENDPOINT}")
_VIRTUAL_HOST = re.compile(rf"(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.{_S3_ENDPOINT}")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


class LocationError(ValueError):
    """A location in none of the accepted forms; the message is the rule it breaks."""


def normalize_location(value: str) -> str:
    """The canonical URI of a location: `s3://bucket/key` or `file:///absolute/path`.

    Raises `LocationError` whose message reads as a constraint ("Member must …").
    """
    if value.startswith("s3://"):
        bucket, _, key = value[len("s3://") :].partition("/")
        if not bucket:
            raise LocationError("Member must name a bucket: s3://<bucket>/<key>")
        return f"s3://{bucket}/{key}"
    if value.startswith("https://"):
        return _s3_url(value)
    if value.startswith("file://"):
        return _file_uri(value)
    if not value or _SCHEME.match(value):
        raise LocationError(f"Member must be an S3 URI (s3://<bucket>/<key>), an S3 URL ({S3_URL_FORMS}) or {LOCAL_FORMS}")
    return "file://" + _absolute(value)


def is_local(uri: str) -> bool:
    """Whether a canonical URI names a local path."""
    return uri.startswith("file://")


def location_errors(value: Any, shape: Shape, path: str) -> list[FieldError]:
    """The shape check for S3 location members: the model's length limit, then botocore's
    pattern or a local path, then a usable form (a `shapes.Check`)."""
    errors = length_errors(value, shape, path)
    pattern = shape.metadata.get("pattern")
    looks_local = value.startswith("file://") or (bool(value) and not _SCHEME.match(value))
    if pattern is not None and not looks_local and not full_match(pattern, value):
        errors.append(FieldError(path, value, f"{pattern_rule(pattern)} or be {LOCAL_FORMS}"))
        return errors
    try:
        normalize_location(value)
    except LocationError as exc:
        errors.append(FieldError(path, value, str(exc)))
    return errors


def _s3_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.query:
        raise LocationError(f"Member must be an S3 URL without a query string: {S3_URL_FORMS}")
    host = (parts.hostname or "").lower()
    path = parts.path
    virtual = _VIRTUAL_HOST.fullmatch(host)
    if _PATH_STYLE_HOST.fullmatch(host):
        bucket, _, key = path.lstrip("/").partition("/")
    elif virtual:
        bucket, key = virtual.group("bucket"), path.lstrip("/")
    else:
        raise LocationError(f"Member must be an S3 URL: {S3_URL_FORMS}")
    if not bucket:
        raise LocationError(f"Member must name a bucket: {S3_URL_FORMS}")
    return f"s3://{bucket}/{unquote_plus(key)}"


def _file_uri(value: str) -> str:
    rest = value[len("file://") :]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise LocationError("Member must be a file URI with an absolute path: file:///absolute/path")
    return "file://" + _absolute(rest)


def _absolute(path: str) -> str:
    """An absolute, normalised path that keeps a trailing `/`."""
    resolved = os.path.abspath(os.path.expanduser(path))
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return resolved
