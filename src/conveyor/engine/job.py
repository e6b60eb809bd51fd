"""One transform job's run, from its planned items to its final status: the one owner of a
job's lifecycle.

`run_job` is used as it is by `conveyor transform` (items in memory, a listener that draws the
progress bar) and by the server's scheduler (items in the store, a listener that writes progress
and the log, so that the job survives a crash). It prepares the model data, runs the instances
on a backend, applies the attempt policy to the item of an instance that dies, writes the data
capture manifests, and decides the final status and FailureReason. A backend only runs
instances; the scheduler only keeps leases and capacity.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from conveyor.engine.assembly import AssemblyStopped, assemble
from conveyor.engine.backend import Backend, InstanceEvents, InstanceLost, JobStartFailed
from conveyor.engine.data_capture import capture_failure, write_capture_manifests
from conveyor.engine.errors_manifest import errors_manifest_uri, write_errors_manifest
from conveyor.engine.figures import InstanceTotals, JobFigures, records_text
from conveyor.engine.gpus import plan_gpus
from conveyor.engine.instance import InstanceConfig, ResolvedParameters
from conveyor.engine.ledger import SKIPPED_SHARD, Ledger, LedgerSummary
from conveyor.engine.local import LocalBackend
from conveyor.engine.model_code import prepare_handler_code
from conveyor.engine.model_data import ModelDataError, model_directory
from conveyor.engine.requirements import RequirementsError
from conveyor.errors import cut_failure_reason
from conveyor.pipeline.bisect import FailedRecord
from conveyor.pipeline.shards import can_shard, shard_ranges, shift_record_numbers
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.runtimes.environment import batch_environment
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings
from conveyor.storage.base import Storage, StorageError
from conveyor.storage.inputs import InputError, InputObject, iter_inputs, output_uri

MAX_INSTANCE_LOSSES_PER_ITEM = 3
"""An item whose instance dies this many times (other than by a timeout) fails."""


def plan_work_items(job: TransformJobSpec, settings: Settings) -> list[WorkItem]:
    """One work item per input object, in key order, or one per shard of an object larger than
    the shard size whose records can be cut (raises InputError when there are none). Planning
    reads no object: a shard is a nominal byte range, whose reader finds its own records."""
    return list(iter_work_items(job, settings))


@dataclass(frozen=True)
class ListedSoFar:
    """How far an interrupted listing of a job's inputs had got (a server's job resumed while
    it was listing): its first `objects` objects, the last of them `last_input_uri`, are planned,
    and the next item is numbered `next_item_id`."""

    objects: int
    last_input_uri: str
    next_item_id: int


def iter_work_items(job: TransformJobSpec, settings: Settings, so_far: ListedSoFar | None = None) -> Iterator[WorkItem]:
    """`plan_work_items`, item by item as the inputs are listed (after those listed `so_far`)."""
    inputs = iter_inputs(job.input.data_type, job.input.uri, settings.storage_for, region=settings.region)
    shard_size = settings.shard_size_bytes(instances_for(job.resources.instance_count, settings)) if can_shard(job.input.split_type, job.input.compression) else 0
    item_id = 0
    if so_far is not None:
        inputs = _after(inputs, so_far, job.input.uri)
        item_id = so_far.next_item_id
    for obj in inputs:
        output = output_uri(job.output.output_path, obj.relative)
        ranges = shard_ranges(obj.size, shard_size)
        if len(ranges) == 1:
            yield WorkItem(item_id=item_id, input_uri=obj.uri, output_uri=output, size=obj.size)
            item_id += 1
            continue
        for shard, (start, end) in enumerate(ranges):
            yield WorkItem(
                item_id=item_id, input_uri=obj.uri, output_uri=output, size=obj.size,
                shard=shard, shards=len(ranges), range_start=start, range_end=end,
            )
            item_id += 1


def _after(inputs: Iterator[InputObject], so_far: ListedSoFar, source: str) -> Iterator[InputObject]:
    """The inputs after those listed so far, which must still be the same: objects added or
    removed before them since would shift what the listing goes on with."""
    seen: InputObject | None = None
    for _ in range(so_far.objects):
        seen = next(inputs, None)
        if seen is None:
            break
    if seen is None or seen.uri != so_far.last_input_uri:
        now = "ends before it" if seen is None else f"is now {seen.uri}"
        raise InputError(
            f"The input data source {source} changed while the job was interrupted: its object number {so_far.objects} "
            f"was {so_far.last_input_uri} and {now}; the listing cannot go on where it stopped."
        )
    yield from inputs


def instances_for(instance_count: int, settings: Settings) -> int:
    """How many instances a job of InstanceCount `instance_count` runs, within this machine's capacity."""
    return max(min(instance_count, settings.capacity), 1)


