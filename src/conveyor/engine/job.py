"""Running one transform job: plan its work items, prepare the model, run the instances.

Used as it is by `conveyor transform` (in the foreground) and by the server's scheduler (which
passes a store-backed item source and listener, so that progress survives a crash).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from conveyor.engine.backend import Backend, ItemSource, JobListener, JobStartFailed, QueueSource
from conveyor.engine.instance import InstanceConfig, ResolvedParameters
from conveyor.engine.local import LocalBackend
from conveyor.engine.model_data import ModelDataError, model_directory
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.runtimes.environment import batch_environment
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings
from conveyor.storage.inputs import list_inputs, output_uri

FAILURE_REASON_LIMIT = 1024


def plan_work_items(job: TransformJobSpec, settings: Settings) -> list[WorkItem]:
    """One work item per input object, in key order (raises InputError when there are none)."""
    inputs = list_inputs(job.input.data_type, job.input.uri, settings.storage_for, region=settings.region)
    return [
        WorkItem(item_id=index, input_uri=obj.uri, output_uri=output_uri(job.output.output_path, obj.relative), size=obj.size)
        for index, obj in enumerate(inputs)
    ]


def start_time_text(moment: datetime) -> str:
    """SageMaker's inference-time form, `2022-08-30T00:49:15Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_config(job: TransformJobSpec, model: ModelSpec, settings: Settings, *, started_at: datetime) -> InstanceConfig:
    """Everything an instance needs, with the model artifacts fetched and unpacked."""
    cache_dir = os.path.join(settings.home, "cache", "models")
    model_dirs = []
    for container in model.containers:
        if container.model_data_url:
            model_dirs.append(model_directory(container.model_data_url, cache_dir, settings.storage_for))
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
        environment=environment,
        start_time=start_time_text(started_at),
        retry_backoff_seconds=settings.retry_backoff_seconds,
        s3_options={"s3_config": settings.s3_config()},
        startup_timeout_seconds=settings.container_startup_timeout_seconds,
    )


@dataclass
class JobOutcome:
    status: str  # Completed | Failed | Stopped
    failure_reason: str | None = None
    resolved: ResolvedParameters | None = None
    objects_done: int = 0
    objects_failed: int = 0
    records: int = 0
    failures: list[str] = field(default_factory=list)


class _Tally(JobListener):
    """Counts outcomes for the job's final status, and passes every event on."""

    def __init__(self, outcome: JobOutcome, downstream: JobListener) -> None:
        self.outcome = outcome
        self.downstream = downstream

    def on_resolved(self, resolved: ResolvedParameters) -> None:
        self.outcome.resolved = resolved
        self.downstream.on_resolved(resolved)

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None:
        self.downstream.on_progress(item, progress)

    def on_item_done(self, item: WorkItem, progress: ItemProgress) -> None:
        self.outcome.objects_done += 1
        self.outcome.records += progress.records
        self.downstream.on_item_done(item, progress)

    def on_item_failed(self, item: WorkItem, reason: str) -> None:
        self.outcome.objects_failed += 1
        self.outcome.failures.append(reason)
        self.downstream.on_item_failed(item, reason)

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        self.downstream.on_log(instance, message, data_log=data_log)


def run_job(
    job: TransformJobSpec,
    model: ModelSpec,
    settings: Settings,
    *,
    items: ItemSource | list[WorkItem],
    listener: JobListener | None = None,
    stop: threading.Event | None = None,
    backend: Backend | None = None,
    started_at: datetime | None = None,
    instance_count: int | None = None,
) -> JobOutcome:
    """Run a planned job to its end; never raises for a job-level failure (it is the outcome)."""
    outcome = JobOutcome(status="Completed")
    stop = stop or threading.Event()
    tally = _Tally(outcome, listener or JobListener())
    source = QueueSource(items) if isinstance(items, list) else items
    try:
        config = instance_config(job, model, settings, started_at=started_at or datetime.now(timezone.utc))
        count = instance_count or max(min(job.resources.instance_count, settings.capacity), 1)
        (backend or LocalBackend()).run(config, count, source, tally, stop)
    except (JobStartFailed, ModelDataError) as exc:
        return JobOutcome(status="Failed", failure_reason=_truncate(f"ClientError: {exc}"), resolved=outcome.resolved)
    if stop.is_set():
        outcome.status = "Stopped"
    elif outcome.objects_failed:
        outcome.status = "Failed"
        total = outcome.objects_done + outcome.objects_failed
        noun = "object" if total == 1 else "objects"
        outcome.failure_reason = _truncate(f"{outcome.objects_failed} of {total} input {noun} failed. First: {outcome.failures[0]}")
    return outcome


def _truncate(text: str) -> str:
    return text if len(text) <= FAILURE_REASON_LIMIT else text[: FAILURE_REASON_LIMIT - 1] + "…"


