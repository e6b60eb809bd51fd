"""Reading one S3 object as a stream, with read-ahead on a background thread.

A producer thread fetches the object's bytes into a bounded queue of chunks while the consumer
parses the chunks before them, so a consumer slower than the store never waits for the network
and memory stays bounded by the queue. Two strategies fill the queue:

- `stream`: one GET whose body is read chunk by chunk; if the connection breaks mid-body the
  read resumes from the current offset with `Range` and `If-Match` (so a replaced object is
  noticed, never spliced). Best where ranged GETs are costly (moto copies the whole object for
  each one) and on one connection to a fast store.
- `ranges`: concurrent ranged GETs of `part_size` each, yielded in order. Best on real S3, whose
  per-connection throughput is far below what several connections together reach.

Throttling and 5xx on each request are retried by botocore's retry configuration.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError
from urllib3.exceptions import HTTPError as Urllib3Error

from conveyor.storage.base import StorageError
from conveyor.storage.s3_errors import error_code, storage_error

BROKEN_STREAM_ERRORS = (BotoCoreError, Urllib3Error, OSError)
"""A body that stops mid-way: read timeouts, reset connections, short bodies."""

_END = object()


class S3Reader(io.RawIOBase):
    """A file-like view of one object; `read`/`readinto` take chunks a background thread fetched."""

    def __init__(self, uri: str, chunks: Iterator[bytes], *, size: int, etag: str | None, read_ahead: int) -> None:
        super().__init__()
        self.uri = uri
        self.size = size
        self.etag = etag
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, read_ahead))
        self._stop = threading.Event()
        self._chunk: bytes = b""
        self._view = memoryview(b"")
        self._position = 0  # within self._chunk
        self._finished = False
        self._error: StorageError | None = None  # raised again by every later read
        # The thread holds the queue and the event, not the reader, so a reader dropped unclosed
        # is still collected, and its close() stops the thread.
        self._thread = threading.Thread(
            target=_produce, args=(uri, chunks, self._queue, self._stop), name=f"s3-read {uri}", daemon=True
        )
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._current()
        if chunk is None:
            return 0
        with memoryview(buffer) as target:
            count = min(len(target), len(chunk) - self._position)
            target[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); a whole chunk is handed over without a copy."""
        if size is None or size < 0:
            return self.readall()
        chunk = self._current() if size else b""
        if not chunk:
            return b""
        if self._position == 0 and size >= len(chunk):
            self._position = len(chunk)
            return chunk
        data = chunk[self._position : self._position + size]
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while (chunk := self._current()) is not None:
            parts.append(chunk[self._position :] if self._position else chunk)
            self._position = len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._drain()
        super().close()

    def _current(self) -> bytes | None:
        """The chunk being read, fetching the next one when it is used up; None at the end."""
        if self.closed:
            raise ValueError("I/O operation on closed S3 object reader")
        while self._position >= len(self._chunk):
            if self._error is not None:
                raise self._error
            if self._finished:
                return None
            item = self._queue.get()
            if item is _END:
                self._finished = True
                return None
            if isinstance(item, StorageError):
                self._error = item
                raise item
            assert isinstance(item, bytes)
            self._chunk, self._view, self._position = item, memoryview(item), 0
        return self._chunk

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


def _produce(uri: str, chunks: Iterator[bytes], chunk_queue: queue.Queue[object], stop: threading.Event) -> None:
    """Move chunks into the queue until the end, an error (handed over to be raised), or stop."""

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                chunk_queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for chunk in chunks:
            if not put(chunk):
                return
        put(_END)
    except Exception as exc:
        put(storage_error(uri, exc, action="reading"))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def stream_chunks(
    uri: str,
    response: dict[str, Any],
    reopen: Callable[[int], dict[str, Any]],
    *,
    chunk_size: int,
    resume_attempts: int,
    backoff_seconds: float = 0.2,
) -> Iterator[bytes]:
    """The chunks of one streaming GET; a broken body is resumed with `reopen(offset)`."""
    size = int(response["ContentLength"])
    body = response["Body"]
    offset = 0
    failures = 0
    try:
        while True:
            try:
                chunk = body.read(chunk_size)  # the empty read at the end checks length and checksum
                if not chunk and offset < size:
                    raise StorageError(uri, "IncompleteBody", f"the body ended after {offset} of {size} bytes")
            except FlexibleChecksumError as exc:
                raise storage_error(uri, exc, action="reading") from None
            except (*BROKEN_STREAM_ERRORS, StorageError) as exc:
                if offset >= size:
                    return  # every byte arrived; only the connection's end was lost
                failures += 1
                if failures > resume_attempts:
                    action = f"reading at byte {offset} after {resume_attempts} resumptions"
                    raise storage_error(uri, exc, action=action) from None
                body.close()
                time.sleep(backoff_seconds * 2 ** (failures - 1))
                body = _reopen(uri, reopen, offset)["Body"]
                continue
            if not chunk:
                return
            failures = 0
            offset += len(chunk)
            yield chunk
    finally:
        body.close()


def ranged_chunks(
    uri: str,
    size: int,
    fetch: Callable[[int, int], bytes],
    *,
    part_size: int,
    concurrency: int,
) -> Iterator[bytes]:
    """The object's parts in order, `concurrency` ranged GETs in flight ahead of the consumer."""
    if size == 0:
        return
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-range")
    pending: deque[Future[bytes]] = deque()
    offset = 0
    try:
        while pending or offset < size:
            while offset < size and len(pending) < concurrency:
                end = min(offset + part_size, size)
                pending.append(pool.submit(fetch, offset, end))
                offset = end
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def fetch_range(
    uri: str,
    get: Callable[[str], dict[str, Any]],
    start: int,
    end: int,
    *,
    resume_attempts: int,
    backoff_seconds: float = 0.2,
) -> bytes:
    """Bytes `[start, end)` of the object; a broken body is fetched again."""
    failures = 0
    while True:
        try:
            response = get(f"bytes={start}-{end - 1}")
        except ClientError as exc:
            raise _vanished(uri, exc) from None
        try:
            data = response["Body"].read()
            if len(data) == end - start:
                return data
            problem: Exception = StorageError(uri, "IncompleteBody", f"range {start}-{end - 1} gave {len(data)} bytes")
        except BROKEN_STREAM_ERRORS as exc:
            problem = exc
        finally:
            response["Body"].close()
        failures += 1
        if failures > resume_attempts:
            raise storage_error(uri, problem, action=f"reading bytes {start}-{end - 1}")
        time.sleep(backoff_seconds * 2 ** (failures - 1))


def _reopen(uri: str, reopen: Callable[[int], dict[str, Any]], offset: int) -> dict[str, Any]:
    try:
        return reopen(offset)
    except ClientError as exc:
        raise _vanished(uri, exc) from None


def _vanished(uri: str, exc: ClientError) -> StorageError:
    code = error_code(exc)
    if code == "NoSuchKey":
        return StorageError(uri, code, "the object vanished while it was being read")
    if code in ("PreconditionFailed", "InvalidRange"):  # a range within the size first seen: the object shrank
        return StorageError(uri, "PreconditionFailed", "the object was replaced while it was being read")
    return storage_error(uri, exc, action="reading")
