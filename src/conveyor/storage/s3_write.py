"""Writing one S3 object all-or-nothing: one PUT when small, a multipart upload when large.

Written bytes are kept up to a part and joined once; the first full part starts a multipart
upload and each part is uploaded on a small background pool while the caller goes on producing
the next one. At most `max_parts_in_flight` parts are uploading at once, so memory stays at
(that + 1) parts. The object appears only when CompleteMultipartUpload (or the one PutObject)
succeeds; `abort()` aborts the multipart upload so no parts remain stored or billed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable

from botocore.exceptions import ClientError

from conveyor.storage.base import TEMP_MARKER, ObjectWriter, StorageError
from conveyor.storage.s3_errors import error_code, storage_error

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
SMALL_WRITE = 64 * 1024
"""Writes below this are copied into one shared buffer; larger ones are kept as they are until
their part is joined, so each byte is copied once on its way to a part."""
PART_GROWTH_INTERVAL = 2_000
"""The part size doubles every this many parts, so 10,000 parts reach ~1 TB at 16 MiB parts."""
MIN_PART = 5 << 20
"""S3's smallest part, but for the last."""
MAX_COPIED_PART = 5 << 30
"""S3's largest part, copied ones included."""


COPY_NOT_IMPLEMENTED = {"NotImplemented", "InvalidRequest", "MethodNotAllowed"}
"""What a store that does not copy parts may answer UploadPartCopy."""
STREAMED_CHUNK = 1 << 20


class PartCopies:
    """Whether a store copies parts inside itself (UploadPartCopy), learnt once by trying and
    shared by the writers of one store. One that does not implement it may say so, or (as
    `rclone serve s3` does) store an empty part and answer without its ETag."""

    def __init__(self) -> None:
        self.supported: bool | None = None  # None: not tried yet


