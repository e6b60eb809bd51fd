"""`Transformer`: the SageMaker Python SDK's Transformer (v2), against a Conveyor server or in
this process.

The constructor and `transform()` take the SDK's parameters and build the CreateTransformJob
request exactly as the SDK's `_TransformJob` and `Session._get_transform_request` do, so code
written for `sagemaker.transformer.Transformer` runs here by changing the import. Locations may
also be `file://` URIs or paths; a relative path is made absolute here, where it was meant.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any, Callable, TextIO

import botocore.exceptions

from conveyor.sagemaker.extensions import MAX_FAILED_RECORDS, with_reserved_key
from conveyor.sdk.session import LOG_GROUP, Session, resolve_session
from conveyor.service import TERMINAL_STATUSES

logger = logging.getLogger("conveyor.sdk")

_IMAGE_NAME = re.compile(r"^(.+/)?([^:/]+)(:[^:]+)?$")
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class UnexpectedStatusException(ValueError):
    """A job ended in a status other than the ones waited for (as the SageMaker SDK's)."""

    def __init__(self, message: str, allowed_statuses: list[str], actual_status: str) -> None:
        super().__init__(message)
        self.allowed_statuses = allowed_statuses
        self.actual_status = actual_status


def name_from_base(base: str, max_length: int = 63) -> str:
    """`<base>-YYYY-MM-DD-HH-MM-SS-mmm` (UTC), `base` trimmed to fit `max_length`: the SDK's names."""
    moment = time.time()
    timestamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(moment)) + f"-{int(moment * 1000) % 1000:03d}"
    return f"{base[: max_length - len(timestamp) - 1]}-{timestamp}"


def base_name_from_image(image: str) -> str:
    """The repository part of an image (`conveyor:python` → `conveyor`), as the SDK names jobs."""
    match = _IMAGE_NAME.match(image)
    return match.group(2) if match else image


def is_uri(location: str) -> bool:
    """`scheme://…` (s3, file, https), as opposed to a plain path."""
    return bool(_URI_SCHEME.match(location))


def absolute_location(location: str | os.PathLike[str]) -> str:
    """URIs as given; a plain path made absolute here (a trailing `/` kept, as it names outputs)."""
    text = os.fspath(location)
    if is_uri(text):
        return text
    resolved = os.path.abspath(os.path.expanduser(text))
    if text.endswith(("/", os.sep)) and not resolved.endswith(os.sep):
        resolved += "/"
    return resolved


