"""Turning `conveyor transform` flags (or `--request FILE`) into SageMaker's request shapes.

Flags are named after the CreateTransformJob fields; they build the same JSON a boto3 caller
sends, so one validation path (`conveyor.sagemaker`) checks both.
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from conveyor.engine.model_check import check_decode_workers, check_local_handler
from conveyor.errors import FieldError, ValidationException, render_value
from conveyor.sagemaker import check_model_for_batch, parse_model, parse_transform_job
from conveyor.sagemaker.extensions import DECODE_WORKERS, MAX_FAILED_RECORDS, with_reserved_key
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.storage.inputs import check_output_location

FLAGS = {
    "transformJobName": ("name", "--name"),
    "primaryContainer.modelDataUrl": ("model", "--model"),
    "transformInput.dataSource.s3DataSource.s3Uri": ("input", "--input"),
    "transformInput.dataSource.s3DataSource.s3DataType": ("data_type", "--data-type"),
    "transformInput.contentType": ("content_type", "--content-type"),
    "transformInput.splitType": ("split_type", "--split-type"),
    "transformInput.compressionType": ("compression", "--compression"),
    "transformOutput.s3OutputPath": ("output", "--output"),
    "transformOutput.accept": ("accept", "--accept"),
    "transformOutput.assembleWith": ("assemble_with", "--assemble-with"),
    "transformOutput.kmsKeyId": ("kms_key", "--kms-key"),
    "transformResources.instanceCount": ("instance_count", "--instance-count"),
    "transformResources.instanceType": ("instance_type", "--instance-type"),
    "batchStrategy": ("strategy", "--strategy"),
    "maxPayloadInMB": ("max_payload", "--max-payload"),
    "maxConcurrentTransforms": ("max_concurrent", "--max-concurrent"),
    "modelClientConfig.invocationsTimeoutInSeconds": ("timeout", "--timeout"),
    "modelClientConfig.invocationsMaxRetries": ("retries", "--retries"),
    "environment.CONVEYOR_MAX_FAILED_RECORDS": ("max_failed_records", "--max-failed-records"),
    "environment.CONVEYOR_DECODE_WORKERS": ("decode_workers", "--decode-workers"),
    "environment": ("env", "--env"),
    "dataProcessing.inputFilter": ("input_filter", "--input-filter"),
    "dataProcessing.outputFilter": ("output_filter", "--output-filter"),
    "dataProcessing.joinSource": ("join_source", "--join-source"),
    "dataCaptureConfig.destinationS3Uri": ("data_capture", "--data-capture"),
}
"""CreateTransformJob's field paths (as validation names them) → the flag that sets each."""


