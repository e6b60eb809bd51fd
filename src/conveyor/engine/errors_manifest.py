"""The bad-records manifest of a job that tolerates failed records.

`<S3OutputPath>/<TransformJobName>.errors.jsonl`, written whole at the end of the job, one JSON
line per failed record in object and record order: the input object's URI, the record's number
in that object (from 1), its byte offset, the model's error and the invocations that carried it
(docs/semantics.md, "Tolerating bad records").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson

from conveyor.pipeline.bisect import FailedRecord
from conveyor.storage.base import Storage

SUFFIX = ".errors.jsonl"


def errors_manifest_uri(output_path: str, job_name: str) -> str:
    return f"{output_path.rstrip('/')}/{job_name}{SUFFIX}"


def write_errors_manifest(
    uri: str, failed: Sequence[tuple[str, FailedRecord]], storage_for: Callable[[str], Storage], *, kms_key_id: str | None = None
) -> None:
    """Write the manifest atomically; raises StorageError when it cannot be written."""
    body = b"".join(
        orjson.dumps(
            {"object": source, "record": record.record, "offset": record.offset, "error": record.error, "attempts": record.attempts}
        )
        + b"\n"
        for source, record in failed
    )
    with storage_for(uri).open_write(uri, kms_key_id=kms_key_id) as writer:
        writer.write(body)