class S3Writer(ObjectWriter):
    def __init__(
        self,
        client: Any,
        uri: str,
        bucket: str,
        key: str,
        *,
        part_size: int,
        max_parts_in_flight: int,
        extra_args: dict[str, str],
        checksum_algorithm: str | None,
        part_copies: PartCopies | None = None,
    ) -> None:
        self.uri = uri
        self._part_copies = part_copies or PartCopies()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._extra_args = extra_args
        self._checksum_algorithm = checksum_algorithm
        self._pending: list[bytes | bytearray | memoryview] = []  # the next part's bytes, joined once when it is full
        self._pending_size = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._slots = threading.BoundedSemaphore(max(1, max_parts_in_flight))
        self._max_parts_in_flight = max(1, max_parts_in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._failure: Exception | None = None
        self._state = "open"  # → committed | aborted

    @property
    def parts_uploaded(self) -> int:
        return len(self._parts)

    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise StorageError(self.uri, "InvalidState", f"write after the writer was {self._state}")
        size = memoryview(data).nbytes
        if size < SMALL_WRITE and self._pending_size + size < self._next_part_size():
            last = self._pending[-1] if self._pending else None
            if not isinstance(last, bytearray):
                last = bytearray()
                self._pending.append(last)
            last += data  # small writes (a record each) share one buffer
            self._pending_size += size
            return
        piece = data if type(data) is bytes else bytes(data)  # kept until its part is sent: the caller may reuse its buffer
        offset = 0
        while size - offset >= (room := self._next_part_size() - self._pending_size):
            self._pending.append(memoryview(piece)[offset : offset + room])  # a large write is cut into parts
            self._pending_size += room
            offset += room
            self._send_part()
        if offset < size:
            self._pending.append(piece if offset == 0 else memoryview(piece)[offset:])
            self._pending_size += size - offset

    def commit(self) -> None:
        if self._state != "open":
            raise StorageError(self.uri, "InvalidState", f"commit after the writer was {self._state}")
        try:
            if self._upload_id is None:
                body = self._take_pending()
                self._client.put_object(Bucket=self._bucket, Key=self._key, Body=body, **self._extra_args)
            else:
                if self._pending_size:
                    self._send_part()
                parts = [future.result() for future in self._parts]
                self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
                )
        except Exception as exc:
            self.abort()
            raise storage_error(self.uri, exc, action="writing") from None
        self._state = "committed"
        self._shutdown()

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._take_pending()
        for future in self._parts:
            future.cancel()
        wait(self._parts)  # a part still uploading would otherwise outlive the abort
        self._shutdown()
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    logger.warning("%s: could not abort multipart upload %s: %s", self.uri, self._upload_id, exc)
            except Exception as exc:  # the sweep on resume removes what is left
                logger.warning("%s: could not abort multipart upload %s: %s", self.uri, self._upload_id, exc)

    def smallest_copy(self) -> int | None:
        return None if self._part_copies.supported is False else MIN_PART

    def bytes_before_copy(self) -> int:
        """What is pending becomes a part of its own before a copied part: it must reach S3's minimum."""
        return max(MIN_PART - self._pending_size, 0) if self._pending_size else 0

    def copy_range(self, uri: str, start: int, end: int) -> None:
        """Append bytes [start, end) of `uri` as parts that S3 copies itself (UploadPartCopy); the
        range must be at least MIN_PART unless nothing follows it."""
        if self._state != "open":
            raise StorageError(self.uri, "InvalidState", f"copy after the writer was {self._state}")
        if self._pending_size:
            self._send_part()
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        if self._part_copies.supported is None:
            self._part_copies.supported = self._store_copies(bucket, key)
        if not self._part_copies.supported:
            self._write_range(bucket, key, start, end)
            return
        offset = start
        while offset < end:
            size = _copied_part_size(offset, end)
            self._submit(self._copy_part, {"Bucket": bucket, "Key": key}, f"bytes={offset}-{offset + size - 1}")
            offset += size

    def _store_copies(self, bucket: str, key: str) -> bool:
        """Whether the store copies parts: one byte of the piece copied into a throwaway upload
        beside the output, aborted at once (a store that does not copy may leave a bad part
        behind, which could not be left out of the real upload)."""
        probe = f"{self._key}{TEMP_MARKER}copy-probe"
        try:
            upload = self._client.create_multipart_upload(Bucket=self._bucket, Key=probe)["UploadId"]
        except ClientError as exc:
            raise storage_error(self.uri, exc, action="starting a multipart upload") from None
        try:
            response = self._client.upload_part_copy(
                Bucket=self._bucket, Key=probe, UploadId=upload, PartNumber=1,
                CopySource={"Bucket": bucket, "Key": key}, CopySourceRange="bytes=0-0",
            )  # fmt: skip
        except ClientError as exc:
            if error_code(exc) not in COPY_NOT_IMPLEMENTED:
                raise storage_error(self.uri, exc, action="copying a part") from None
            response = {}
        finally:
            try:
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=probe, UploadId=upload)
            except Exception as exc:  # the sweep on resume removes what is left
                logger.warning("%s: could not abort multipart upload %s: %s", self.uri, upload, exc)
        copies = bool((response.get("CopyPartResult") or {}).get("ETag"))
        if not copies:
            logger.info("%s: the store does not copy parts (UploadPartCopy); pieces are written through this process", self.uri)
        return copies

    def _write_range(self, bucket: str, key: str, start: int, end: int) -> None:
        """Append bytes [start, end) of the object by reading them here, as any write."""
        try:
            body = self._client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
            while chunk := body.read(STREAMED_CHUNK):
                self.write(chunk)
        except ClientError as exc:
            raise storage_error(f"s3://{bucket}/{key}", exc, action="reading") from None

    def _take_pending(self) -> bytearray:
        """The pending bytes as one body, and a bytearray, not bytes: botocore wraps a bytes body in
        a BytesIO, copies it out again in slices to checksum it, and sends it 16 KiB at a time after
        an `Expect: 100-continue` round trip; a bytearray is checksummed and sent whole."""
        only = self._pending[0] if len(self._pending) == 1 else None
        data = only if type(only) is bytearray else bytearray().join(self._pending)
        self._pending, self._pending_size = [], 0
        return data

    def _next_part_size(self) -> int:
        return self._part_size << (len(self._parts) // PART_GROWTH_INTERVAL)

    def _send_part(self) -> None:
        """Hand the pending bytes to the pool as the next part, waiting for a free slot."""
        self._raise_failed_part()
        if self._upload_id is None:
            self._start_upload()
        self._submit(self._upload_part, self._take_pending())

    def _submit(self, upload: Callable[..., dict[str, Any]], *arguments: Any) -> None:
        """Upload the next part on the pool (`upload(number, *arguments)`), waiting for a free slot."""
        self._raise_failed_part()
        if self._upload_id is None:
            self._start_upload()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(self.uri, "EntityTooLarge", f"the object needs more than {MAX_PARTS} parts")
        self._slots.acquire()
        assert self._pool is not None
        future = self._pool.submit(upload, number, *arguments)
        future.add_done_callback(self._part_done)
        self._parts.append(future)

    def _part_done(self, future: Future[dict[str, Any]]) -> None:
        self._slots.release()
        failure = None if future.cancelled() else future.exception()
        if isinstance(failure, Exception) and self._failure is None:
            self._failure = failure

    def _start_upload(self) -> None:
        arguments = dict(self._extra_args)
        if self._checksum_algorithm:
            arguments["ChecksumAlgorithm"] = self._checksum_algorithm
        try:
            response = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key, **arguments)
        except Exception as exc:
            raise storage_error(self.uri, exc, action="starting a multipart upload") from None
        self._upload_id = response["UploadId"]
        self._pool = ThreadPoolExecutor(max_workers=self._max_parts_in_flight, thread_name_prefix="s3-part")

    def _upload_part(self, number: int, data: bytearray) -> dict[str, Any]:
        arguments = {"ChecksumAlgorithm": self._checksum_algorithm} if self._checksum_algorithm else {}
        response = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data, **arguments
        )
        return self._part(number, response)

    def _copy_part(self, number: int, source: dict[str, str], byte_range: str) -> dict[str, Any]:
        response = self._client.upload_part_copy(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, CopySource=source, CopySourceRange=byte_range
        )
        return self._part(number, response["CopyPartResult"])

    def _part(self, number: int, result: dict[str, Any]) -> dict[str, Any]:
        """A part as CompleteMultipartUpload lists it: its number, its ETag, and its checksum where the upload has one."""
        part = {"PartNumber": number, "ETag": result["ETag"]}
        if self._checksum_algorithm:
            field = "Checksum" + self._checksum_algorithm
            if result.get(field):
                part[field] = result[field]
        return part

    def _raise_failed_part(self) -> None:
        if self._failure is not None:
            raise storage_error(self.uri, self._failure, action="uploading a part")

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _copied_part_size(offset: int, end: int) -> int:
    """The next copied part of [offset, end): no part above S3's largest or below its smallest."""
    return end - offset if end - offset <= MAX_COPIED_PART else min(MAX_COPIED_PART, end - offset - MIN_PART)
