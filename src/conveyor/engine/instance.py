"""What one instance needs to run a job's work items: picklable, so it crosses into a worker
process or a Ray actor as it is.

`InstanceConfig.start()` loads the model and resolves the execution parameters (job value →
the runtime's `/execution-parameters` → defaults, as SageMaker does); the returned `Instance`
then transforms work items one at a time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from conveyor.engine.model_data import model_directory
from conveyor.pipeline.busy import BusyMeter
from conveyor.pipeline.invoke import InvocationWatch
from conveyor.pipeline.item_groups import transform_together
from conveyor.pipeline.join import InferenceIdConfig
from conveyor.pipeline.work_item import ItemProgress, PipelineConfig, Preview, WorkItem, WorkItemFailed, one_payload, process_work_item
from conveyor.runtimes.base import Runtime
from conveyor.runtimes.handler_code import HandlerCode
from conveyor.runtimes.registry import create_runtime
from conveyor.sagemaker.jsonpath import parse_filter
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import DataProcessing, TransformJobSpec
from conveyor.storage import Storage, storage_for

DEFAULT_MAX_CONCURRENT_TRANSFORMS = 1
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_BATCH_STRATEGY = "MultiRecord"


@dataclass(frozen=True)
class ResolvedParameters:
    max_concurrent_transforms: int
    max_payload_mb: int
    batch_strategy: str

    def log_line(self) -> str:
        strategy = "MULTI_RECORD" if self.batch_strategy == "MultiRecord" else "SINGLE_RECORD"
        return (
            f"MaxConcurrentTransforms={self.max_concurrent_transforms}, "
            f"MaxPayloadInMB={self.max_payload_mb}, BatchStrategy={strategy}"
        )

    def as_request_fields(self) -> dict[str, object]:
        return {
            "MaxConcurrentTransforms": self.max_concurrent_transforms,
            "MaxPayloadInMB": self.max_payload_mb,
            "BatchStrategy": self.batch_strategy,
        }


@dataclass(frozen=True)
class InstanceConfig:
    job_name: str
    model: ModelSpec
    model_dirs: tuple[str, ...]  # one prepared model directory per container with ModelDataUrl
    environment: dict[str, str]
    job_max_concurrent: int | None
    job_max_payload_mb: int | None
    job_batch_strategy: str | None
    pipeline: PipelineConfig  # execution parameters filled in by start()
    input_filter: str | None = None  # filters travel as text; parsed objects stay in-process
    output_filter: str | None = None
    join_source: str = "None"
    generate_inference_id_at: str | None = None
    s3_options: dict[str, object] = field(default_factory=dict)
    instance_type: str = "local"
    startup_timeout_seconds: float = 600.0
    handler_code: tuple[HandlerCode | None, ...] = ()  # per container: script-mode sources, installed requirements
    gpus: tuple[tuple[str, ...], ...] | None = None  # per instance: the GPU devices it sees (engine.gpus); None: the machine's
    model_data: tuple[tuple[str, str], ...] = ()  # per model directory: its ModelDataUrl and the cache it was unpacked into

    @classmethod
    def for_job(
        cls,
        job: TransformJobSpec,
        model: ModelSpec,
        *,
        model_dirs: tuple[str, ...],
        model_data: tuple[tuple[str, str], ...] = (),
        environment: dict[str, str],
        handler_code: tuple[HandlerCode | None, ...] = (),
        start_time: str,
        retry_backoff_seconds: float,
        s3_options: dict[str, object] | None = None,
        startup_timeout_seconds: float = 600.0,
        gpus: tuple[tuple[str, ...], ...] | None = None,
    ) -> "InstanceConfig":
        processing = job.data_processing
        pipeline = PipelineConfig(
            split_type=job.input.split_type,
            compression=job.input.compression,
            content_type=job.input.content_type,
            accept=job.output.accept,
            timeout_seconds=job.model_client.invocations_timeout_seconds,
            max_retries=job.model_client.invocations_max_retries,
            assemble_with=job.output.assemble_with,
            kms_key_id=job.output.kms_key_id,
            retry_backoff_seconds=retry_backoff_seconds,
            tolerate_failed_records=job.max_failed_records is not None,
            max_failed_records=job.max_failed_records.count if job.max_failed_records else None,
        )
        capture = job.data_capture
        if job.decode_workers is not None:  # the job's CONVEYOR_DECODE_WORKERS wins over its containers', as job values do
            model = replace(model, containers=[replace(container, decode_workers=job.decode_workers) for container in model.containers])
        return cls(
            job_name=job.name,
            model=model,
            model_dirs=model_dirs,
            model_data=model_data,
            handler_code=handler_code,
            environment=environment,
            job_max_concurrent=job.max_concurrent_transforms or None,
            job_max_payload_mb=job.max_payload_mb,
            job_batch_strategy=job.batch_strategy,
            pipeline=pipeline,
            input_filter=processing.input_filter.expression if processing.input_filter else None,
            output_filter=processing.output_filter.expression if processing.output_filter else None,
            join_source=processing.join_source,
            generate_inference_id_at=start_time if capture and capture.generate_inference_id else None,
            s3_options=s3_options or {},
            instance_type=job.resources.instance_type,
            startup_timeout_seconds=startup_timeout_seconds,
            gpus=gpus,
        )

    def start(self, instance: int = 0) -> "Instance":
        """Load the model for instance number `instance` (0-based) of the job."""
        runtime = create_runtime(
            self.model,
            self._model_dirs_here(),
            self.environment,
            job_name=self.job_name,
            instance=instance,
            instance_type=self.instance_type,
            startup_timeout=self.startup_timeout_seconds,
            code=self.handler_code,
            gpus=self.gpus[instance] if self.gpus is not None else None,
        )
        runtime.start()
        try:
            wanted = runtime.execution_parameters()
            resolved = ResolvedParameters(
                max_concurrent_transforms=self.job_max_concurrent or wanted.max_concurrent_transforms or DEFAULT_MAX_CONCURRENT_TRANSFORMS,
                max_payload_mb=_first_set(self.job_max_payload_mb, wanted.max_payload_mb, DEFAULT_MAX_PAYLOAD_MB),
                batch_strategy=self.job_batch_strategy or wanted.batch_strategy or DEFAULT_BATCH_STRATEGY,
            )
            pipeline = replace(
                self.pipeline,
                batch_strategy=resolved.batch_strategy,
                max_payload_bytes=resolved.max_payload_mb << 20,
                max_concurrent=runtime.payloads_in_flight(resolved.max_concurrent_transforms),
                payloads_per_call=runtime.payloads_per_call(),
                payload_group_bytes=runtime.payload_group_bytes(),
                data_processing=self._data_processing(),
                inference_id=InferenceIdConfig(start_time=self.generate_inference_id_at) if self.generate_inference_id_at else None,
            )
        except BaseException:
            runtime.close()
            raise
        return Instance(runtime, pipeline, resolved, self.s3_options)

    def _model_dirs_here(self) -> list[str]:
        """The model directories, each fetched again from its ModelDataUrl into the same cache
        path where this machine lacks it: an instance on another node of a Ray cluster does not
        see the driver's cache (docs/scale.md)."""
        if all(os.path.isdir(directory) for directory in self.model_dirs) or len(self.model_data) != len(self.model_dirs):
            return list(self.model_dirs)
        return [
            directory if os.path.isdir(directory) else model_directory(url, cache_dir, self.storage_for)
            for directory, (url, cache_dir) in zip(self.model_dirs, self.model_data)
        ]

    def storage_for(self, uri: str) -> Storage:
        options: dict[str, Any] = self.s3_options
        return storage_for(uri, **options)

    def _data_processing(self) -> DataProcessing:
        content_type, accept = self.pipeline.content_type, self.pipeline.accept
        return DataProcessing(
            input_filter=parse_filter(self.input_filter, content_type=content_type, field="InputFilter") if self.input_filter else None,
            output_filter=parse_filter(self.output_filter, content_type=accept or content_type, field="OutputFilter") if self.output_filter else None,
            join_source=self.join_source,  # type: ignore[arg-type]
        )


