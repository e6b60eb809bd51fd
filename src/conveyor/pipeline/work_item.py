"""One work item (an input object) turned into one `.out` object, streaming, in bounded memory.

read → decompress → split → [input filter] → batch → invoke (in order, concurrent)
→ [map responses back to records → join → output filter → inference ids] → assemble → write.

This module knows nothing of HTTP, the store or the scheduler: it reports progress through a
callback, so the same code runs in a worker process, a Ray actor and a unit test.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from conveyor.pipeline.batch import Payload, iter_payloads, pack_records
from conveyor.pipeline.decompress import iter_chunks
from conveyor.pipeline.invoke import InvocationFailed, InvocationWatch, Invoker, invoke_in_order
from conveyor.pipeline.join import InferenceIdConfig, RecordProcessor
from conveyor.pipeline.split import DataError, Record, iter_records
from conveyor.runtimes.base import Runtime
from conveyor.spec.transform_job import DataProcessing
from conveyor.storage.base import ObjectWriter, Storage, StorageError

PROGRESS_INTERVAL_SECONDS = 0.25


@dataclass(frozen=True)
class WorkItem:
    item_id: int
    input_uri: str
    output_uri: str
    size: int
    attempts_used: dict[int, int] = field(default_factory=dict)  # payload index → invocations spent by earlier runs


@dataclass(frozen=True)
class PipelineConfig:
    """A job's data-plane settings with the execution parameters already resolved."""

    split_type: str = "None"
    compression: str = "None"
    content_type: str | None = None
    accept: str | None = None
    batch_strategy: str = "MultiRecord"
    max_payload_bytes: int = 6 << 20  # 0: no limit
    max_concurrent: int = 1
    timeout_seconds: float = 600
    max_retries: int = 3
    assemble_with: str = "None"
    data_processing: DataProcessing = field(default_factory=DataProcessing)
    inference_id: InferenceIdConfig | None = None
    kms_key_id: str | None = None
    retry_backoff_seconds: float = 1.0


@dataclass
class ItemProgress:
    item_id: int
    records: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    payloads: int = 0
    retries: int = 0
    done: bool = False
    failure: str | None = None


class WorkItemFailed(Exception):
    """The object cannot be transformed; the message names the object and the cause."""


def process_work_item(
    item: WorkItem,
    config: PipelineConfig,
    runtime: Runtime,
    storage_for: Callable[[str], Storage],
    on_progress: Callable[[ItemProgress], None],
    *,
    watch: InvocationWatch | None = None,
    log: Callable[[str], None] | None = None,
) -> ItemProgress:
    """Transform one object; its `.out` appears whole, or not at all and WorkItemFailed is raised."""
    progress = ItemProgress(item.item_id)
    invoker = Invoker(
        runtime,
        content_type=config.content_type,
        accept=config.accept,
        timeout_seconds=config.timeout_seconds,
        max_retries=config.max_retries,
        retry_backoff_seconds=config.retry_backoff_seconds,
        watch=watch,
        attempts_used=item.attempts_used,
        log=(lambda message: log(f"{item.input_uri}: {message}")) if log else None,
    )
    source = item.input_uri
    try:
        reader = storage_for(item.input_uri).open_read(item.input_uri)
        with reader, storage_for(item.output_uri).open_write(item.output_uri, kms_key_id=config.kms_key_id) as writer:
            counted = _CountingStream(reader)
            chunks = iter_chunks(counted, compression=config.compression, source=source)
            _transform(chunks, counted, config, invoker, writer, progress, on_progress, source)
    except InvocationFailed as exc:
        raise WorkItemFailed(f"{source}: {exc}") from None
    except (DataError, StorageError) as exc:  # these name the object themselves
        raise WorkItemFailed(str(exc)) from None
    finally:
        progress.retries = invoker.retries
    progress.done = True
    on_progress(progress)
    return progress


def _transform(
    chunks: Iterator[bytes],
    counted: "_CountingStream",
    config: PipelineConfig,
    invoker: Invoker,
    writer: ObjectWriter,
    progress: ItemProgress,
    on_progress: Callable[[ItemProgress], None],
    source: str,
) -> None:
    processor = RecordProcessor(
        config.data_processing,
        content_type=config.content_type,
        accept=config.accept,
        inference_id=config.inference_id,
        split_type=config.split_type,
        batch_strategy=config.batch_strategy,
    )
    originals: deque[Record] = deque()
    input_filter = config.data_processing.input_filter
    filtering = input_filter is not None and not input_filter.is_root
    if not filtering and not processor.needs_per_record_output:
        payloads = iter_payloads(
            chunks,
            split_type=config.split_type,
            strategy=config.batch_strategy,
            max_payload_bytes=config.max_payload_bytes,
            source=source,
        )
    else:
        records = _filtered_records(iter_records(chunks, config.split_type, source=source), processor, filtering, config, originals, source)
        payloads = pack_records(records, strategy=config.batch_strategy, max_payload_bytes=config.max_payload_bytes, source=source)

    line = config.assemble_with == "Line"
    last_report = time.monotonic()
    for payload, response in invoke_in_order(payloads, lambda index, p: invoker(index, p.body), max_concurrent=config.max_concurrent):
        if processor.needs_per_record_output:
            outputs = processor.split_response(response, record_count=payload.record_count, first_record=payload.first_record, source=source)
            for offset, output in enumerate(outputs):
                original = originals.popleft()
                joined = processor.output_record(original.bare, output, record_number=payload.first_record + offset + 1, source=source)
                writer.write(joined + b"\n" if line else joined)
                progress.bytes_out += len(joined) + line
        else:
            if filtering:
                for _ in range(payload.record_count):
                    originals.popleft()
            writer.write(response)
            progress.bytes_out += len(response)
            if line and not response.endswith(b"\n"):
                writer.write(b"\n")
                progress.bytes_out += 1
        progress.records += payload.record_count
        progress.payloads += 1
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_SECONDS:
            progress.bytes_in = counted.bytes_read
            progress.retries = invoker.retries
            on_progress(progress)
            last_report = now
    progress.bytes_in = counted.bytes_read


def _filtered_records(
    records: Iterator[Record],
    processor: RecordProcessor,
    filtering: bool,
    config: PipelineConfig,
    originals: deque[Record],
    source: str,
) -> Iterator[Record]:
    """Apply the InputFilter to each record, remembering the originals for the join."""
    line = config.split_type == "Line"
    for number, record in enumerate(records, start=1):
        originals.append(record)
        if not filtering:
            yield record
            continue
        selected = processor.model_input(record.bare, record_number=number, source=source)
        yield Record(framed=selected + b"\n" if line else selected, bare=selected)


class _CountingStream:
    """Counts the bytes read from the store (compressed bytes for Gzip input)."""

    def __init__(self, stream) -> None:  # noqa: ANN001 - any binary file-like object
        self._stream = stream
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001
        count = self._stream.readinto(buffer)
        self.bytes_read += count or 0
        return count


__all__ = ["ItemProgress", "PipelineConfig", "Payload", "WorkItem", "WorkItemFailed", "process_work_item"]
