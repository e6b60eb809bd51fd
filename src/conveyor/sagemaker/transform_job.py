"""The typed CreateTransformJob request: what a job asks for, after validation.

`parse_transform_job` turns SageMaker's JSON shape into these objects or raises
`ValidationException` listing every broken rule. The original request is kept (`request`) so
Describe can echo exactly what the caller sent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from conveyor.errors import FieldError, ValidationException
from conveyor.sagemaker import extensions, jsonpath, shapes
from conveyor.sagemaker.extensions import FailedRecordLimit
from conveyor.sagemaker.instance_types import LOCAL_TYPES
from conveyor.sagemaker.jsonpath import JsonPath
from conveyor.sagemaker.locations import location_errors, normalize_location

if TYPE_CHECKING:
    from conveyor.sagemaker.shapes import Shape

SplitType = Literal["None", "Line", "RecordIO", "TFRecord"]
BatchStrategy = Literal["MultiRecord", "SingleRecord"]
DEFAULT_INVOCATIONS_TIMEOUT_SECONDS = 600
DEFAULT_INVOCATIONS_MAX_RETRIES = 3
DEFAULT_MAX_PAYLOAD_MB = 6
MAX_PAYLOAD_MB = 100  # documented: MaxPayloadInMB, and MaxConcurrentTransforms × MaxPayloadInMB
MAX_INSTANCE_COUNT = 100  # documented maximum; the model says only min 1
DATA_PROCESSING_TYPES = ("text/csv", "application/json", "application/jsonlines")
BATCH_DATA_TYPES = ("S3Prefix", "ManifestFile")


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
    max_failed_records: FailedRecordLimit | None = None  # Environment CONVEYOR_MAX_FAILED_RECORDS, consumed
    decode_workers: int | None = None  # Environment CONVEYOR_DECODE_WORKERS, consumed


def parse_transform_job(request: dict[str, Any]) -> TransformJobSpec:
    """Validate a CreateTransformJob request and type it; raises `ValidationException` listing
    every broken rule (the model's constraints, then the product rules the model cannot hold)."""
    errors = shapes.validate_request("CreateTransformJob", request, checks=_CHECKS)
    if not isinstance(request, dict):
        raise ValidationException(errors)
    errors.extend(_data_type_errors(request))
    errors.extend(_payload_errors(request))
    errors.extend(shapes.unique_tag_key_errors(request.get("Tags"), "tags"))
    errors.extend(_data_processing_errors(request))
    errors.extend(_inference_id_errors(request))
    errors.extend(_reserved_key_errors(request))
    content_type, accept = _valid_or_none(_content_type(request)), _valid_or_none(_accept(request))
    input_filter = _parse_filter(request, "InputFilter", content_type, errors)
    output_filter = _parse_filter(request, "OutputFilter", accept or content_type, errors)
    if errors:
        raise ValidationException(errors)
    processing = request.get("DataProcessing") or {}
    return _build(request, DataProcessing(input_filter, output_filter, processing.get("JoinSource") or "None"))


def _reserved_key_errors(request: dict[str, Any]) -> list[FieldError]:
    """Conveyor's own Environment keys (docs/semantics.md, "Conveyor's Environment keys"): each
    value checked, and a limit on failed records only where each record's output can be told
    apart (docs/semantics.md, "Tolerating bad records"): records split out of the object, and
    one output per record."""
    environment = request.get("Environment")
    if not isinstance(environment, dict):
        return []
    errors = extensions.reserved_key_errors(environment)
    if errors or extensions.MAX_FAILED_RECORDS not in environment:
        return errors
    source: dict[str, Any] = request["TransformInput"] if isinstance(request.get("TransformInput"), dict) else {}
    output: dict[str, Any] = request["TransformOutput"] if isinstance(request.get("TransformOutput"), dict) else {}
    split_type = source.get("SplitType") or "None"
    strategy = request.get("BatchStrategy") or "MultiRecord"
    assemble_with = output.get("AssembleWith") or "None"
    if split_type in ("Line", "RecordIO", "TFRecord") and (strategy == "SingleRecord" or assemble_with == "Line"):
        return []
    value = environment[extensions.MAX_FAILED_RECORDS]
    message = (
        f"Environment {extensions.MAX_FAILED_RECORDS}='{value}' needs each record's output to be told apart: SplitType Line, "
        "RecordIO or TFRecord, with BatchStrategy SingleRecord, or MultiRecord with AssembleWith Line; this job has "
        f"SplitType={split_type}, BatchStrategy={strategy}, AssembleWith={assemble_with}"
    )
    return [FieldError(f"environment.{extensions.MAX_FAILED_RECORDS}", value, "needs records told apart", message=message)]


def _instance_type_errors(value: str, shape: Shape, path: str) -> list[FieldError]:
    """Any value of botocore's TransformInstanceType enum, or `local` or `local_gpu`."""
    if value in LOCAL_TYPES or value in shape.enum:
        return []
    return [FieldError(path, value, shapes.enum_rule([*shape.enum, *LOCAL_TYPES]))]


def _at_most(limit: int) -> shapes.Check:
    """The model's checks of an integer plus a documented maximum the model lacks."""

    def check(value: int, shape: Shape, path: str) -> list[FieldError]:
        errors = shapes.constraint_errors(value, shape, path)
        if value > limit:
            errors.append(FieldError(path, value, f"Member must have value less than or equal to {limit}"))
        return errors

    return check


_CHECKS: dict[str, shapes.Check] = {
    "S3Uri": location_errors,
    "TransformInstanceType": _instance_type_errors,
    "TransformInstanceCount": _at_most(MAX_INSTANCE_COUNT),
    "MaxPayloadInMB": _at_most(MAX_PAYLOAD_MB),
}


_INVALID: Any = object()  # a member present but failing its own checks


def _member(request: dict[str, Any], dotted: str, shape_name: str, default: Any = None) -> Any:
    """A member's value; `default` when absent; `_INVALID` when it fails its own checks (already
    reported: cross-field rules skip it, so each fault is reported once)."""
    value: Any = request
    for name in dotted.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    if value is None:
        return default
    if shapes.validate(value, shapes.shape(shape_name), "", checks=_CHECKS):
        return _INVALID
    return value


def _content_type(request: dict[str, Any]) -> Any:
    """ContentType; None when absent or empty (no header is sent), _INVALID when invalid."""
    return _member(request, "TransformInput.ContentType", "ContentType") or None


def _accept(request: dict[str, Any]) -> Any:
    return _member(request, "TransformOutput.Accept", "Accept") or None


def _data_type_errors(request: dict[str, Any]) -> list[FieldError]:
    """S3DataType's enum is shared with training; batch transform reads only two of its values."""
    data_type = _member(request, "TransformInput.DataSource.S3DataSource.S3DataType", "S3DataType")
    if data_type in (None, _INVALID) or data_type in BATCH_DATA_TYPES:
        return []
    path = "transformInput.dataSource.s3DataSource.s3DataType"
    message = f"S3DataType '{data_type}' at '{path}' is not supported for batch transform; use S3Prefix or ManifestFile"
    return [FieldError(path, data_type, "Member must satisfy enum value set: [S3Prefix, ManifestFile]", message=message)]


def _payload_errors(request: dict[str, Any]) -> list[FieldError]:
    """MaxConcurrentTransforms × MaxPayloadInMB ≤ 100 when MaxConcurrentTransforms is given."""
    concurrent = _member(request, "MaxConcurrentTransforms", "MaxConcurrentTransforms")
    payload = _member(request, "MaxPayloadInMB", "MaxPayloadInMB")
    if concurrent in (None, _INVALID, 0) or payload is _INVALID:
        return []
    shown = f"{payload}" if payload is not None else f"{DEFAULT_MAX_PAYLOAD_MB} (the default)"
    product = concurrent * (DEFAULT_MAX_PAYLOAD_MB if payload is None else payload)
    if product <= MAX_PAYLOAD_MB:
        return []
    message = (
        f"MaxConcurrentTransforms ({concurrent}) × MaxPayloadInMB ({shown}) is {product}: "
        f"the product of MaxConcurrentTransforms and MaxPayloadInMB must not exceed {MAX_PAYLOAD_MB} MB"
    )
    rule = f"Member multiplied by MaxPayloadInMB must be less than or equal to {MAX_PAYLOAD_MB}"
    return [FieldError("maxConcurrentTransforms", concurrent, rule, message=message)]


def _uses_data_processing(request: dict[str, Any]) -> bool:
    """Whether filters or a join are asked for (`$` filters and JoinSource None are the defaults)."""
    input_filter = _member(request, "DataProcessing.InputFilter", "JsonPath", "$")
    output_filter = _member(request, "DataProcessing.OutputFilter", "JsonPath", "$")
    join = _member(request, "DataProcessing.JoinSource", "JoinSource")
    return input_filter != "$" or output_filter != "$" or join == "Input"


def _data_processing_errors(request: dict[str, Any]) -> list[FieldError]:
    """The content-type rules of data processing (docs/data-processing.md, "Content types"), each a sentence naming the field,
    the value and the rule. Media types are compared without parameters (`; charset=…`)."""
    if not _uses_data_processing(request):
        return []
    content_type, accept = _content_type(request), _accept(request)
    split = _member(request, "TransformInput.SplitType", "SplitType", "None")
    assemble = _member(request, "TransformOutput.AssembleWith", "AssemblyType", "None")
    join = _member(request, "DataProcessing.JoinSource", "JoinSource") == "Input"
    errors = []
    if split in ("RecordIO", "TFRecord"):
        message = (
            f"SplitType '{split}' at 'transformInput.splitType' cannot be used with DataProcessing (InputFilter, "
            "OutputFilter or JoinSource Input): filters and joins work on CSV and JSON records, so SplitType must be Line or None"
        )
        errors.append(FieldError("transformInput.splitType", split, "Member must be one of [Line, None]", message=message))
    supported = ", ".join(DATA_PROCESSING_TYPES)
    for name, path, value in (("ContentType", "transformInput.contentType", content_type), ("Accept", "transformOutput.accept", accept)):
        if value not in (None, _INVALID) and jsonpath.media_type(value) not in DATA_PROCESSING_TYPES:
            message = (
                f"{name} '{value}' at '{path}' is not supported with DataProcessing (InputFilter, OutputFilter or "
                f"JoinSource Input): {name} must be one of {supported}"
            )
            errors.append(FieldError(path, value, f"Member must be one of [{supported}]", message=message))
    if join and _INVALID not in (accept, content_type) and jsonpath.media_type(accept) != jsonpath.media_type(content_type):
        message = f"Accept {_shown(accept)} at 'transformOutput.accept' must equal ContentType {_shown(content_type)} when JoinSource is Input"
        errors.append(FieldError("transformOutput.accept", accept, "Member must equal ContentType", message=message))
    if join and _INVALID not in (split, assemble) and assemble != split:
        message = f"AssembleWith '{assemble}' at 'transformOutput.assembleWith' must equal SplitType '{split}' when JoinSource is Input"
        errors.append(FieldError("transformOutput.assembleWith", assemble, "Member must equal SplitType", message=message))
    for name, path, value, media in (
        ("SplitType", "transformInput.splitType", split, _valid_or_none(content_type)),
        ("AssembleWith", "transformOutput.assembleWith", assemble, _valid_or_none(accept)),
    ):
        if jsonpath.media_type(media) == "text/csv" and value not in (_INVALID, "Line"):
            source = "ContentType" if name == "SplitType" else "Accept"
            message = f"{name} '{value}' at '{path}' must be Line when {source} is text/csv and DataProcessing is used"
            errors.append(FieldError(path, value, "Member must be Line", message=message))
    return errors


def _inference_id_errors(request: dict[str, Any]) -> list[FieldError]:
    """GenerateInferenceId adds columns or keys to each output record (docs/semantics.md, decision 17), so the output
    must be CSV, JSON or JSON Lines, and CSV output must come one record per line."""
    capture = request.get("DataCaptureConfig")
    if not isinstance(capture, dict) or capture.get("GenerateInferenceId") is not True:
        return []
    accept, content_type = _valid_or_none(_accept(request)), _valid_or_none(_content_type(request))
    media = jsonpath.media_type(accept or content_type) if (accept or content_type) else None
    path = "dataCaptureConfig.generateInferenceId"
    supported = ", ".join(DATA_PROCESSING_TYPES)
    if media not in DATA_PROCESSING_TYPES:
        shown = accept or content_type
        message = (
            f"GenerateInferenceId at '{path}' needs an output of {supported}; the output type is "
            f"{_shown(shown)} (Accept, or ContentType when Accept is not given)"
        )
        return [FieldError(path, True, f"Accept must be one of [{supported}]", message=message)]
    split = _member(request, "TransformInput.SplitType", "SplitType", "None")
    if media == "text/csv" and split not in (_INVALID, "Line"):
        message = f"GenerateInferenceId at '{path}' with text/csv output needs SplitType Line, so that each CSV record gets its own id; SplitType is '{split}'"
        return [FieldError(path, True, "SplitType must be Line", message=message)]
    return []


def _valid_or_none(value: Any) -> str | None:
    return None if value is _INVALID else value


def _shown(value: str | None) -> str:
    return "(not given)" if value is None else f"'{value}'"


def _parse_filter(request: dict[str, Any], name: str, content_type: str | None, errors: list[FieldError]) -> JsonPath | None:
    """The parsed filter, or None for `$`/absent; a bad filter adds its error to `errors`."""
    expression = _member(request, f"DataProcessing.{name}", "JsonPath")
    if expression in (None, _INVALID, "$"):
        return None
    try:
        return jsonpath.parse_filter(expression, content_type=content_type, field=name)
    except ValidationException as exc:
        path = shapes.member_path("dataProcessing", name)
        errors.extend(exc.errors or [FieldError(path, expression, "", message=exc.message)])
        return None


def _build(request: dict[str, Any], processing: DataProcessing) -> TransformJobSpec:
    """The typed job from a request already known to be valid."""
    source = request["TransformInput"]
    output = request["TransformOutput"]
    resources = request["TransformResources"]
    client = request.get("ModelClientConfig") or {}
    capture = request.get("DataCaptureConfig")
    return TransformJobSpec(
        name=request["TransformJobName"],
        model_name=request["ModelName"],
        input=TransformInput(
            data_type=source["DataSource"]["S3DataSource"]["S3DataType"],
            uri=normalize_location(source["DataSource"]["S3DataSource"]["S3Uri"]),
            content_type=source.get("ContentType") or None,
            compression=source.get("CompressionType") or "None",
            split_type=source.get("SplitType") or "None",
        ),
        output=TransformOutput(
            output_path=normalize_location(output["S3OutputPath"]),
            accept=output.get("Accept") or None,
            assemble_with=output.get("AssembleWith") or "None",
            kms_key_id=output.get("KmsKeyId") or None,
        ),
        resources=TransformResources(
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_kms_key_id=resources.get("VolumeKmsKeyId") or None,
        ),
        max_concurrent_transforms=request.get("MaxConcurrentTransforms"),
        max_payload_mb=request.get("MaxPayloadInMB"),
        batch_strategy=request.get("BatchStrategy"),
        model_client=ModelClientConfig(
            invocations_timeout_seconds=_or_default(client.get("InvocationsTimeoutInSeconds"), DEFAULT_INVOCATIONS_TIMEOUT_SECONDS),
            invocations_max_retries=_or_default(client.get("InvocationsMaxRetries"), DEFAULT_INVOCATIONS_MAX_RETRIES),
        ),
        environment=extensions.without_reserved_keys(dict(request.get("Environment") or {})),
        data_processing=processing,
        data_capture=None
        if capture is None
        else DataCaptureConfig(
            destination_uri=normalize_location(capture["DestinationS3Uri"]),
            kms_key_id=capture.get("KmsKeyId") or None,
            generate_inference_id=bool(capture.get("GenerateInferenceId")),
        ),
        tags=[dict(tag) for tag in request.get("Tags") or []],
        request=copy.deepcopy(request),
        max_failed_records=_failed_record_limit(request.get("Environment") or {}),
        decode_workers=extensions.decode_workers(request.get("Environment") or {}),
    )


def _failed_record_limit(environment: dict[str, str]) -> FailedRecordLimit | None:
    value = environment.get(extensions.MAX_FAILED_RECORDS)
    return None if value is None else extensions.parse_failed_record_limit(value)


def _or_default(value: int | None, default: int) -> int:
    return default if value is None else value
