"""parse_uri and the scheme registry (storage_for)."""

from __future__ import annotations

import os

import pytest

from conveyor.storage import StorageError, storage_for
from conveyor.storage.uri import parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/in/x.csv", ("s3", "bucket", "in/x.csv")),
        ("s3://bucket/in/", ("s3", "bucket", "in/")),
        ("s3://bucket", ("s3", "bucket", "")),
        ("S3://bucket/k", ("s3", "bucket", "k")),
        ("file:///data/in.csv", ("file", "", "/data/in.csv")),
        ("file://localhost/data/in.csv", ("file", "", "/data/in.csv")),
        ("/data/in/", ("file", "", "/data/in")),
    ],
)
def test_parse_uri(uri: str, expected: tuple[str, str, str]) -> None:
    assert parse_uri(uri) == expected


def test_relative_path_becomes_absolute() -> None:
    assert parse_uri("in/x.csv") == ("file", "", os.path.join(os.getcwd(), "in", "x.csv"))


def test_storage_for_picks_by_scheme() -> None:
    from conveyor.storage.local import LocalStorage
    from conveyor.storage.s3 import S3Storage

    assert isinstance(storage_for("/tmp/x"), LocalStorage)
    assert isinstance(storage_for("file:///tmp/x"), LocalStorage)
    assert isinstance(storage_for("s3://bucket/key"), S3Storage)
    assert storage_for("s3://bucket/key") is storage_for("s3://other/key")
    with pytest.raises(StorageError) as caught:
        storage_for("gs://bucket/key")
    assert caught.value.code == "InvalidURI"
