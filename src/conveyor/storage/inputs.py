"""A job's input objects and the names of their outputs (docs/semantics.md, decision 1).

S3Prefix lists every object under the key prefix; ManifestFile reads the JSON manifest
(`[{"prefix": "s3://b/p/"}, "suffix-1", …]`). Each input gets the relative name its `.out`
object is written under, and an output location that a rerun would read back as input, or
that cannot hold outputs, is refused before the model runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import orjson

from conveyor.errors import FieldError, ValidationException
from conveyor.storage.base import Storage, StorageError
from conveyor.storage.uri import parse_uri


class InputError(Exception):
    """The input data source cannot be used; the message is SageMaker's where it has one."""


@dataclass(frozen=True)
class InputObject:
    uri: str
    relative: str  # the output is `<S3OutputPath>/<relative>.out`
    size: int


def iter_inputs(data_type: str, uri: str, storage_for: Callable[[str], Storage], *, region: str = "us-east-1") -> Iterator[InputObject]:
    """Every input object of a job, in key order, as the listing finds them; raises InputError
    where the listing fails, and at its end when it found none."""
    found = False
    try:
        for found_object in _list_manifest(uri, storage_for) if data_type == "ManifestFile" else _list_prefix(uri, storage_for(uri)):
            found = True
            yield found_object
    except StorageError as exc:
        where = f"{uri}: the object {exc.uri} cannot be read" if exc.uri != uri else uri
        raise InputError(f"Could not list the input data source {where}: {_problem(exc, 's3:ListBucket', region)}") from None
    if not found:
        raise InputError(no_objects_message(uri, region))


def no_objects_message(uri: str, region: str) -> str:
    scheme, bucket, _ = parse_uri(uri)
    if scheme != "s3":
        return f'No objects found under "{uri}" given in input data source. Please ensure that the path exists and holds at least one file.'
    return (
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the bucket '
        f"exists in the selected region ({region}), that objects exist under that S3 prefix, and that the "
        f'credentials in use have "s3:ListBucket" permissions on bucket "{bucket}".'
    )


OUTPUT_FIELD = "transformOutput.s3OutputPath"


def check_output_location(data_type: str, input_uri: str, output_path: str) -> None:
    """Refuse an S3OutputPath that is the input, lies inside the input prefix (a rerun would
    transform the outputs: `a.csv.out.out`), or names an existing local file."""
    rule = None
    in_scheme, in_bucket, in_key = parse_uri(input_uri)
    out_scheme, out_bucket, out_key = parse_uri(output_path)
    if data_type == "S3Prefix" and (in_scheme, in_bucket) == (out_scheme, out_bucket):
        if out_key.rstrip("/") == in_key.rstrip("/"):
            rule = "Member must not be the input location (S3Uri), whose objects a rerun would read back as input"
        elif _inside(in_scheme, in_key, input_uri, out_key):
            rule = f"Member must not lie inside the input location '{input_uri}' (S3Uri), whose objects a rerun would read back as input"
    if rule is None and out_scheme == "file":
        blocking = _existing_file_at_or_above(out_key)
        if blocking is not None:
            what = "names an existing file" if blocking == out_key else f"lies under {blocking}, an existing file"
            rule = f"Member must name a folder for the outputs (<S3OutputPath>/<input name>.out), but it {what}"
    if rule is not None:
        raise ValidationException([FieldError(OUTPUT_FIELD, output_path, rule)])


def _inside(scheme: str, input_key: str, input_uri: str, output_key: str) -> bool:
    """Whether listing the input would take objects written under the output location: S3's
    key-prefix rule, or a local directory and what is under it (see `LocalStorage.list`)."""
    if scheme == "file" and (input_uri.endswith("/") or os.path.isdir(input_key)):
        return output_key.startswith(input_key.rstrip("/") + "/")
    return output_key.startswith(input_key)


def _existing_file_at_or_above(path: str) -> str | None:
    """The path itself, or the nearest existing ancestor, when that is a file, not a folder."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None if os.path.isdir(path) else path


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


def _list_prefix(uri: str, storage: Storage) -> Iterator[InputObject]:
    prefix_key = parse_uri(uri)[2]
    if uri.endswith("/") and not prefix_key.endswith("/"):
        prefix_key += "/"
    return (InputObject(info.uri, relative_name(prefix_key, info.key), info.size) for info in storage.list(uri))


def _list_manifest(uri: str, storage_for: Callable[[str], Storage]) -> Iterator[InputObject]:
    """The manifest is read and checked at once; its objects are looked up one by one."""
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
    for position, suffix in enumerate(manifest[1:], start=1):
        if not isinstance(suffix, str) or not suffix:
            raise InputError(f"The manifest file {uri} has an invalid entry at index {position}: {suffix!r}; expected a non-empty string suffix.")
    return _manifest_objects(uri, manifest[0]["prefix"], manifest[1:], storage_for)


def _manifest_objects(uri: str, prefix: str, suffixes: list[str], storage_for: Callable[[str], Storage]) -> Iterator[InputObject]:
    for suffix in suffixes:
        object_uri = prefix + suffix
        try:
            info = storage_for(object_uri).stat(object_uri)
        except StorageError as exc:
            raise InputError(
                f"The manifest file {uri} lists {object_uri}, which cannot be read: {_problem(exc, 's3:GetObject')}"
            ) from None
        yield InputObject(info.uri, suffix.lstrip("/"), info.size)


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
