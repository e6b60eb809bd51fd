"""The operations every front end shares: SageMaker's, CloudWatch Logs', and Conveyor's own
progress and log views, over one store and one scheduler."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Sequence

from conveyor.engine.backend import Backend
from conveyor.engine.errors_manifest import errors_manifest_uri
from conveyor.engine.local import LocalBackend
from conveyor.engine.scheduler import Scheduler
from conveyor.errors import job_not_found
from conveyor.sagemaker.extensions import MAX_FAILED_RECORDS
from conveyor.service.logs import LOG_GROUP, LogOperations
from conveyor.service.operations import SageMakerOperations
from conveyor.service.wire import describe_transform_job
from conveyor.settings import Settings
from conveyor.store import STATUSES, TERMINAL, Progress, Store, TransformJobRecord, UnreadableDatabase
from conveyor.store.work_items import DONE

__all__ = ["DATABASE_FILE", "JOB_STATUSES", "JobProgress", "LOG_GROUP", "Service", "TERMINAL_STATUSES", "UnreadableDatabase"]

DATABASE_FILE = "conveyor.db"
"""The store's file in the state directory (CONVEYOR_HOME)."""

JOB_STATUSES: tuple[str, ...] = STATUSES
"""TransformJobStatus values in their life's order; the store's status machine owns them."""
TERMINAL_STATUSES: tuple[str, ...] = tuple(status for status in STATUSES if status in TERMINAL)
"""The statuses a job never leaves: Completed, Failed, Stopped."""

SAGEMAKER_OPERATIONS = (
    "CreateModel", "DescribeModel", "ListModels", "DeleteModel",
    "CreateTransformJob", "DescribeTransformJob", "ListTransformJobs", "StopTransformJob",
    "AddTags", "ListTags", "DeleteTags",
)
LOGS_OPERATIONS = ("DescribeLogStreams", "GetLogEvents", "FilterLogEvents")


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class Service:
    """Open a store under `settings.home`, and run its scheduler between `start()` and `close()`."""

    def __init__(self, settings: Settings, *, store: Store | None = None, backend_factory: Callable[[], Backend] = LocalBackend) -> None:
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.settings = settings
        self.store = store or Store(settings.home / DATABASE_FILE)
        self.scheduler = Scheduler(self.store, settings, backend_factory=backend_factory)
        self.sagemaker = SageMakerOperations(self.store, settings, on_change=self.scheduler.wake)
        self.logs = LogOperations(self.store, region=settings.region, account_id=settings.account_id)

    def start(self) -> "Service":
        self.scheduler.start()
        return self

    def close(self) -> None:
        self.scheduler.close()
        self.store.close()

    def operations(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """Every API operation by its full X-Amz-Target."""
        table = {f"SageMaker.{name}": getattr(self.sagemaker, _snake(name)) for name in SAGEMAKER_OPERATIONS}
        table.update({f"Logs_20140328.{name}": getattr(self.logs, _snake(name)) for name in LOGS_OPERATIONS})
        return table

    def written_outputs(self, job_name: str) -> frozenset[str]:
        """The output objects the job itself wrote (its finished items' outputs): all that the
        console may show of a job's output location, which other files may share."""
        return frozenset(item.output_uri for item in self.store.work_items.list(job_name, state=DONE))

    def progress(self, job_name: str) -> dict[str, Any]:
        """Conveyor's progress view of a job: objects, records, bytes, MB/s, ETA, records/s and the model's busy fraction."""
        found = self.jobs_progress([job_name])
        if job_name not in found:
            raise job_not_found(job_name)
        return found[job_name].progress

    def jobs_progress(self, job_names: Sequence[str]) -> dict[str, JobProgress]:
        """Each named job that exists with its progress view, in two queries however many are
        named: the console's list shows a page of jobs at once."""
        records = self.store.jobs.get_many(job_names)
        counters = self.store.jobs_progress(list(records))
        return {
            name: JobProgress(describe_transform_job(record), _progress_view(record, counters[name]))
            for name, record in records.items()
            if name in counters
        }


class JobProgress(NamedTuple):
    """A job as DescribeTransformJob answers it, with Conveyor's progress view of it."""

    description: dict[str, Any]
    progress: dict[str, Any]


def _progress_view(record: TransformJobRecord, progress: Progress) -> dict[str, Any]:
    now = record.transform_end_time or datetime.now(timezone.utc)
    listing = not record.inputs_listed and record.status not in TERMINAL  # the total counts the objects listed so far
    return {
        "TransformJobName": record.name,
        "TransformJobStatus": record.status,
        "ObjectsTotal": progress.objects_total,
        "ObjectsDone": progress.objects_done,
        "ObjectsFailed": progress.objects_failed,
        "ObjectsInFlight": progress.objects_in_flight,
        "Records": progress.records,
        "FailedRecords": progress.failed_records,
        "ErrorsManifest": _errors_manifest(record.name, record.request),
        "BytesIn": progress.bytes_in,
        "BytesOut": progress.bytes_out,
        "BytesTotal": progress.bytes_total,
        "ElapsedSeconds": progress.elapsed_seconds(now),
        "MegabytesPerSecond": progress.mb_per_second(now),
        "Listing": listing,
        "EtaSeconds": None if record.transform_end_time or listing else progress.eta_seconds(now),
        "RecordsPerSecond": progress.records_per_second,
        "ModelBusyFraction": progress.model_busy_fraction,
    }


def _errors_manifest(job_name: str, request: dict[str, Any]) -> str | None:
    """Where a job that tolerates failed records lists them; None for any other job."""
    if MAX_FAILED_RECORDS not in (request.get("Environment") or {}):
        return None
    return errors_manifest_uri(request["TransformOutput"]["S3OutputPath"], job_name)