def start_time_text(moment: datetime) -> str:
    """SageMaker's inference-time form, `2022-08-30T00:49:15Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_config(
    job: TransformJobSpec, model: ModelSpec, settings: Settings, *, started_at: datetime, log: Callable[[str], None] = lambda _: None
) -> InstanceConfig:
    """Everything an instance needs, with the model artifacts fetched and unpacked, each
    handler's script-mode sources and requirements prepared, and each instance's GPUs assigned
    (what is worth saying, to `log`)."""
    # On Ray, each actor is given its type's GPUs by Ray (engine.ray_backend); here, by plan_gpus, before any download.
    gpus = None if settings.backend == "ray" else plan_gpus(job.resources.instance_type, instances_for(job.resources.instance_count, settings), settings, log)
    cache_dir = os.path.join(settings.home, "cache", "models")
    model_dirs: list[str] = []
    model_data: list[tuple[str, str]] = []
    code = []
    for container in model.containers:
        model_dir = model_directory(container.model_data_url, cache_dir, settings.storage_for) if container.model_data_url else None
        if model_dir is not None and container.model_data_url:
            model_dirs.append(model_dir)
            model_data.append((container.model_data_url, cache_dir))
        code.append(prepare_handler_code(container, model_dir, settings, log))
    model_env: dict[str, str] = {}
    for container in model.containers:
        model_env.update(container.environment)
    environment = batch_environment(
        model_env=model_env,
        job_env=job.environment,
        max_concurrent_transforms=job.max_concurrent_transforms or None,
        batch_strategy=job.batch_strategy,
        max_payload_mb=job.max_payload_mb,
    )
    return InstanceConfig.for_job(
        job,
        model,
        model_dirs=tuple(model_dirs),
        model_data=tuple(model_data),
        handler_code=tuple(code),
        environment=environment,
        start_time=start_time_text(started_at),
        retry_backoff_seconds=settings.retry_backoff_seconds,
        s3_options={"s3_config": settings.s3_config()},
        startup_timeout_seconds=settings.container_startup_timeout_seconds,
        gpus=gpus,
    )


class JobListener:
    """Watches a job run (a progress bar, the store); the default ignores everything. Called
    from the backend's thread, after the ledger has recorded the event."""

    def on_resolved(self, resolved: ResolvedParameters) -> None: ...

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None: ...

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        """Items recorded done, a group at a time (a sharded object's shard only once its object
        is assembled)."""

    def on_item_failed(self, item: WorkItem, reason: str) -> None: ...

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None: ...

    def on_figures(self, records_per_second: float, busy_fraction: float, *, final: bool = False) -> None:
        """The job's records/s and the model's busy fraction (`engine.figures`): over a recent
        window while it runs, and once more over the whole run (`final`) when it ends."""


@dataclass
class JobOutcome:
    status: str  # Completed | Failed | Stopped
    failure_reason: str | None = None
    resolved: ResolvedParameters | None = None
    objects_total: int = 0
    objects_done: int = 0  # earlier runs' included, after a resume
    objects_failed: int = 0
    records: int = 0  # transformed by this run


