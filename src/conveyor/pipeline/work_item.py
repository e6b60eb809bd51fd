"""One work item (an input object) turned into one `.out` object, streaming, in bounded memory.

read → decompress → split → [input filter] → batch → invoke (in order, concurrent)
→ [map responses back to records → join → output filter → inference ids] → assemble → write.

This module knows nothing of HTTP, the store or the scheduler: it reports progress through a
callback, so the same code runs in a worker process, a Ray actor and a unit test.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Callable, Iterator

from conveyor.pipeline.batch import Payload, RecordTooLarge, iter_payloads, pack_records
from conveyor.pipeline.bisect import FailedRecord, Piece, TooManyFailures, bisect
from conveyor.pipeline.busy import BusyMeter
from conveyor.pipeline.decompress import iter_chunks
from conveyor.pipeline.invoke import InvocationFailed, InvocationWatch, Invoker, invoke_in_groups, invoke_in_order
from conveyor.pipeline.join import InferenceIdConfig, RecordProcessor
from conveyor.pipeline.shards import ShardReader, read_start, shift_offsets
from conveyor.pipeline.split import DataError, Record, iter_records, records_with_offsets
from conveyor.runtimes.base import InvocationError, Runtime
from conveyor.sagemaker.transform_job import DataProcessing
from conveyor.storage.base import ObjectWriter, Storage, StorageError

PROGRESS_INTERVAL_SECONDS = 0.25


@dataclass(frozen=True)
class WorkItem:
    item_id: int
    input_uri: str
    output_uri: str
    size: int
    attempts_used: dict[int, int] = field(default_factory=dict)  # payload index → invocations spent by earlier runs
    instance_losses: int = 0  # instances that died (not by a timeout) while transforming this item
    shard: int = 0  # this item's place among its object's shards (pipeline.shards)
    shards: int = 1  # how many shards the object is cut into; 1: the item is the whole object
    range_start: int | None = None  # a shard's nominal byte range [start, end) of the object (`size` is the object's)
    range_end: int | None = None

    @property
    def sharded(self) -> bool:
        return self.range_start is not None and self.range_end is not None

    @property
    def planned_bytes(self) -> int:
        """The input bytes this item accounts for: a shard's nominal range, or the whole object."""
        return self.range_end - self.range_start if self.range_start is not None and self.range_end is not None else self.size


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
    payloads_per_call: int = 1  # handed to the runtime together (batching, parallel decode: Runtime.payloads_per_call)
    payload_group_bytes: int = 0  # a group handed over once it holds this many bytes (0: payloads_per_call exactly)
    timeout_seconds: float = 600
    max_retries: int = 3
    assemble_with: str = "None"
    data_processing: DataProcessing = field(default_factory=DataProcessing)
    inference_id: InferenceIdConfig | None = None
    kms_key_id: str | None = None
    retry_backoff_seconds: float = 1.0
    tolerate_failed_records: bool = False  # bisect a failed payload to its bad records (a limit is set)
    max_failed_records: int | None = None  # a count limit: an object with more failed records fails


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
    failed_records: list[FailedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class PreviewRow:
    record_number: int
    model_input: bytes
    model_output: bytes
    output: bytes


@dataclass(frozen=True)
class Preview:
    """Run only the first `records` records, reporting each one (`conveyor preview`)."""

    records: int
    on_row: Callable[[PreviewRow], None]


class WorkItemFailed(Exception):
    """The object cannot be transformed; the message names the object and the cause.
    `failed_records` are the bad records found before it gave up, in a job that tolerates some."""

    def __init__(self, message: str, failed_records: list[FailedRecord] | None = None) -> None:
        super().__init__(message)
        self.failed_records = failed_records or []


def process_work_item(
    item: WorkItem,
    config: PipelineConfig,
    runtime: Runtime,
    storage_for: Callable[[str], Storage],
    on_progress: Callable[[ItemProgress], None],
    *,
    watch: InvocationWatch | None = None,
    log: Callable[[str], None] | None = None,
    preview: Preview | None = None,
    busy: BusyMeter | None = None,
) -> ItemProgress:
    """Transform one object; its `.out` appears whole, or not at all and WorkItemFailed is raised.
    `busy` measures how long the model was busy (the instance's, across its items).

    With `preview`, only the first `preview.records` records are transformed and each one's model
    input, model output and output line are handed to `preview.on_row`."""
    progress = ItemProgress(item.item_id)
    invoker = item_invoker(item, config, runtime, watch=watch, log=log, busy=busy)
    source = item.input_uri
    shard: ShardReader | None = None
    try:
        if preview is None and one_payload(item, config):
            body = read_one_payload(item, config, storage_for, progress)
            write_one_answer(item, config, storage_for, invoker(0, body) if body else None, progress)
        else:
            start = read_start(config.split_type, item.range_start) if item.range_start is not None and item.range_end is not None else 0
            reader = storage_for(item.input_uri).open_read(item.input_uri, start=start)
            output_uri = storage_for(item.output_uri).piece_uri(item.output_uri, item.shard) if item.sharded else item.output_uri
            with reader, storage_for(output_uri).open_write(output_uri, kms_key_id=config.kms_key_id) as writer:
                counted = _CountingStream(reader, skip=(item.range_start or 0) - start, limit=item.planned_bytes if item.sharded else None)
                chunks: Iterator[bytes] = iter_chunks(counted, compression=config.compression, source=source)
                if item.range_start is not None and item.range_end is not None:
                    shard = ShardReader(chunks, config.split_type, start=item.range_start, end=item.range_end, size=item.size)
                    chunks = iter(shard)
                # Cutting the next payload overlaps the model's call where there is a next one: a
                # MultiRecord object larger than one payload (a thread costs more than a small object).
                overlap = config.batch_strategy == "MultiRecord" and 0 < config.max_payload_bytes < item.size
                _transform(chunks, counted, config, invoker, writer, progress, on_progress, source, preview, overlap)
    except InvocationFailed as exc:
        raise WorkItemFailed(f"{source}: {exc}") from None
    except TooManyFailures as exc:
        raise WorkItemFailed(
            f"{source}: more records failed than CONVEYOR_MAX_FAILED_RECORDS={config.max_failed_records} allows; "
            f"the last: {exc}",
            _in_object(progress.failed_records, shard),
        ) from None
    except (DataError, StorageError) as exc:  # these name the object themselves
        raise WorkItemFailed(shift_offsets(str(exc), source, shard.begin or 0) if shard else str(exc)) from None
    finally:
        progress.retries = invoker.retries
    if item.sharded:
        progress.bytes_in = item.planned_bytes
    progress.failed_records = _in_object(progress.failed_records, shard)
    progress.done = True
    on_progress(progress)
    return progress


def item_invoker(
    item: WorkItem,
    config: PipelineConfig,
    runtime: Runtime,
    *,
    watch: InvocationWatch | None = None,
    log: Callable[[str], None] | None = None,
    busy: BusyMeter | None = None,
) -> Invoker:
    """The invoker of an item's payloads: the job's timeout and retries, the tries its earlier
    runs spent, its log lines prefixed with its object."""
    return Invoker(
        runtime,
        content_type=config.content_type,
        accept=config.accept,
        timeout_seconds=config.timeout_seconds,
        max_retries=config.max_retries,
        retry_backoff_seconds=config.retry_backoff_seconds,
        watch=watch,
        attempts_used=item.attempts_used,
        log=(lambda message: log(f"{item.input_uri}: {message}")) if log else None,
        busy=busy,
    )


def one_payload(item: WorkItem, config: PipelineConfig) -> bool:
    """Whether the object goes to the model whole, as one payload, with nothing to map back:
    SplitType None on a plain object within MaxPayloadInMB, without filters, join, inference ids
    or tolerated failures. The common shape of many small objects (an image each), which takes
    the short path: `read_one_payload`, the invoker, `write_one_answer`. The general one costs
    more per object than such an object's transform."""
    processing = config.data_processing
    return (
        config.split_type == "None"
        and config.compression == "None"
        and not item.sharded
        and 0 < item.size <= (config.max_payload_bytes or item.size)
        and not config.tolerate_failed_records
        and config.inference_id is None
        and (processing.input_filter is None or processing.input_filter.is_root)
        and (processing.output_filter is None or processing.output_filter.is_root)
        and processing.join_source != "Input"
    )


def read_one_payload(item: WorkItem, config: PipelineConfig, storage_for: Callable[[str], Storage], progress: ItemProgress) -> bytes:
    """A `one_payload` object's body, counted in `progress`; RecordTooLarge past MaxPayloadInMB."""
    limit = config.max_payload_bytes
    storage = storage_for(item.input_uri)
    body = storage.read_bytes(item.input_uri, most=limit or None)
    size = len(body)
    if limit and size > limit:  # the object grew since it was listed; reading stopped past the limit, its size is asked
        size = max(size, storage.stat(item.input_uri).size)
        raise RecordTooLarge(source=item.input_uri, record_number=1, size=size, limit=limit, exact=False, whole_object=True)
    progress.bytes_in = size
    return body


def write_one_answer(
    item: WorkItem, config: PipelineConfig, storage_for: Callable[[str], Storage], response: bytes | None, progress: ItemProgress
) -> None:
    """A `one_payload` object's `.out`: its payload's response, or nothing for an empty object."""
    with storage_for(item.output_uri).open_write(item.output_uri, kms_key_id=config.kms_key_id) as writer:
        if response is not None:
            if config.assemble_with == "Line" and not response.endswith(b"\n"):
                response += b"\n"
            writer.write(response)
            progress.records = progress.payloads = 1
            progress.bytes_out = len(response)


def _in_object(failed: list[FailedRecord], shard: ShardReader | None) -> list[FailedRecord]:
    """A shard's failed records with their offsets in the object; their numbers stay the shard's
    own, which the job's lifecycle makes the object's once it knows the shards before."""
    if shard is None or not shard.begin:
        return failed
    return [replace(record, offset=record.offset + (shard.begin or 0)) for record in failed]


def _transform(
    chunks: Iterator[bytes],
    counted: "_CountingStream",
    config: PipelineConfig,
    invoker: Invoker,
    writer: ObjectWriter,
    progress: ItemProgress,
    on_progress: Callable[[ItemProgress], None],
    source: str,
    preview: Preview | None,
    overlap: bool,
) -> None:
    processor = RecordProcessor(
        config.data_processing,
        content_type=config.content_type,
        accept=config.accept,
        inference_id=config.inference_id,
        split_type=config.split_type,
        batch_strategy=config.batch_strategy,
    )
    sent: deque[tuple[Record, Record]] = deque()  # (original, as sent) of records packed but not yet answered
    input_filter = config.data_processing.input_filter
    filtering = input_filter is not None and not input_filter.is_root
    per_record = processor.needs_per_record_output
    tolerant = config.tolerate_failed_records and not preview
    tracked = filtering or per_record or preview or tolerant  # records are kept until their payload is answered
    if not tracked:
        payloads = iter_payloads(
            chunks,
            split_type=config.split_type,
            strategy=config.batch_strategy,
            max_payload_bytes=config.max_payload_bytes,
            source=source,
        )
    else:
        records: Iterator[Record] = (
            records_with_offsets(chunks, config.split_type, source=source) if tolerant else iter_records(chunks, config.split_type, source=source)
        )
        if preview:
            records = islice(records, preview.records)
        filtered = _filtered_records(records, processor, filtering, config.split_type == "Line", sent, source)
        payloads = pack_records(filtered, strategy=config.batch_strategy, max_payload_bytes=config.max_payload_bytes, source=source)

    line = config.assemble_with == "Line"
    # Per-record output lines keep a line ending even under AssembleWith None, or the records of
    # a Line-split object would run together.
    record_end = b"\n" if line or config.split_type == "Line" else b""
    last_report = time.monotonic()
    # Each payload carries the read position at which it was cut, and progress counts input only
    # as far as answered payloads reach: the payloads in flight and the bytes read ahead for the
    # next ones do not count until their answers are written.
    cut = ((payload, counted.bytes_read) for payload in payloads)
    call = _tolerant(invoker) if tolerant else invoker
    if config.payloads_per_call > 1:
        # Groups that a byte bound may cut short, down to one long payload, are as many in
        # flight as payloads would be; a batch's group is one of two: decoding while the one
        # before is predicted.
        bounded = config.payload_group_bytes > 0
        answers = invoke_in_groups(
            cut,
            lambda first, group: invoker.many(first, [p[0].body for p in group], call),
            group_size=config.payloads_per_call,
            groups_at_once=config.max_concurrent if bounded else 2,
            group_bytes=config.payload_group_bytes,
            size=lambda p: len(p[0].body),
        )
    else:
        answers = invoke_in_order(cut, lambda index, p: call(index, p[0].body), max_concurrent=config.max_concurrent, overlap=overlap)
    for index, ((payload, read_when_cut), answer) in enumerate(answers):
        answered = [sent.popleft() for _ in range(payload.record_count)] if tracked else []
        if isinstance(answer, InvocationFailed):
            pieces = _bisected(index, answer, answered, payload.first_record, config, invoker, progress)
        else:
            pieces = [Piece(0, payload.record_count, answer)]
        for piece in pieces:
            first = payload.first_record + piece.start
            piece_records = answered[piece.start : piece.start + piece.count]
            response = piece.response
            if response is None:  # one record that failed for good: an empty output keeps the order
                original = piece_records[0][0]
                progress.failed_records.append(FailedRecord(first + 1, original.offset, piece.error, piece.attempts))
                failed_output = b"\n" if line else b""
                writer.write(failed_output)
                progress.bytes_out += len(failed_output)
            elif per_record:
                outputs = processor.split_response(response, record_count=piece.count, first_record=first, source=source)
                for offset, (output, (original, model_input)) in enumerate(zip(outputs, piece_records)):
                    number = first + offset + 1
                    joined = processor.output_record(original.bare, output, record_number=number, source=source)
                    writer.write(joined + record_end)
                    progress.bytes_out += len(joined) + len(record_end)
                    if preview:
                        preview.on_row(PreviewRow(number, model_input.bare, output, joined))
            else:
                writer.write(response)
                progress.bytes_out += len(response)
                if line and not response.endswith(b"\n"):
                    writer.write(b"\n")
                    progress.bytes_out += 1
                if preview:
                    _preview_rows(preview, processor, payload, response, answered, source)
        progress.records += payload.record_count
        progress.payloads += 1
        progress.bytes_in = read_when_cut
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL_SECONDS:
            progress.retries = invoker.retries
            on_progress(progress)
            last_report = now
    progress.bytes_in = counted.bytes_read


class _TimedOut(InvocationFailed):
    """A payload whose every allowed invocation ran past the timeout (each one restarted the
    instance): its records count as failed without bisection, which would time out again."""


def _tolerant(invoker: Invoker) -> Callable[..., bytes | InvocationFailed]:
    """The invoker, with a payload that fails for good answered by its failure (to bisect)."""

    def call(index: int, body: bytes, *, failed: InvocationError | None = None) -> bytes | InvocationFailed:
        spent = invoker.attempts_used.get(index, 0)
        if spent > invoker.max_retries:
            return _TimedOut(
                f"the model did not answer within InvocationsTimeoutInSeconds={invoker.timeout_seconds:g} in {spent} attempts "
                f"(InvocationsMaxRetries={invoker.max_retries})",
                attempts=spent,
            )
        try:
            return invoker(index, body, failed=failed)
        except InvocationFailed as exc:
            return exc

    return call


def _bisected(
    index: int,
    failure: InvocationFailed,
    answered: list[tuple[Record, Record]],
    first_record: int,
    config: PipelineConfig,
    invoker: Invoker,
    progress: ItemProgress,
) -> list[Piece]:
    """A failed payload's answered halves and failed records; an object with more failed records
    than a count limit allows stops here (TooManyFailures)."""
    single = config.batch_strategy == "SingleRecord"
    bodies = [sent.bare if single else sent.framed for _, sent in answered]
    limit = config.max_failed_records
    already = len(progress.failed_records)
    try:
        if isinstance(failure, _TimedOut):
            pieces = [Piece(start, 1, None, failure.message, failure.attempts) for start in range(len(answered))]
            if limit is not None and already + len(pieces) > limit:
                raise TooManyFailures(failure.message, pieces)
            return pieces
        return bisect(
            bodies, lambda body: invoker.once(index, body), error=failure.message, attempts=failure.attempts,
            may_fail=lambda failed: limit is None or already + failed <= limit,
        )
    except TooManyFailures as exc:  # the object fails; the bad records found so far are still reported
        for piece in exc.pieces:
            if piece.response is None:
                original = answered[piece.start][0]
                progress.failed_records.append(FailedRecord(first_record + piece.start + 1, original.offset, piece.error, piece.attempts))
        raise


def _preview_rows(
    preview: Preview, processor: RecordProcessor, payload: Payload, response: bytes, answered: list[tuple[Record, Record]], source: str
) -> None:
    """Without a join the output is written per response; show it per record where it maps."""
    try:
        outputs = processor.split_response(response, record_count=payload.record_count, first_record=payload.first_record, source=source)
    except DataError:
        outputs = [response] + [b""] * (payload.record_count - 1)
    for offset, (output, (_, model_input)) in enumerate(zip(outputs, answered)):
        preview.on_row(PreviewRow(payload.first_record + offset + 1, model_input.bare, output, output))


def _filtered_records(
    records: Iterator[Record],
    processor: RecordProcessor,
    filtering: bool,
    line: bool,
    sent: deque[tuple[Record, Record]],
    source: str,
) -> Iterator[Record]:
    """Apply the InputFilter to each record, remembering the originals for the join."""
    for number, record in enumerate(records, start=1):
        if filtering:
            selected = processor.model_input(record.bare, record_number=number, source=source)
            filtered = Record(framed=selected + b"\n" if line else selected, bare=selected)
        else:
            filtered = record
        sent.append((record, filtered))
        yield filtered


class _CountingStream:
    """Counts the bytes read from the store (compressed bytes for Gzip input). A shard counts only
    its nominal range: the byte read before it and the bytes read past it are its neighbours', so
    that the shards' bytes add up to the object's size."""

    def __init__(self, stream: Any, *, skip: int = 0, limit: int | None = None) -> None:  # any binary file-like object
        self._stream = stream
        self._read = 0
        self._skip = skip
        self._limit = limit

    @property
    def bytes_read(self) -> int:
        counted = max(self._read - self._skip, 0)
        return counted if self._limit is None else min(counted, self._limit)

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self._stream.readinto(buffer)
        self._read += count or 0
        return count


__all__ = ["ItemProgress", "PipelineConfig", "Payload", "Preview", "PreviewRow", "WorkItem", "WorkItemFailed", "process_work_item"]
