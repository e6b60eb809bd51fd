"""The console's forms as SageMaker requests, and SageMaker's errors back onto the form.

Each form field is named by its lowerCamel wire path (`transformInput.splitType`), the same
path a `FieldError` carries, so an error finds its field without a lookup table. Values are
sent as typed: an integer field holding `abc` goes to the service as the string, and the
service's own rule ("Member must be an integer") comes back next to the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from starlette.datastructures import FormData

from conveyor.errors import ConveyorError, ResourceInUse, ValidationException

Kind = Literal["text", "integer", "boolean"]
_INTEGER = re.compile(r"[+-]?\d+")

# Every single-valued field of the Create batch transform job form, in the form's order.
JOB_FIELDS: dict[str, Kind] = {
    "transformJobName": "text",
    "modelName": "text",
    "transformResources.instanceType": "text",
    "transformResources.instanceCount": "integer",
    "maxConcurrentTransforms": "integer",
    "batchStrategy": "text",
    "maxPayloadInMB": "integer",
    "modelClientConfig.invocationsTimeoutInSeconds": "integer",
    "modelClientConfig.invocationsMaxRetries": "integer",
    "transformResources.volumeKmsKeyId": "text",
    "transformInput.dataSource.s3DataSource.s3DataType": "text",
    "transformInput.dataSource.s3DataSource.s3Uri": "text",
    "transformInput.compressionType": "text",
    "transformInput.splitType": "text",
    "transformInput.contentType": "text",
    "transformOutput.s3OutputPath": "text",
    "transformOutput.kmsKeyId": "text",
    "transformOutput.accept": "text",
    "transformOutput.assembleWith": "text",
    "dataProcessing.inputFilter": "text",
    "dataProcessing.joinSource": "text",
    "dataProcessing.outputFilter": "text",
    "dataCaptureConfig.destinationS3Uri": "text",
    "dataCaptureConfig.kmsKeyId": "text",
    "dataCaptureConfig.generateInferenceId": "boolean",
}

# What a new form shows: SageMaker's console defaults (the seed walkthrough: S3 data type
# ManifestFile, compression and split None, instance count 1).
JOB_DEFAULTS: dict[str, str] = {
    "transformResources.instanceType": "ml.m5.large",
    "transformResources.instanceCount": "1",
    "transformInput.dataSource.s3DataSource.s3DataType": "S3Prefix",  # a folder or prefix, the usual input
    "transformInput.compressionType": "None",
    "transformInput.splitType": "None",
    "transformOutput.assembleWith": "None",
    "dataProcessing.joinSource": "None",
}

MODEL_FIELDS: dict[str, Kind] = {
    "modelName": "text",
    "primaryContainer.image": "text",
    "primaryContainer.modelDataUrl": "text",
    "executionRoleArn": "text",
}
PYTHON_IMAGE = "conveyor:python"

# Map-valued and list-valued members, edited as key/value rows.
ROW_GROUPS = ("environment", "tags", "primaryContainer.environment")


@dataclass
class Form:
    """What the user typed (kept for re-display) and the errors placed on its fields."""

    values: dict[str, str] = field(default_factory=dict)
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general_errors: list[str] = field(default_factory=list)

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def row_list(self, group: str) -> list[tuple[str, str]]:
        return self.rows.get(group) or []

    def field_errors(self, name: str) -> list[str]:
        return self.errors.get(name, [])

    @property
    def error_count(self) -> int:
        return sum(len(messages) for messages in self.errors.values()) + len(self.general_errors)

    def add_error(self, name: str | None, message: str) -> None:
        if name is None:
            self.general_errors.append(message)
        else:
            self.errors.setdefault(name, []).append(message)


def wire_name(path: str) -> list[str]:
    """`transformInput.dataSource.s3DataSource.s3Uri` → `[TransformInput, DataSource, S3DataSource, S3Uri]`."""
    return [segment[:1].upper() + segment[1:] for segment in path.split(".")]


def read_form(data: FormData, fields: dict[str, Kind], groups: Iterable[str]) -> Form:
    form = Form()
    for name, kind in fields.items():
        if kind == "boolean":
            form.values[name] = "on" if data.get(name) else ""
        else:
            raw = data.get(name)
            form.values[name] = raw if isinstance(raw, str) else ""
    for group in groups:
        keys = [value for value in data.getlist(f"{group}.key") if isinstance(value, str)]
        values = [value for value in data.getlist(f"{group}.value") if isinstance(value, str)]
        values += [""] * (len(keys) - len(values))
        form.rows[group] = [(key, value) for key, value in zip(keys, values) if key.strip() or value.strip()]
    return form


def _typed(raw: str, kind: Kind) -> Any:
    text = raw.strip()
    if kind == "integer" and _INTEGER.fullmatch(text):
        return int(text)
    if kind == "boolean":
        return True
    return text


def _put(request: dict[str, Any], path: str, value: Any) -> None:
    names = wire_name(path)
    target = request
    for name in names[:-1]:
        target = target.setdefault(name, {})
    target[names[-1]] = value


def _request_from(form: Form, fields: dict[str, Kind]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for name, kind in fields.items():
        raw = form.value(name)
        if raw.strip():
            _put(request, name, _typed(raw, kind))
    return request


def _environment(form: Form, group: str) -> dict[str, str] | None:
    rows = form.row_list(group)
    if not rows:
        return None
    environment: dict[str, str] = {}
    for key, value in rows:
        key = key.strip()
        if key in environment:
            form.add_error(group, f"Environment variable '{key}' is given more than once: each key may appear once")
        environment[key] = value
    return environment


def job_request(form: Form) -> dict[str, Any]:
    """The CreateTransformJob request for a filled-in form (empty optional fields omitted)."""
    request = _request_from(form, JOB_FIELDS)
    if request.get("DataProcessing") == {"JoinSource": "None"}:
        del request["DataProcessing"]  # all defaults: no data processing asked for
    environment = _environment(form, "environment")
    if environment is not None:
        request["Environment"] = environment
    tags = [{"Key": key.strip(), "Value": value} for key, value in form.row_list("tags")]
    if tags:
        request["Tags"] = tags
    return request


def model_request(form: Form, runtime: str) -> dict[str, Any]:
    """The CreateModel request: `runtime` "python" runs code/inference.py in-process
    (Image `conveyor:python`); otherwise the Image field says what runs the model."""
    fields = dict(MODEL_FIELDS)
    if runtime == "python":
        fields.pop("primaryContainer.image")
    request = _request_from(form, fields)
    container = request.setdefault("PrimaryContainer", {})
    if runtime == "python":
        container["Image"] = PYTHON_IMAGE
    environment = _environment(form, "primaryContainer.environment")
    if environment is not None:
        container["Environment"] = environment
    return request


def job_form_from(description: dict[str, Any], tags: list[dict[str, str]]) -> Form:
    """A form filled from a DescribeTransformJob response (Clone)."""
    form = Form(values=dict(JOB_DEFAULTS))
    for name, kind in JOB_FIELDS.items():
        value: Any = description
        for segment in wire_name(name):
            value = value.get(segment) if isinstance(value, dict) else None
        if value is None:
            continue
        form.values[name] = ("on" if value else "") if kind == "boolean" else str(value)
    form.rows["environment"] = list((description.get("Environment") or {}).items())
    form.rows["tags"] = [(tag["Key"], tag.get("Value", "")) for tag in tags]
    return form


def field_for(path: str, fields: Iterable[str]) -> str | None:
    """The form field an error path belongs to: the field itself, its row group
    (`tags.2.member.key` → `tags`), or the longest field the path starts with."""
    known = list(fields)
    if path in known:
        return path
    for group in ROW_GROUPS:
        if group in known and (path == group or path.startswith(group + ".")):
            return group
    candidates = [name for name in known if path.startswith(name + ".")]
    if candidates:
        return max(candidates, key=len)
    inside = [name for name in known if name.startswith(path + ".")]  # a missing parent: its first field
    return inside[0] if path and inside else None


def place_errors(form: Form, error: ConveyorError, fields: Iterable[str]) -> None:
    """Put the service's error next to the fields it concerns; what names no field goes on top."""
    known = list(fields)
    if isinstance(error, ValidationException) and error.errors:
        for item in error.errors:
            form.add_error(field_for(item.path, known), item.render())
        return
    form.add_error(_field_of_message(error, known), error.message)


def _field_of_message(error: ConveyorError, fields: list[str]) -> str | None:
    """Errors raised without a field path, whose subject is still plain (a taken job name, a
    missing model, an empty input location)."""
    message = error.message
    candidates: list[tuple[bool, str]] = [
        (isinstance(error, ResourceInUse) and "job" in message.lower(), "transformJobName"),
        (message.startswith("Cannot create already existing model"), "modelName"),
        (message.startswith("Could not find model"), "modelName"),
        ("input data source" in message, "transformInput.dataSource.s3DataSource.s3Uri"),
        ("ManifestFile" in message or "manifest" in message.lower(), "transformInput.dataSource.s3DataSource.s3Uri"),
    ]
    for matches, name in candidates:
        if matches and name in fields:
            return name
    return None