class UsageError(Exception):
    """A command-line mistake; printed as one line, exit status 2."""


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("job definition (a CreateTransformJob request, or flags named after its fields)")
    source.add_argument("--request", metavar="FILE", help="the CreateTransformJob request as JSON (as passed to boto3's create_transform_job)")
    source.add_argument("--name", help="TransformJobName (default: conveyor-<timestamp>)")
    source.add_argument("--input", metavar="URI", help="TransformInput S3Uri: a folder, a key prefix or one file (s3://, file:// or a path)")
    source.add_argument("--data-type", choices=["S3Prefix", "ManifestFile"], help="S3DataType (default S3Prefix)")
    source.add_argument("--output", metavar="URI", help="TransformOutput S3OutputPath")
    source.add_argument("--content-type", help="ContentType sent to the model, e.g. text/csv")
    source.add_argument("--split-type", choices=["None", "Line", "RecordIO", "TFRecord"], help="SplitType (default None)")
    source.add_argument("--compression", choices=["None", "Gzip"], help="CompressionType (default None)")
    source.add_argument("--strategy", choices=["MultiRecord", "SingleRecord"], help="BatchStrategy")
    source.add_argument("--max-payload", type=int, metavar="MB", help="MaxPayloadInMB (default 6; 0 = no limit)")
    source.add_argument("--max-concurrent", type=int, metavar="N", help="MaxConcurrentTransforms per instance")
    source.add_argument("--instance-count", type=int, metavar="N", help="InstanceCount (default 1)")
    source.add_argument("--instance-type", help="InstanceType (default local)")
    source.add_argument("--accept", help="Accept sent to the model, e.g. text/csv")
    source.add_argument("--assemble-with", choices=["None", "Line"], help="AssembleWith (default None)")
    source.add_argument("--kms-key", metavar="KEY", help="TransformOutput KmsKeyId")
    source.add_argument("--timeout", type=int, metavar="SECONDS", help="InvocationsTimeoutInSeconds (default 600)")
    source.add_argument("--retries", type=int, metavar="N", help="InvocationsMaxRetries (default 3)")
    source.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="Environment entry (repeatable)")
    source.add_argument(
        "--max-failed-records", metavar="N|P%",
        help="let up to N records, or P%% of the job's records, fail without failing the job: their outputs are empty "
        "lines and <output>/<job>.errors.jsonl lists them (a Conveyor extension; Environment CONVEYOR_MAX_FAILED_RECORDS)",
    )
    source.add_argument(
        "--decode-workers", metavar="N",
        help="run the Python handler's input_fn and output_fn in N worker processes of each instance, predict_fn in the "
        "instance (a Conveyor extension; Environment CONVEYOR_DECODE_WORKERS; docs/models.md, \"Parallel decode\")",
    )
    processing = parser.add_argument_group("data processing")
    processing.add_argument("--input-filter", metavar="JSONPATH", help="InputFilter, e.g. '$[1:]'")
    processing.add_argument("--output-filter", metavar="JSONPATH", help="OutputFilter, e.g. '$[0,-1]'")
    processing.add_argument("--join-source", choices=["None", "Input"], help="JoinSource")
    processing.add_argument("--data-capture", metavar="URI", help="DataCaptureConfig DestinationS3Uri (with GenerateInferenceId)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="PATH", help="a model directory or model.tar.gz holding code/inference.py")
    model.add_argument("--model-request", metavar="FILE", help="the CreateModel request as JSON")
    parser.add_argument("--s3-endpoint", metavar="URL", help="endpoint of an S3-compatible store for s3:// locations (default: AWS_ENDPOINT_URL_S3, or AWS)")


def _load_json(path: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} {path} must hold a JSON object")
    return value


def transform_request(args: argparse.Namespace, model_name: str) -> dict[str, Any]:
    """The CreateTransformJob request: `--request` as given, with any flags laid over it."""
    request: dict[str, Any] = _load_json(args.request, "--request") if args.request else {}
    if not args.request:
        request["TransformJobName"] = args.name or "conveyor-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        request["ModelName"] = model_name
    elif args.name:
        request["TransformJobName"] = args.name
    request.setdefault("ModelName", model_name)
    transform_input = request.setdefault("TransformInput", {})
    data_source = transform_input.setdefault("DataSource", {}).setdefault("S3DataSource", {})
    if args.input:
        data_source["S3Uri"] = args.input
    if args.data_type or "S3DataType" not in data_source:
        data_source["S3DataType"] = args.data_type or "S3Prefix"
    _set(transform_input, "ContentType", args.content_type)
    _set(transform_input, "SplitType", args.split_type)
    _set(transform_input, "CompressionType", args.compression)
    transform_output = request.setdefault("TransformOutput", {})
    _set(transform_output, "S3OutputPath", args.output)
    _set(transform_output, "Accept", args.accept)
    _set(transform_output, "AssembleWith", args.assemble_with)
    _set(transform_output, "KmsKeyId", args.kms_key)
    resources = request.setdefault("TransformResources", {})
    _set(resources, "InstanceCount", args.instance_count)
    _set(resources, "InstanceType", args.instance_type)
    resources.setdefault("InstanceCount", 1)
    resources.setdefault("InstanceType", "local")
    _set(request, "BatchStrategy", args.strategy)
    _set(request, "MaxPayloadInMB", args.max_payload)
    _set(request, "MaxConcurrentTransforms", args.max_concurrent)
    if args.timeout is not None or args.retries is not None:
        client = request.setdefault("ModelClientConfig", {})
        _set(client, "InvocationsTimeoutInSeconds", args.timeout)
        _set(client, "InvocationsMaxRetries", args.retries)
    if args.env:
        environment = request.setdefault("Environment", {})
        for entry in args.env:
            key, separator, value = entry.partition("=")
            if not separator:
                raise UsageError(f"--env {entry!r}: expected KEY=VALUE")
            environment[key] = value
    if args.max_failed_records is not None:
        try:
            request["Environment"] = with_reserved_key(request.get("Environment"), MAX_FAILED_RECORDS, args.max_failed_records, "--max-failed-records")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.decode_workers is not None:
        try:
            request["Environment"] = with_reserved_key(request.get("Environment"), DECODE_WORKERS, args.decode_workers, "--decode-workers")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.input_filter or args.output_filter or args.join_source:
        processing = request.setdefault("DataProcessing", {})
        _set(processing, "InputFilter", args.input_filter)
        _set(processing, "OutputFilter", args.output_filter)
        _set(processing, "JoinSource", args.join_source)
    if args.data_capture:
        request["DataCaptureConfig"] = {"DestinationS3Uri": args.data_capture, "GenerateInferenceId": True}
    return request


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def model_request(args: argparse.Namespace, wanted_name: str | None) -> dict[str, Any]:
    """The CreateModel request: `--model-request FILE`, or one built for `--model PATH`."""
    if args.model_request:
        request = _load_json(args.model_request, "--model-request")
        if wanted_name and request.get("ModelName") != wanted_name:
            raise UsageError(f"--request names ModelName {wanted_name!r} but --model-request defines {request.get('ModelName')!r}")
        return request
    if not args.model:
        raise UsageError("give the model: --model PATH (a directory or model.tar.gz with code/inference.py) or --model-request FILE")
    if not os.path.exists(args.model):
        raise UsageError(f"--model {args.model}: no such file or directory")
    name = wanted_name or _model_name_from_path(args.model)
    return {"ModelName": name, "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": os.path.abspath(args.model)}}