class Transformer:
    """Create and follow transform jobs for one model, as `sagemaker.transformer.Transformer`.

    Without `session` or `endpoint_url` the jobs run in this process on the local engine, with
    state under `CONVEYOR_HOME`; `sagemaker_session` is accepted as another name for `session`.
    """

    def __init__(
        self,
        model_name: str,
        instance_count: int = 1,
        instance_type: str = "local",
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: dict[str, str] | list[dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        base_transform_job_name: str | None = None,
        sagemaker_session: Any = None,
        volume_kms_key: str | None = None,
        *,
        session: Any = None,
        endpoint_url: str | None = None,
        max_failed_records: int | str | None = None,
    ) -> None:
        """`max_failed_records` (a Conveyor extension: a count, or a percentage such as "0.5%")
        lets that many records fail without failing the job; it travels as Environment
        CONVEYOR_MAX_FAILED_RECORDS, so a different value there is refused."""
        if session is not None and sagemaker_session is not None:
            raise ValueError("give either session= or sagemaker_session=, not both")
        if max_failed_records is not None:
            env = with_reserved_key(env, MAX_FAILED_RECORDS, str(max_failed_records), "max_failed_records=")
        self.model_name = model_name
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.strategy = strategy
        self.assemble_with = assemble_with
        self.output_path = output_path
        self.output_kms_key = output_kms_key
        self.accept = accept
        self.max_concurrent_transforms = max_concurrent_transforms
        self.max_payload = max_payload
        self.tags = tags
        self.env = env
        self.base_transform_job_name = base_transform_job_name
        self.volume_kms_key = volume_kms_key
        self.session: Session = resolve_session(session or sagemaker_session, endpoint_url)
        self._current_job_name: str | None = None
        self._reset_output_path = False
        self.latest_transform_job: TransformJob | None = None

    @property
    def sagemaker_session(self) -> Session:
        return self.session

    def transform(
        self,
        data: str | os.PathLike[str],
        data_type: str = "S3Prefix",
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        job_name: str | None = None,
        input_filter: str | None = None,
        output_filter: str | None = None,
        join_source: str | None = None,
        experiment_config: dict[str, str] | None = None,
        model_client_config: dict[str, int] | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> None:
        """Start a transform job over `data`; with `wait`, block until it ends (printing its log
        with `logs`) and raise `UnexpectedStatusException` if it failed."""
        if job_name is not None:
            self._current_job_name = job_name
        else:
            self._current_job_name = name_from_base(self.base_transform_job_name or self._retrieve_base_name())
        if self.output_path is None or self._reset_output_path:
            self.output_path = self.session.default_output_path(self._current_job_name)
            self._reset_output_path = True
        request = self._transform_request(
            absolute_location(data), data_type, content_type, compression_type, split_type,
            input_filter, output_filter, join_source, experiment_config, model_client_config,
        )  # fmt: skip
        logger.info("Creating transform job with name: %s", self._current_job_name)
        self.session.create_transform_job(request)
        self.latest_transform_job = TransformJob(self.session, self._current_job_name)
        if wait:
            self.latest_transform_job.wait(logs=logs)

    def _transform_request(
        self,
        data: str,
        data_type: str,
        content_type: str | None,
        compression_type: str | None,
        split_type: str | None,
        input_filter: str | None,
        output_filter: str | None,
        join_source: str | None,
        experiment_config: dict[str, str] | None,
        model_client_config: dict[str, int] | None,
    ) -> dict[str, Any]:
        """The CreateTransformJob request, member for member as the SageMaker SDK builds it."""
        transform_input: dict[str, Any] = {"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": data}}}
        _put(transform_input, "ContentType", content_type)
        _put(transform_input, "CompressionType", compression_type)
        _put(transform_input, "SplitType", split_type)
        transform_output: dict[str, Any] = {"S3OutputPath": absolute_location(self.output_path)}  # type: ignore[arg-type]
        _put(transform_output, "KmsKeyId", self.output_kms_key)
        _put(transform_output, "AssembleWith", self.assemble_with)
        _put(transform_output, "Accept", self.accept)
        resources: dict[str, Any] = {"InstanceCount": self.instance_count, "InstanceType": self.instance_type}
        _put(resources, "VolumeKmsKeyId", self.volume_kms_key)
        data_processing: dict[str, str] = {}
        _put(data_processing, "InputFilter", input_filter)
        _put(data_processing, "OutputFilter", output_filter)
        _put(data_processing, "JoinSource", join_source)
        request: dict[str, Any] = {
            "TransformJobName": self._current_job_name,
            "ModelName": self.model_name,
            "TransformInput": transform_input,
            "TransformOutput": transform_output,
            "TransformResources": resources,
        }
        _put(request, "BatchStrategy", self.strategy)
        _put(request, "MaxConcurrentTransforms", self.max_concurrent_transforms)
        _put(request, "MaxPayloadInMB", self.max_payload)
        _put(request, "Environment", self.env)
        _put(request, "Tags", format_tags(self.tags))
        _put(request, "DataProcessing", data_processing or None)
        if experiment_config:
            request["ExperimentConfig"] = experiment_config
        if model_client_config:
            request["ModelClientConfig"] = model_client_config
        return request

    def _retrieve_base_name(self) -> str:
        """The model's image name (`conveyor` for `conveyor:python`), else the model's name."""
        try:
            description = self.session.describe_model({"ModelName": self.model_name})
        except botocore.exceptions.ClientError:
            raise ValueError(f"Failed to fetch model information for {self.model_name}. Please ensure that the model exists.") from None
        container: dict[str, Any] = description.get("PrimaryContainer") or next(iter(description.get("Containers") or []), {})
        image = container.get("Image")
        return base_name_from_image(image) if image else self.model_name

    def wait(self, logs: bool = True, *, poll: float = 0.5) -> dict[str, Any]:
        """Block until the latest job ends; see `TransformJob.wait`."""
        return self._latest().wait(logs=logs, poll=poll)

    def stop_transform_job(self, wait: bool = True) -> None:
        """Ask the latest job to stop; with `wait`, block until it has (printing its log, as
        the SDK does)."""
        job = self._latest()
        job.stop()
        if wait:
            job.wait()

    def describe(self) -> dict[str, Any]:
        """DescribeTransformJob for the latest job."""
        return self._latest().describe()

    def delete_model(self) -> None:
        self.session.delete_model({"ModelName": self.model_name})

    def _latest(self) -> "TransformJob":
        if self.latest_transform_job is None:
            raise ValueError("No transform job available")
        return self.latest_transform_job

    @classmethod
    def attach(cls, transform_job_name: str, sagemaker_session: Any = None, *, session: Any = None, endpoint_url: str | None = None) -> "Transformer":
        """A Transformer for an existing job, its attributes read back from DescribeTransformJob."""
        resolved = resolve_session(session or sagemaker_session, endpoint_url)
        description = resolved.describe_transform_job({"TransformJobName": transform_job_name})
        transformer = cls(session=resolved, **cls._prepare_init_params_from_job_description(description))
        transformer._current_job_name = transform_job_name
        transformer.latest_transform_job = TransformJob(resolved, transform_job_name)
        return transformer

    @classmethod
    def _prepare_init_params_from_job_description(cls, job_details: dict[str, Any]) -> dict[str, Any]:
        resources, output = job_details["TransformResources"], job_details["TransformOutput"]
        return {
            "model_name": job_details["ModelName"],
            "instance_count": resources["InstanceCount"],
            "instance_type": resources["InstanceType"],
            "volume_kms_key": resources.get("VolumeKmsKeyId"),
            "strategy": job_details.get("BatchStrategy"),
            "assemble_with": output.get("AssembleWith"),
            "output_path": output["S3OutputPath"],
            "output_kms_key": output.get("KmsKeyId"),
            "accept": output.get("Accept"),
            "max_concurrent_transforms": job_details.get("MaxConcurrentTransforms"),
            "max_payload": job_details.get("MaxPayloadInMB"),
            "env": job_details.get("Environment"),
            "base_transform_job_name": job_details["TransformJobName"],
        }