class _JobRun(InstanceEvents):
    """A backend's events applied to the ledger, with the attempt policy, then passed on."""

    def __init__(
        self, job: TransformJobSpec, ledger: Ledger, listener: JobListener, stop: threading.Event, storage_for: Callable[[str], Storage]
    ) -> None:
        self.job = job
        self.ledger = ledger
        self.stop = stop
        self.storage_for = storage_for
        self.lost_outputs: set[str] = set()  # outputs an instance died writing: their temporaries are swept
        self.over_limit = False  # more records failed than the job's limit allows: it is being ended
        self.failed_records = self.records_seen = 0
        if job.max_failed_records is not None:  # a resumed job's earlier runs count too
            earlier = ledger.summary()
            self.failed_records, self.records_seen = len(earlier.failed_records), earlier.records
        self.listener = listener
        self.resolved: ResolvedParameters | None = None
        self.records = 0
        self.figures = JobFigures()
        self.unassembled: set[str] = set()  # outputs of sharded objects seen in this run and not assembled: their pieces are swept
        self.failed_objects: set[str] = set()  # outputs of sharded objects one of whose shards failed: the rest are not run
        self._assembly = threading.Lock()  # one shard at a time decides whether it is its object's last

    def on_started(self, instance: int, resolved: ResolvedParameters) -> None:
        self.figures.started(instance)
        if self.resolved is None:
            self.resolved = resolved
            self.listener.on_resolved(resolved)
        self.listener.on_log(instance, f"Instance {instance + 1} started: {resolved.log_line()}")

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None:
        self.listener.on_progress(item, progress)

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        """Whole objects are recorded as one group; a shard is recorded alone, and only once its
        object may be (`_shard_done`)."""
        whole = [(item, progress) for item, progress in done if not item.sharded]
        if whole:
            self.ledger.complete(whole)
        recorded: list[tuple[WorkItem, ItemProgress, int]] = []  # with the failed records of its object
        for item, progress in done:
            failed = len(progress.failed_records)
            if item.sharded:
                with self._assembly:
                    others = self._shard_done(item)
                    if others is None:
                        continue
                    failed += sum(count for _, count in others.values())
                    self.ledger.complete([(item, progress)])
            recorded.append((item, progress, failed))
        records = sum(progress.records for _, progress, _ in recorded)
        self.records += records
        self.listener.on_items_done([(item, progress) for item, progress, _ in recorded])
        for item, _, failed in recorded:
            if failed and (not item.sharded or item.output_uri not in self.unassembled):
                self.listener.on_log(0, f"{item.input_uri}: {records_text(failed)} failed; their outputs are empty lines.")
        self._count_failed_records(sum(len(progress.failed_records) for _, progress, _ in recorded), records)

    def _shard_done(self, item: WorkItem) -> dict[int, tuple[int, int]] | None:
        """The other done shards of the object, once the shard may be recorded done (None: it may
        not). The last shard of its object is recorded done only once the object is assembled,
        so that a done object always has its output; a failed assembly fails the object, and a
        Stop leaves the shard unfinished."""
        self.unassembled.add(item.output_uri)
        others = self.ledger.done_shards(item)
        if item.shard == 0:
            self.listener.on_log(0, f"{item.input_uri}: {item.shards} shards")
        if len(others) + 1 < item.shards or item.shard in others:
            return others
        try:
            assemble(item, self.storage_for, self.stop, kms_key_id=self.job.output.kms_key_id)
        except AssemblyStopped:
            return None
        except StorageError as exc:
            self.on_item_failed(item, f"{item.input_uri}: assembling its {item.shards} shards into {exc}")
            return None
        self.unassembled.discard(item.output_uri)
        return others

    def _count_failed_records(self, failed: int, records: int) -> None:
        """A limit on failed records is checked as they fail: past it, the job ends Failed."""
        limit = self.job.max_failed_records
        if limit is None:
            return
        self.failed_records += failed
        self.records_seen += records
        if not self.over_limit and limit.exceeded(self.failed_records, self.records_seen, final=False):
            self.over_limit = True
            self.listener.on_log(0, f"{records_text(self.failed_records)} failed, more than CONVEYOR_MAX_FAILED_RECORDS={limit} allows; ending the job.")
            self.stop.set()

    def on_item_failed(self, item: WorkItem, reason: str, failed_records: list[FailedRecord] | None = None) -> None:
        if item.sharded:
            self.unassembled.add(item.output_uri)
            self.failed_objects.add(item.output_uri)
            reason = self._numbered_in_object(item, reason)
        self.ledger.fail(item, reason, failed_records or [])
        self.listener.on_item_failed(item, reason)
        self._count_failed_records(len(failed_records or []), 0)

    def _numbered_in_object(self, item: WorkItem, reason: str) -> str:
        """A shard's failure with its record numbers made the object's: the records of the
        shards before it are known once they are all done (else the shard's own numbers stay,
        and the reason says from where they count)."""
        done = self.ledger.done_shards(item)
        if all(shard in done for shard in range(item.shard)):
            return shift_record_numbers(reason, item.input_uri, sum(done[shard][0] for shard in range(item.shard)))
        return f"{reason} (record numbers count from shard {item.shard + 1} of {item.shards}, at byte {item.range_start})"

    def listing(self) -> bool:
        return self.ledger.listing() and not self.stop.is_set()

    def take(self) -> WorkItem | None:
        """The ledger's next item to run (the backend's ItemSource). A shard of an object that
        has already failed is failed at once instead: the object cannot be assembled."""
        while (item := self.ledger.take()) is not None:
            if not (item.sharded and item.output_uri in self.failed_objects):
                return item
            reason = f"{item.input_uri}: shard {item.shard + 1} of {item.shards} {SKIPPED_SHARD}"
            self.ledger.fail(item, reason, [])
            self.listener.on_item_failed(item, reason)
        return None

    def give_back(self, item: WorkItem) -> None:
        self.ledger.give_back(item)

    def on_instance_lost(self, item: WorkItem | None, lost: InstanceLost) -> None:
        """A timed-out payload has spent one invocation, and its item fails once that leaves
        none of InvocationsMaxRetries (in a job that tolerates failed records, the item goes on
        and that payload's records count as failed); any other death counts against the item,
        which fails after MAX_INSTANCE_LOSSES_PER_ITEM of them. Otherwise the item is handed out
        again."""
        number = lost.instance + 1
        if item is None:
            self.listener.on_log(lost.instance, f"Instance {number} exited with code {lost.exit_code}; starting it again")
            return
        written = self.storage_for(item.output_uri).piece_uri(item.output_uri, item.shard) if item.sharded else item.output_uri
        self.lost_outputs.add(written)
        self.sweep(written)
        if lost.timed_out_payload is not None:
            payload = lost.timed_out_payload
            used = {**item.attempts_used, payload: item.attempts_used.get(payload, 0) + 1}
            self.listener.on_log(
                lost.instance,
                f"{item.input_uri}: payload {payload + 1} took longer than InvocationsTimeoutInSeconds="
                f"{lost.timeout_seconds:g}; restarting instance {number}",
                data_log=True,
            )
            retries = self.job.model_client.invocations_max_retries
            if used[payload] > retries and self.job.max_failed_records is None:  # a tolerant job counts its records as failed
                self.on_item_failed(
                    item,
                    f"{item.input_uri}: the model did not answer within InvocationsTimeoutInSeconds={lost.timeout_seconds:g} "
                    f"in {used[payload]} attempts (InvocationsMaxRetries={retries})",
                )
                return
            self.ledger.give_back(replace(item, attempts_used=used))
            return
        losses = item.instance_losses + 1
        self.listener.on_log(lost.instance, f"Instance {number} exited with code {lost.exit_code} while transforming {item.input_uri}")
        if losses >= MAX_INSTANCE_LOSSES_PER_ITEM:
            reason = f"{item.input_uri}: Unable to get response from the model: its instance exited with code {lost.exit_code} {losses} times"
            self.on_item_failed(item, reason)
            return
        self.ledger.give_back(replace(item, instance_losses=losses))

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        self.listener.on_log(instance, message, data_log=data_log)

    def on_figures(self, instance: int, totals: InstanceTotals) -> None:
        line = self.figures.report(instance, totals)
        if line is not None:
            self.listener.on_log(instance, line)
        live = self.figures.live()
        if live is not None:
            self.listener.on_figures(live.records_per_second, live.busy_fraction)

    def report_whole_run(self) -> None:
        """Each instance's figures over the whole run into the job log, the job's to the listener."""
        for instance, line in self.figures.final_lines():
            self.listener.on_log(instance, line)
        whole = self.figures.whole()
        if whole is not None:
            self.listener.on_figures(whole.records_per_second, whole.busy_fraction, final=True)

    def sweep(self, output_uri: str) -> None:
        """Remove what a dead instance left half-written for `output_uri` (its writer never aborted)."""
        try:
            self.storage_for(output_uri).sweep_temporaries(output_uri)
        except StorageError as exc:
            self.listener.on_log(0, f"Could not remove the temporaries of {output_uri}: {exc.code}: {exc.detail}")


