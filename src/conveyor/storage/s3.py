"""Amazon S3 (and S3-compatible stores) through botocore, the AWS SDK's core.

Credentials, region and endpoint come from botocore's standard chain (environment, shared
config and credentials files, profiles, container and instance roles, `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL`); an `endpoint_url` in `S3Config` wins over all of them. Throttling and 5xx
answers are retried by botocore (`retry_mode`, `max_attempts`); a body that breaks mid-way is
resumed from its offset by the reader. See docs/s3.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, cast
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from conveyor.storage.base import TEMP_MARKER, ObjectInfo, ObjectWriter, Storage, StorageError
from conveyor.storage.s3_errors import error_code, storage_error
from conveyor.storage.s3_read import S3Reader, fetch_range, ranged_chunks, stream_chunks
from conveyor.storage.s3_write import PartCopies, S3Writer
from conveyor.storage.uri import parse_uri

MiB = 1 << 20
READ_STRATEGIES = ("auto", "stream", "ranges")
AWS_S3_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")
RETRY_MODES = ("legacy", "standard", "adaptive")
CHECKSUM_SETTINGS = (None, "when_supported", "when_required")


@dataclass(frozen=True)
class S3Config:
    """How to reach S3 and how to move bytes; None means "as botocore resolves it"."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    read_strategy: str = "auto"
    """`stream`: one streaming GET per object; `ranges`: `read_concurrency` ranged GETs of `part_size`;
    `auto`: `ranges` on AWS S3, whose single connection is slow, and `stream` on any other store."""
    part_size: int = 16 * MiB
    """Multipart upload part size, and the ranged-GET size of the `ranges` strategy."""
    read_chunk_size: int = 8 * MiB
    read_ahead_chunks: int = 3
    read_concurrency: int = 4
    upload_concurrency: int = 2
    """Parts uploading at once per writer (memory: this + 1 parts)."""
    retry_mode: str = "standard"
    max_attempts: int = 5
    resume_attempts: int = 5
    """Times a broken GET body is resumed from its offset before the read fails."""
    checksums: str | None = None
    """botocore's request_checksum_calculation / response_checksum_validation; `when_required` for
    S3-compatible stores that reject the SDK's default CRC32 checksums."""
    addressing_style: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 16

    def __post_init__(self) -> None:
        if self.read_strategy not in READ_STRATEGIES:
            raise ValueError(f"read_strategy must be one of {READ_STRATEGIES}, not {self.read_strategy!r}")
        if self.retry_mode not in RETRY_MODES:
            raise ValueError(f"retry_mode must be one of {RETRY_MODES}, not {self.retry_mode!r}")
        if self.checksums not in CHECKSUM_SETTINGS:
            raise ValueError(f"checksums must be one of {CHECKSUM_SETTINGS}, not {self.checksums!r}")
        if not 5 * MiB <= self.part_size <= 5 * 1024 * MiB:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB (S3's limits), not {self.part_size}")
        for name in ("read_chunk_size", "read_ahead_chunks", "read_concurrency", "upload_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


def create_client(config: S3Config) -> Any:
    """A botocore S3 client for the config; thread-safe, shared by all readers and writers."""
    session = botocore.session.Session(profile=config.profile)
    options: dict[str, Any] = {
        "retries": {"mode": config.retry_mode, "max_attempts": config.max_attempts},
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "max_pool_connections": max(config.max_pool_connections, config.read_concurrency + config.upload_concurrency + 2),
    }
    if config.addressing_style:
        options["s3"] = {"addressing_style": config.addressing_style}
    if config.checksums:
        options["request_checksum_calculation"] = config.checksums
        options["response_checksum_validation"] = config.checksums
    client = session.create_client("s3", region_name=config.region, endpoint_url=config.endpoint_url, config=Config(**options))
    if _hashes_checksummed_bodies(client):
        options["s3"] = {**options.get("s3", {}), "payload_signing_enabled": False}
        client = session.create_client("s3", region_name=config.region, endpoint_url=config.endpoint_url, config=Config(**options))
    client.meta.events.register("before-parameter-build", _no_checksum_for_ranges)  # after botocore's own handler
    return client


def _hashes_checksummed_bodies(client: Any) -> bool:
    """Over plain http botocore signs a SHA-256 of every body, even one that carries a CRC32 the
    store checks (over https it does not): a third of an identity job's own CPU. Where the CRC32
    goes with each upload and nobody chose otherwise, the body is sent as UNSIGNED-PAYLOAD, as over
    https. What is checked then, on http and on https, is in docs/s3.md."""
    config = client.meta.config
    return (
        urlsplit(client.meta.endpoint_url).scheme == "http"
        and config.request_checksum_calculation == "when_supported"
        and (config.s3 or {}).get("payload_signing_enabled") is None
    )


def _no_checksum_for_ranges(params: dict[str, Any], model: Any, **_: Any) -> None:
    """A ranged GET is not checksum-validated: S3 sends no checksum for a range, and stores that
    send the whole object's (rclone, gofakes3) would fail every ranged read with a mismatch."""
    if model.name == "GetObject" and "Range" in params:
        params.pop("ChecksumMode", None)


class S3Storage(Storage):
    def __init__(self, config: S3Config | None = None, *, client: Any = None) -> None:
        self.config = config or S3Config()
        self._client = client
        self._client_lock = threading.Lock()
        self._part_copies = PartCopies()  # whether the store copies parts, once a writer has tried

    @property
    def client(self) -> Any:
        """Created on first use, so that constructing a storage never touches the network or files."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = create_client(self.config)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (into a worker process or a Ray actor) as its config; the client is rebuilt there."""
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    @property
    def read_strategy(self) -> str:
        """The strategy `open_read` uses, with `auto` resolved from the endpoint the client talks to."""
        if self.config.read_strategy != "auto":
            return self.config.read_strategy
        host = urlsplit(self.client.meta.endpoint_url).hostname or ""
        return "ranges" if host.endswith(AWS_S3_HOSTS) else "stream"

    def _client_for(self, uri: str) -> Any:
        try:
            return self.client
        except Exception as exc:  # a missing profile, a malformed config file, …
            raise storage_error(uri, exc, action="setting up the S3 client") from None

    def list(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        """The objects under a prefix, by key, page by page as the store answers: a job starts
        on the first page, not after the last (docs/s3.md, "Listing and errors")."""
        bucket, prefix = _bucket_and_key(prefix_uri, allow_empty_key=True)
        found = (info for info in self._list_all(prefix_uri, bucket, prefix) if not info.key.endswith("/") and TEMP_MARKER not in info.key)
        if is_directory_bucket(bucket):  # it lists in no particular order: all of it, then sorted
            return iter(sorted(found, key=lambda info: info.key))
        return found

    def stat(self, uri: str) -> ObjectInfo:
        bucket, key = _bucket_and_key(uri)
        try:
            response = self._client_for(uri).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise self._not_found(uri, bucket, exc, action="stat") from None
        except Exception as exc:
            raise storage_error(uri, exc, action="stat") from None
        return ObjectInfo(uri=uri, key=key, size=int(response["ContentLength"]), etag=response.get("ETag"))

    def open_read(self, uri: str, *, start: int = 0) -> BinaryIO:
        bucket, key = _bucket_and_key(uri)
        config = self.config
        client = self._client_for(uri)
        try:
            if self.read_strategy == "ranges":
                head = client.head_object(Bucket=bucket, Key=key)
                size, etag = max(int(head["ContentLength"]) - start, 0), head.get("ETag")
                get_range = _range_getter(uri, client, bucket, key, etag)
                chunks = ranged_chunks(
                    uri,
                    size,
                    lambda first, end: fetch_range(uri, get_range, start + first, start + end, resume_attempts=config.resume_attempts),
                    part_size=config.part_size,
                    concurrency=config.read_concurrency,
                )
                read_ahead = 1  # the ranged GETs in flight are the read-ahead
            else:
                response = client.get_object(Bucket=bucket, Key=key, **({"Range": f"bytes={start}-"} if start else {}))
                size, etag = int(response["ContentLength"]), response.get("ETag")
                get_range = _range_getter(uri, client, bucket, key, etag)
                chunks = stream_chunks(
                    uri,
                    response,
                    lambda offset: get_range(f"bytes={start + offset}-"),
                    chunk_size=config.read_chunk_size,
                    resume_attempts=config.resume_attempts,
                )
                read_ahead = config.read_ahead_chunks
        except ClientError as exc:
            raise self._not_found(uri, bucket, exc, action="opening for reading") from None
        except Exception as exc:
            raise storage_error(uri, exc, action="opening for reading") from None
        # A raw binary stream (read, readinto, close, a context manager): all a BinaryIO is used for.
        return cast(BinaryIO, S3Reader(uri, chunks, size=size, etag=etag, read_ahead=read_ahead))

    def open_write(self, uri: str, *, kms_key_id: str | None = None) -> ObjectWriter:
        bucket, key = _bucket_and_key(uri)
        extra_args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
        client = self._client_for(uri)
        return S3Writer(
            client,
            uri,
            bucket,
            key,
            part_size=self.config.part_size,
            max_parts_in_flight=self.config.upload_concurrency,
            extra_args=extra_args,
            checksum_algorithm="CRC32" if client.meta.config.request_checksum_calculation == "when_supported" else None,
            part_copies=self._part_copies,
        )

    def delete(self, uri: str) -> None:
        bucket, key = _bucket_and_key(uri)
        try:
            self._client_for(uri).delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise storage_error(uri, exc, action="deleting") from None

    def sweep_temporaries(self, prefix_uri: str) -> int:
        """Abort pending multipart uploads and delete temporary objects under the prefix."""
        bucket, prefix = _bucket_and_key(prefix_uri, allow_empty_key=True)
        client = self._client_for(prefix_uri)
        removed = 0
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    try:
                        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    except ClientError as exc:
                        if error_code(exc) != "NoSuchUpload":
                            raise
                    removed += 1
            for info in self._list_all(prefix_uri, bucket, prefix):
                if TEMP_MARKER in info.key:
                    client.delete_object(Bucket=bucket, Key=info.key)
                    removed += 1
        except StorageError:
            raise
        except Exception as exc:
            raise storage_error(prefix_uri, exc, action="sweeping temporaries") from None
        return removed

    def _list_all(self, prefix_uri: str, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for page in self._client_for(prefix_uri).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    yield ObjectInfo(uri=f"s3://{bucket}/{key}", key=key, size=int(entry["Size"]), etag=entry.get("ETag"))
        except Exception as exc:
            raise storage_error(prefix_uri, exc, action="listing") from None

    def _not_found(self, uri: str, bucket: str, exc: ClientError, *, action: str) -> StorageError:
        """HEAD answers a bare 404 for both a missing key and a missing bucket; tell them apart."""
        if error_code(exc) == "NoSuchKey" and not self._bucket_exists(bucket):
            return StorageError(uri, "NoSuchBucket", f"{action}: the bucket {bucket} does not exist")
        return storage_error(uri, exc, action=action)

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404
        return True


def is_directory_bucket(bucket: str) -> bool:
    """An S3 Express One Zone directory bucket, whose name ends in `--x-s3`: unlike a general
    purpose bucket, its ListObjectsV2 does not answer in key order."""
    return bucket.endswith("--x-s3")


def _bucket_and_key(uri: str, *, allow_empty_key: bool = False) -> tuple[str, str]:
    scheme, bucket, key = parse_uri(uri)
    if scheme != "s3" or not bucket or (not key and not allow_empty_key):
        raise StorageError(uri, "InvalidURI", "expected s3://bucket/key")
    return bucket, key


def _range_getter(uri: str, client: Any, bucket: str, key: str, etag: str | None) -> Any:
    """GET of one byte range, pinned to the ETag first seen so a replaced object is noticed: by
    `If-Match`, and by the answer's own ETag for stores that ignore `If-Match` (rclone, gofakes3)."""
    condition = {"IfMatch": etag} if etag else {}

    def get(byte_range: str) -> dict[str, Any]:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range, **condition)
        if etag and response.get("ETag", etag) != etag:
            response["Body"].close()
            raise StorageError(uri, "PreconditionFailed", "the object was replaced while it was being read")
        return response

    return get
