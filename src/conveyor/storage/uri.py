"""Splitting a storage URI into scheme, bucket and key.

`s3://bucket/key` gives the bucket and the key as S3 names them (no leading `/`). A `file://`
URI or a plain path gives scheme `file`, no bucket, and the absolute path as the key. Other
schemes are split the same way as `s3://` so that the registry can refuse them by name.
(`https://` forms of S3 URLs are mapped to `s3://` by `conveyor.sagemaker.locations`, docs/semantics.md decision 20, before this.)
"""

from __future__ import annotations

import os


def parse_uri(uri: str) -> tuple[str, str, str]:
    """`(scheme, bucket, key)`: `("s3", "b", "in/x.csv")`, `("file", "", "/abs/path")`."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return "file", "", os.path.abspath(os.path.expanduser(uri))
    if scheme == "file" and _normal(rest):  # what a listing gives: a path kept as it is, at no cost per object
        return "file", "", rest
    scheme = scheme.lower()
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        return "file", "", os.path.abspath(rest if rest.startswith("/") else "/" + rest)
    bucket, _, key = rest.partition("/")
    return scheme, bucket, key


def _normal(path: str) -> bool:
    """Whether `os.path.abspath` would give `path` back unchanged."""
    return path.startswith("/") and not path.startswith("//") and "/." not in path and "//" not in path and (path == "/" or not path.endswith("/"))