def run_job(
    job: TransformJobSpec,
    model: ModelSpec,
    settings: Settings,
    *,
    ledger: Ledger,
    listener: JobListener | None = None,
    stop: threading.Event | None = None,
    backend: Backend | None = None,
    started_at: datetime | None = None,
) -> JobOutcome:
    """Run a planned job to its end; never raises for a job-level failure (it is the outcome).

    A job stopped (`stop` set) ends Stopped with no capture written; the caller decides
    whether that is a Stop or a server shutting down, after which the job resumes."""
    stop = stop or threading.Event()
    listener = listener or JobListener()
    started_at = started_at or datetime.now(timezone.utc)
    run = _JobRun(job, ledger, listener, stop, settings.storage_for)
    try:
        config = instance_config(job, model, settings, started_at=started_at, log=lambda line: listener.on_log(0, line))
        (backend or LocalBackend()).run(config, instances_for(job.resources.instance_count, settings), run, run, stop)
    except RequirementsError as exc:
        listener.on_log(0, str(exc))
        return _outcome("Failed", cut_failure_reason(f"ClientError: {exc}"), run, ledger.summary())
    except (JobStartFailed, ModelDataError) as exc:
        return _outcome("Failed", cut_failure_reason(f"ClientError: {exc}"), run, ledger.summary())
    run.report_whole_run()
    for lost_output in run.lost_outputs | run.unassembled:  # an instance killed at the end leaves its writer's temporaries too
        run.sweep(lost_output)
    if stop.is_set() and not run.over_limit:
        return _outcome("Stopped", None, run, ledger.summary())
    summary = ledger.summary()
    reason = None
    noun = "object" if summary.total == 1 else "objects"
    if summary.failed:
        reason = f"{summary.failed} of {summary.total} input {noun} failed. First: {summary.first_failure}"
    elif summary.done < summary.total and not run.over_limit:  # a fault of Conveyor's own: never reported as a whole job
        missing = summary.total - summary.done
        reason = f"InternalServerError: {missing} of {summary.total} input {noun} {'was' if missing == 1 else 'were'} not transformed"
    if job.max_failed_records is not None:
        reason = _failed_records_reason(job, summary, settings, listener, reason, over_limit=run.over_limit)
    if job.data_capture is not None and summary.done + summary.failed:
        try:
            manifests = write_capture_manifests(
                job.data_capture, job_name=job.name, started_at=started_at, inputs=summary.input_uris,
                outputs=summary.done_output_uris, storage_for=settings.storage_for, output_path=job.output.output_path,
            )
            listener.on_log(0, f"Data capture manifests: {', '.join(manifests)}")
        except StorageError as exc:
            reason = reason or capture_failure(exc)
    return _outcome("Failed" if reason else "Completed", cut_failure_reason(reason) if reason else None, run, summary)


