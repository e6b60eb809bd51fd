"""The typed CreateTransformJob request: what a job asks for, after validation.

`parse_transform_job` turns SageMaker's JSON shape into these objects or raises
`ValidationException` listing every broken rule. The original request is kept (`request`) so
Describe can echo exactly what the caller sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.spec.jsonpath import JsonPath

SplitType = Literal["None", "Line", "RecordIO", "TFRecord"]
BatchStrategy = Literal["MultiRecord", "SingleRecord"]
DEFAULT_INVOCATIONS_TIMEOUT_SECONDS = 600
DEFAULT_INVOCATIONS_MAX_RETRIES = 3


@dataclass(frozen=True)
class TransformInput:
    data_type: Literal["S3Prefix", "ManifestFile"]
    uri: str
    content_type: str | None = None
    compression: Literal["None", "Gzip"] = "None"
    split_type: SplitType = "None"


@dataclass(frozen=True)
class TransformOutput:
    output_path: str
    accept: str | None = None
    assemble_with: Literal["None", "Line"] = "None"
    kms_key_id: str | None = None


@dataclass(frozen=True)
class TransformResources:
    instance_type: str
    instance_count: int
    volume_kms_key_id: str | None = None


@dataclass(frozen=True)
class ModelClientConfig:
    invocations_timeout_seconds: int = DEFAULT_INVOCATIONS_TIMEOUT_SECONDS
    invocations_max_retries: int = DEFAULT_INVOCATIONS_MAX_RETRIES


@dataclass(frozen=True)
class DataProcessing:
    """Filters parsed at create time; `None` filters mean `$` (the whole record)."""

    input_filter: JsonPath | None = None
    output_filter: JsonPath | None = None
    join_source: Literal["Input", "None"] = "None"

    @property
    def is_identity(self) -> bool:
        return self.input_filter is None and self.output_filter is None and self.join_source == "None"


@dataclass(frozen=True)
class DataCaptureConfig:
    destination_uri: str
    kms_key_id: str | None = None
    generate_inference_id: bool = False


@dataclass(frozen=True)
class TransformJobSpec:
    name: str
    model_name: str
    input: TransformInput
    output: TransformOutput
    resources: TransformResources
    max_concurrent_transforms: int | None = None  # None or 0: ask the runtime, then 1
    max_payload_mb: int | None = None  # None: ask the runtime, then 6; 0: no limit
    batch_strategy: BatchStrategy | None = None  # None: ask the runtime, then MultiRecord
    model_client: ModelClientConfig = field(default_factory=ModelClientConfig)
    environment: dict[str, str] = field(default_factory=dict)
    data_processing: DataProcessing = field(default_factory=DataProcessing)
    data_capture: DataCaptureConfig | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
