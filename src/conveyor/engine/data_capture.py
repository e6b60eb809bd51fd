"""Data capture for batch transform (DataCaptureConfig; docs/data-processing.md, "Capture manifests"): manifests of what a job read
and what it wrote, for Model Monitor and for anyone auditing a job.

When a job ends Completed or Failed after processing its objects, two manifests are written,
in the JSON-array form S3DataType `ManifestFile` reads (`[{"prefix": …}, "suffix", …]`):

    <DestinationS3Uri>/input/yyyy/mm/dd/hh/<job name>.manifest    every input object
    <DestinationS3Uri>/output/yyyy/mm/dd/hh/<job name>.manifest   every `.out` object written

The hour prefix is the job's start time in UTC. The `prefix` element is the longest common
`/`-prefix of the listed URIs, so a manifest can be fed back to a job as its input.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Sequence

import orjson

from conveyor.sagemaker.transform_job import DataCaptureConfig
from conveyor.storage.base import Storage, StorageError

MANIFEST_SUFFIX = ".manifest"


def write_capture_manifests(
    capture: DataCaptureConfig,
    *,
    job_name: str,
    started_at: datetime,
    inputs: Sequence[str],
    outputs: Sequence[str],
    storage_for: Callable[[str], Storage],
    output_path: str | None = None,
) -> list[str]:
    """Write the input and the output manifest, each atomically; return their URIs.

    `output_path` (the job's S3OutputPath) is the prefix of an output manifest that lists no
    objects, when every object failed (without it, the manifest's own folder). Raises
    `StorageError` when a manifest cannot be written.
    """
    folder = capture_folder(started_at)
    destination = capture.destination_uri.rstrip("/")
    written = []
    for kind, uris, empty_prefix in (("input", inputs, None), ("output", outputs, output_path)):
        uri = f"{destination}/{kind}/{folder}/{job_name}{MANIFEST_SUFFIX}"
        body = manifest_bytes(uris, empty_prefix=empty_prefix or f"{destination}/{kind}/")
        with storage_for(uri).open_write(uri, kms_key_id=capture.kms_key_id) as writer:
            writer.write(body)
        written.append(uri)
    return written


def capture_folder(started_at: datetime) -> str:
    """`yyyy/mm/dd/hh` of the job's start, in UTC (a naive datetime is taken as UTC)."""
    moment = started_at if started_at.tzinfo is not None else started_at.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y/%m/%d/%H")


def manifest_bytes(uris: Sequence[str], *, empty_prefix: str) -> bytes:
    """`[{"prefix": P}, suffix, …]` with P the longest common `/`-prefix of `uris`, in order."""
    prefix = common_prefix(uris) if uris else empty_prefix
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return orjson.dumps([{"prefix": prefix}, *(uri[len(prefix) :] for uri in uris)])


def common_prefix(uris: Sequence[str]) -> str:
    """The longest prefix shared by every URI that ends with `/` (`s3://b/in/` for
    `s3://b/in/a.csv` and `s3://b/in/day/b.csv`); a lone URI gives its folder."""
    first, last = min(uris), max(uris)  # the common prefix of all is that of the extremes
    length = 0
    for a, b in zip(first, last):
        if a != b:
            break
        length += 1
    return first[: first.rfind("/", 0, length) + 1]


def capture_failure(exc: StorageError) -> str:
    """The job's FailureReason when its capture manifests cannot be written."""
    return f"ClientError: Could not write the data capture manifest {exc.uri}: {exc.code}: {exc.detail}"


__all__ = ["capture_failure", "capture_folder", "common_prefix", "manifest_bytes", "write_capture_manifests"]