class TransformJob:
    """One transform job: `Transformer.latest_transform_job`."""

    def __init__(self, session: Session, job_name: str) -> None:
        self.session = session
        self.job_name = job_name

    def __repr__(self) -> str:
        return f"TransformJob({self.job_name!r})"

    def describe(self) -> dict[str, Any]:
        return self.session.describe_transform_job({"TransformJobName": self.job_name})

    def stop(self) -> None:
        """StopTransformJob; a job that has already ended is left as it is."""
        try:
            self.session.stop_transform_job({"TransformJobName": self.job_name})
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            logger.info("Transform job %s is already stopped or not running.", self.job_name)

    def wait(self, logs: bool = True, *, poll: float = 0.5, out: TextIO | None = None) -> dict[str, Any]:
        """Poll until the job is Completed, Failed or Stopped, printing its log lines as they
        arrive with `logs`; raise `UnexpectedStatusException` naming the FailureReason if it
        failed. Returns the final DescribeTransformJob."""
        emit = lambda line: print(line, file=out or sys.stdout, flush=True)  # noqa: E731
        follower = LogFollower(self.session, self.job_name, emit) if logs else None
        description = self.describe()
        while description["TransformJobStatus"] not in TERMINAL_STATUSES:
            if follower is not None:
                follower.drain()
            time.sleep(poll)
            description = self.describe()
        if follower is not None:
            follower.drain()  # the closing line is written before the final status, so this gets it
        check_job_status(self.job_name, description)
        return description


class LogFollower:
    """Reads a job's log streams (`<job>/…` in the TransformJobs group) forward from where it
    last stopped, handing each new event's message to `emit` in time order."""

    def __init__(self, session: Session, job_name: str, emit: Callable[[str], None]) -> None:
        self.session = session
        self.job_name = job_name
        self.emit = emit
        self.tokens: dict[str, str | None] = {}

    def _refresh_streams(self) -> None:
        request: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{self.job_name}/"}
        while True:
            try:
                page = self.session.describe_log_streams(request)
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return  # no log group yet: nothing has been logged
                raise
            for stream in page.get("logStreams", []):
                self.tokens.setdefault(stream["logStreamName"], None)
            if not page.get("nextToken"):
                return
            request["nextToken"] = page["nextToken"]

    def drain(self) -> int:
        """Emit every event logged since the last drain (in streams new or known), in time order;
        returns how many. The streams are listed again once the known ones are read: a stream
        created meanwhile joins this drain, since its first events may be older than ones just
        read from another stream (a job's data log begins before its instance log ends)."""
        events: list[tuple[int, str, str]] = []
        read: set[str] = set()
        self._refresh_streams()
        while unread := sorted(set(self.tokens) - read):
            for stream in unread:
                events.extend((event["timestamp"], stream, event["message"]) for event in self._read(stream))
                read.add(stream)
            self._refresh_streams()
        events.sort(key=lambda event: (event[0], event[1]))  # stable: each stream keeps its order
        for _, _, message in events:
            self.emit(message)
        return len(events)

    def _read(self, stream: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            request: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
            if self.tokens[stream] is not None:
                request["nextToken"] = self.tokens[stream]
            page = self.session.get_log_events(request)
            self.tokens[stream] = page.get("nextForwardToken") or self.tokens[stream]
            if not page.get("events"):
                return events
            events.extend(page["events"])


def check_job_status(job_name: str, description: dict[str, Any]) -> None:
    """Raise `UnexpectedStatusException` unless the job Completed; a Stopped job only warns."""
    status = description["TransformJobStatus"]
    if status == "Stopped":
        logger.warning("Transform job %s ended with status 'Stopped' rather than 'Completed'.", job_name)
    elif status != "Completed":
        reason = description.get("FailureReason", "(No reason provided)")
        raise UnexpectedStatusException(
            f"Error for Transform job {job_name}: {status}. Reason: {reason}",
            allowed_statuses=["Completed", "Stopped"],
            actual_status=status,
        )


def format_tags(tags: dict[str, str] | list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    """Tags as the API takes them; a `{key: value}` dict is accepted, as the SDK's `format_tags`."""
    if isinstance(tags, dict):
        return [{"Key": str(key), "Value": str(value)} for key, value in tags.items()]
    return tags


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value