def _model_name_from_path(path: str) -> str:
    stem = Path(path.rstrip("/")).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        stem = stem.removesuffix(suffix)
    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", stem).strip("-")[:63] or "model"
    return cleaned


def job_and_model(args: argparse.Namespace) -> tuple[TransformJobSpec, ModelSpec]:
    """Validated specs for the job and its model (raises ValidationException or UsageError)."""
    wanted = None
    if args.request:
        wanted = _load_json(args.request, "--request").get("ModelName")
    request = model_request(args, wanted if isinstance(wanted, str) else None)
    model = parse_model(request)
    check_model_for_batch(model)
    primary = request.get("PrimaryContainer") is not None
    check_decode_workers(model, primary=primary)
    try:
        check_local_handler(model, primary=primary)
        job = parse_transform_job(transform_request(args, model.name))
        check_decode_workers(model, primary=primary, job_decode_workers=job.decode_workers)
        check_output_location(job.input.data_type, job.input.uri, job.output.output_path)
    except ValidationException as error:
        if not error.errors:
            raise
        raise UsageError("; ".join(flag_error(field, args) for field in error.errors)) from None
    return job, model


def flag_error(error: FieldError, args: argparse.Namespace) -> str:
    """One broken rule as a command-line user reads it: the flag, then the field it sets
    (`--output (TransformOutput.S3OutputPath) is required`); a field that `--request FILE` set
    is named as the field alone."""
    matching = [path for path in FLAGS if error.path == path or error.path.startswith(path + ".")]
    # The flag the user gave wins (a reserved Environment key may come from its own flag or from --env).
    path = next((path for path in matching if getattr(args, FLAGS[path][0], None)), matching[0] if matching else None)
    field = ".".join(part[:1].upper() + part[1:] for part in error.path.split("."))
    name = field
    if path is not None:
        attribute, flag = FLAGS[path]
        if not args.request or getattr(args, attribute, None):
            name = f"{flag} ({field})"
    if error.message is not None:
        return f"{name}: {error.message}"
    if error.value is None and error.rule == "Member must not be null":
        return f"{name} is required"
    return f"{name} {render_value(error.value)} failed to satisfy constraint: {error.rule}"
