"""A job's input objects and the names of their outputs (docs/semantics.md, decision 1).

S3Prefix lists every object under the key prefix; ManifestFile reads the JSON manifest
(`[{"prefix": "s3://b/p/"}, "suffix-1", …]`). Each input gets the relative name its `.out`
object is written under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import orjson

from conveyor.storage.base import Storage, StorageError
from conveyor.storage.uri import parse_uri


class InputError(Exception):
    """The input data source cannot be used; the message is SageMaker's where it has one."""


@dataclass(frozen=True)
class InputObject:
    uri: str
    relative: str  # the output is `<S3OutputPath>/<relative>.out`
    size: int


def list_inputs(data_type: str, uri: str, storage_for: Callable[[str], Storage], *, region: str = "us-east-1") -> list[InputObject]:
    """Every input object of a job, in key order; raises InputError when there are none."""
    if data_type == "ManifestFile":
        objects = _list_manifest(uri, storage_for)
    else:
        try:
            objects = _list_prefix(uri, storage_for(uri))
        except StorageError as exc:
            raise InputError(f"Could not list the input data source {uri}: {_problem(exc, 's3:ListBucket', region)}") from None
    if not objects:
        raise InputError(no_objects_message(uri, region))
    return objects


def no_objects_message(uri: str, region: str) -> str:
    scheme, bucket, _ = parse_uri(uri)
    if scheme != "s3":
        return f'No objects found under "{uri}" given in input data source. Please ensure that the path exists and holds at least one file.'
    return (
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the bucket '
        f"exists in the selected region ({region}), that objects exist under that S3 prefix, and that the "
        f'credentials in use have "s3:ListBucket" permissions on bucket "{bucket}".'
    )


def output_uri(output_path: str, relative: str) -> str:
    """`<S3OutputPath>/<relative>.out`, one trailing `/` of the output path stripped."""
    base = output_path[:-1] if output_path.endswith("/") else output_path
    return f"{base}/{relative}.out"


def relative_name(prefix_key: str, object_key: str) -> str:
    """The part of an input key its output is named after (decision 1)."""
    if object_key == prefix_key:
        return object_key.rsplit("/", 1)[-1]
    if prefix_key.endswith("/") or object_key[len(prefix_key) :].startswith("/"):
        return object_key[len(prefix_key) :].lstrip("/")
    cut = prefix_key.rfind("/") + 1
    return object_key[cut:]


def _list_prefix(uri: str, storage: Storage) -> list[InputObject]:
    prefix_key = parse_uri(uri)[2]
    if uri.endswith("/") and not prefix_key.endswith("/"):
        prefix_key += "/"
    return [InputObject(info.uri, relative_name(prefix_key, info.key), info.size) for info in storage.list(uri)]


def _list_manifest(uri: str, storage_for: Callable[[str], Storage]) -> list[InputObject]:
    try:
        manifest = orjson.loads(storage_for(uri).read_bytes(uri))
    except StorageError as exc:
        raise InputError(f"Could not read the manifest file {uri}: {_problem(exc, 's3:GetObject')}") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"The manifest file {uri} is not valid JSON: {exc}") from None
    if (
        not isinstance(manifest, list)
        or not manifest
        or not isinstance(manifest[0], dict)
        or not isinstance(manifest[0].get("prefix"), str)
        or not manifest[0]["prefix"]
    ):
        raise InputError(
            f'The manifest file {uri} must be a JSON array whose first element is {{"prefix": "s3://bucket/prefix/"}} '
            "followed by the object suffixes."
        )
    prefix = manifest[0]["prefix"]
    objects = []
    for position, suffix in enumerate(manifest[1:], start=1):
        if not isinstance(suffix, str) or not suffix:
            raise InputError(f"The manifest file {uri} has an invalid entry at index {position}: {suffix!r}; expected a non-empty string suffix.")
        object_uri = prefix + suffix
        try:
            info = storage_for(object_uri).stat(object_uri)
        except StorageError as exc:
            raise InputError(
                f"The manifest file {uri} lists {object_uri}, which cannot be read: {_problem(exc, 's3:GetObject')}"
            ) from None
        objects.append(InputObject(info.uri, suffix.lstrip("/"), info.size))
    return objects


def _problem(exc: StorageError, permission: str, region: str | None = None) -> str:
    """`<code>: <detail>`, with what to check for the errors a user can fix: a missing bucket
    (named), a missing permission (named, with the bucket)."""
    scheme, bucket, _ = parse_uri(exc.uri)
    if scheme == "s3" and exc.code == "NoSuchBucket":
        where = f" in the selected region ({region})" if region else ""
        return f'NoSuchBucket: the bucket "{bucket}" does not exist{where}.'
    if scheme == "s3" and exc.code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f'{exc.code}: {exc.detail}. Please ensure that the credentials in use have "{permission}" permissions on bucket "{bucket}".'
    return f"{exc.code}: {exc.detail}"