def _first_set(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value set")


class Instance:
    """A started instance: a loaded model plus the resolved pipeline configuration."""

    def __init__(self, runtime: Runtime, pipeline: PipelineConfig, resolved: ResolvedParameters, s3_options: dict[str, Any]) -> None:
        self.runtime = runtime
        self.busy = BusyMeter()  # one for the instance: the items it transforms at once share the model
        self.pipeline = pipeline
        self.resolved = resolved
        self.storage_for: Callable[[str], Storage] = functools.partial(storage_for, **s3_options)

    def process(
        self,
        item: WorkItem,
        on_progress: Callable[[ItemProgress], None],
        *,
        watch: InvocationWatch | None = None,
        log: Callable[[str], None] | None = None,
        preview: Preview | None = None,
    ) -> ItemProgress:
        return process_work_item(
            item, self.pipeline, self.runtime, self.storage_for, on_progress, watch=watch, log=log, preview=preview, busy=self.busy
        )

    def process_together(
        self, items: list[WorkItem], *, watch_for: Callable[[WorkItem], InvocationWatch | None], log: Callable[[str], None] | None = None
    ) -> list[ItemProgress | WorkItemFailed]:
        """Objects that are one payload each (`sends_whole`), their payloads sent to the runtime
        in one call (pipeline.item_groups); each one's progress, or why it failed."""
        return transform_together(items, self.pipeline, self.runtime, self.storage_for, watch_for=watch_for, log=log, busy=self.busy)

    def sends_whole(self, item: WorkItem) -> bool:
        """Whether the object goes to the model as one payload (pipeline.work_item.one_payload)."""
        return one_payload(item, self.pipeline)

    @property
    def objects_per_call(self) -> int:
        """How many objects of one payload each the runtime takes in one call (`Runtime.payloads_per_call`)."""
        return self.pipeline.payloads_per_call

    @property
    def items_at_once(self) -> int:
        """How many small objects the instance transforms at once: more than one only where the
        runtime gathers inputs across them (cross-record batching) or decodes them in workers."""
        return self.runtime.items_at_once(self.resolved.max_concurrent_transforms)

    def close(self) -> None:
        self.runtime.close()