def _failed_records_reason(
    job: TransformJobSpec, summary: LedgerSummary, settings: Settings, listener: JobListener, reason: str | None, *, over_limit: bool
) -> str | None:
    """Write the errors manifest of a job that tolerates failed records; the job's FailureReason
    when more records failed than its limit allows (the manifest is written all the same)."""
    limit = job.max_failed_records
    assert limit is not None
    failed = len(summary.failed_records)
    if not failed and not reason:
        return None
    uri = errors_manifest_uri(job.output.output_path, job.name)
    try:
        write_errors_manifest(uri, summary.failed_records, settings.storage_for, kms_key_id=job.output.kms_key_id)
    except StorageError as exc:
        return reason or f"ClientError: Could not write the errors manifest {exc.uri}: {exc.code}: {exc.detail}"
    listener.on_log(0, f"{records_text(failed)} failed in all; the errors manifest {uri} lists them.")
    if over_limit or limit.exceeded(failed, summary.records, final=True):
        return (
            f"More records failed than CONVEYOR_MAX_FAILED_RECORDS={limit} allows: {failed} of {summary.records} records failed. "
            f"The errors manifest {uri} lists them."
        )
    return f"{reason} The errors manifest {uri} lists the records that failed." if reason else None


def _outcome(status: str, reason: str | None, run: _JobRun, summary: LedgerSummary) -> JobOutcome:
    return JobOutcome(
        status=status, failure_reason=reason, resolved=run.resolved, objects_total=summary.total,
        objects_done=summary.done, objects_failed=summary.failed, records=run.records,
    )
