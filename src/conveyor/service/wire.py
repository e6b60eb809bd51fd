"""Stored records as SageMaker's response shapes: exactly botocore's members, nothing more
(docs/semantics.md, decision 21)."""

from __future__ import annotations

from typing import Any

from conveyor.sagemaker.transform_job import DEFAULT_INVOCATIONS_MAX_RETRIES, DEFAULT_INVOCATIONS_TIMEOUT_SECONDS
from conveyor.store import ModelRecord, ModelSummary, TransformJobRecord, TransformJobSummary

_ECHOED_JOB_MEMBERS = (
    "MaxConcurrentTransforms",
    "MaxPayloadInMB",
    "BatchStrategy",
    "Environment",
    "TransformInput",
    "TransformOutput",
    "DataCaptureConfig",
    "TransformResources",
    "DataProcessing",
    "ExperimentConfig",
)
_ECHOED_MODEL_MEMBERS = (
    "PrimaryContainer",
    "Containers",
    "InferenceExecutionConfig",
    "ExecutionRoleArn",
    "VpcConfig",
    "EnableNetworkIsolation",
)


def describe_transform_job(record: TransformJobRecord) -> dict[str, Any]:
    request = record.request
    response: dict[str, Any] = {
        "TransformJobName": record.name,
        "TransformJobArn": record.arn,
        "TransformJobStatus": record.status,
        "ModelName": record.model_name,
        "CreationTime": record.creation_time,
    }
    if record.failure_reason:
        response["FailureReason"] = record.failure_reason
    for member in _ECHOED_JOB_MEMBERS:
        if request.get(member) is not None:
            response[member] = request[member]
    client = request.get("ModelClientConfig") or {}
    response["ModelClientConfig"] = {
        "InvocationsTimeoutInSeconds": client.get("InvocationsTimeoutInSeconds", DEFAULT_INVOCATIONS_TIMEOUT_SECONDS),
        "InvocationsMaxRetries": client.get("InvocationsMaxRetries", DEFAULT_INVOCATIONS_MAX_RETRIES),
    }
    if record.execution_parameters:
        response.update(record.execution_parameters)
    if record.transform_start_time:
        response["TransformStartTime"] = record.transform_start_time
    if record.transform_end_time:
        response["TransformEndTime"] = record.transform_end_time
    return response


def transform_job_summary(summary: TransformJobSummary) -> dict[str, Any]:
    item: dict[str, Any] = {
        "TransformJobName": summary.name,
        "TransformJobArn": summary.arn,
        "CreationTime": summary.creation_time,
        "LastModifiedTime": summary.last_modified_time,
        "TransformJobStatus": summary.status,
    }
    if summary.transform_end_time:
        item["TransformEndTime"] = summary.transform_end_time
    if summary.failure_reason:
        item["FailureReason"] = summary.failure_reason
    return item


def describe_model(record: ModelRecord) -> dict[str, Any]:
    response: dict[str, Any] = {"ModelName": record.name, "ModelArn": record.arn, "CreationTime": record.creation_time}
    for member in _ECHOED_MODEL_MEMBERS:
        if record.request.get(member) is not None:
            response[member] = record.request[member]
    return response


def model_summary(summary: ModelSummary) -> dict[str, Any]:
    return {"ModelName": summary.name, "ModelArn": summary.arn, "CreationTime": summary.creation_time}
