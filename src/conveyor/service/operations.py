"""SageMaker's operations over the typed requests, the store and the scheduler: the one place they live.

Every front end (the API, the console, the CLI, the SDK) calls these with SageMaker's request
shapes and gets SageMaker's response shapes back, or a `ConveyorError` carrying its code and
SageMaker's wording.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from conveyor.engine.allowed_runtimes import check_allowed_runtimes
from conveyor.engine.backends import cluster_nodes
from conveyor.engine.job import WorkItem, iter_work_items, plan_work_items
from conveyor.engine.model_check import check_decode_workers, check_local_handler
from conveyor.engine.store_link import add_planned_items
from conveyor.errors import ResourceInUse, ResourceNotFound, ValidationException, job_not_found
from conveyor.sagemaker import check_model_for_batch, parse_model, parse_transform_job
from conveyor.sagemaker.locations import is_local
from conveyor.sagemaker.shapes import input_shape, unique_tag_key_errors, validate_request, without_nulls
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.service import wire
from conveyor.service.local_roots import check_job_locations, check_model_locations, check_planned_items
from conveyor.settings import Settings
from conveyor.storage.base import StorageError
from conveyor.storage.inputs import InputError, check_output_location
from conveyor.store import STOPPING, TERMINAL, AlreadyExists, InvalidToken, Page, Store, TransformJobRecord


def _validated(operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """The request, checked against the operation's shape, with its null members dropped."""
    errors = validate_request(operation, request)
    if errors:
        raise ValidationException(errors)
    return without_nulls(request, input_shape(operation))


def _time(value: Any) -> datetime | None:
    """A timestamp member as botocore sends it (epoch seconds) or as a datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # out of datetime's range, or NaN
            raise ValidationException(f"Value '{value}' is not a valid timestamp: use epoch seconds or ISO 8601.") from None
    try:
        return _time(float(value))
    except (TypeError, ValueError):
        pass
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationException(f"Value '{value}' is not a valid timestamp: use epoch seconds or ISO 8601.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _tags(request: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in request.get("Tags") or []}


def _listing(
    request: dict[str, Any],
    list_page: Callable[..., Page[Any]],
    items_member: str,
    summary: Callable[[Any], dict[str, Any]],
    **filters: Any,
) -> dict[str, Any]:
    """A List* response: one page of `list_page(**filters)` in the request's sort, as
    `items_member` summaries, and its NextToken; a token this listing did not issue is refused."""
    try:
        page = list_page(
            **filters,
            sort_by=request.get("SortBy", "CreationTime"),
            sort_order=request.get("SortOrder", "Descending"),
            max_results=request.get("MaxResults", 10),
            next_token=request.get("NextToken"),
        )
    except (InvalidToken, OverflowError):  # OverflowError: a forged token's integer beyond SQLite's 64 bits
        raise ValidationException("Invalid pagination token: the NextToken is not one this listing issued.") from None
    response: dict[str, Any] = {items_member: [summary(item) for item in page.items]}
    if page.next_token:
        response["NextToken"] = page.next_token
    return response


class SageMakerOperations:
    def __init__(self, store: Store, settings: Settings, on_change: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.settings = settings
        self.on_change = on_change

    # Models

    def create_model(self, request: dict[str, Any]) -> dict[str, Any]:
        model = parse_model(request)
        primary = request.get("PrimaryContainer") is not None
        check_model_locations(model, self.settings, primary=primary)
        check_allowed_runtimes(model, self.settings.runtimes, primary=primary)
        check_local_handler(model, primary=primary)
        check_decode_workers(model, primary=primary)
        arn = self.settings.arn("model", model.name)
        try:
            self.store.models.create(model.name, arn, request, datetime.now(timezone.utc), tags=_tags(request))
        except AlreadyExists:
            raise ValidationException(f'Cannot create already existing model "{arn}".') from None
        return {"ModelArn": arn}

    def describe_model(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _validated("DescribeModel", request)["ModelName"]
        record = self.store.models.get(name)
        if record is None:
            raise ValidationException(f'Could not find model "{self.settings.arn("model", name)}".')
        return wire.describe_model(record)

    def list_models(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("ListModels", request)
        return _listing(
            request,
            self.store.models.list,
            "Models",
            wire.model_summary,
            name_contains=request.get("NameContains"),
            creation_time_after=_time(request.get("CreationTimeAfter")),
            creation_time_before=_time(request.get("CreationTimeBefore")),
        )

    def delete_model(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _validated("DeleteModel", request)["ModelName"]
        if not self.store.models.delete(name):
            raise ValidationException(f'Could not find model "{self.settings.arn("model", name)}".')
        return {}

    # Transform jobs

    def create_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job = parse_transform_job(request)
        model_record = self.store.models.get(job.model_name)
        if model_record is None:
            raise ValidationException(f'Could not find model "{self.settings.arn("model", job.model_name)}".')
        model = parse_model(model_record.request)
        check_model_for_batch(model)
        primary = model_record.request.get("PrimaryContainer") is not None
        nodes = cluster_nodes(self.settings)
        check_model_locations(model, self.settings, primary=primary, nodes=nodes)
        check_allowed_runtimes(model, self.settings.runtimes, primary=primary)
        check_decode_workers(model, primary=primary, job_decode_workers=job.decode_workers)
        arn = self.settings.arn("transform-job", job.name)
        if self.store.jobs.get(job.name) is not None:
            raise ResourceInUse(f"Job name must be unique within an AWS account and region, and a job with this name already exists ({arn})")
        check_job_locations(job, self.settings, nodes=nodes)
        check_output_location(job.input.data_type, job.input.uri, job.output.output_path)
        items = self._planned_items(job, nodes)
        try:
            self.store.jobs.create(
                job.name, arn, job.model_name, request, datetime.now(timezone.utc), tags=_tags(request), inputs_listed=items is not None
            )
        except AlreadyExists:
            raise ResourceInUse(f"Job name must be unique within an AWS account and region, and a job with this name already exists ({arn})") from None
        if items is not None:
            add_planned_items(self.store, job.name, items)
        self.on_change()
        return {"TransformJobArn": arn}

    def _planned_items(self, job: TransformJobSpec, nodes: int) -> list[WorkItem] | None:
        """The job's items, listed and checked now; None for a job whose scheduler lists them
        as it runs (docs/semantics.md, "Listing"), once one input has been found here.

        Only an S3 prefix with an S3 output is listed as the job runs. A local input's every
        object (a link may point anywhere) and a local output's every path are checked against
        the server's trust boundary before the job is accepted (docs/security.md), as is every
        object a manifest names, and every path of a job on a Ray cluster of several nodes."""
        try:
            if nodes <= 1 and job.input.data_type == "S3Prefix" and not is_local(job.input.uri) and not is_local(job.output.output_path):
                next(iter_work_items(job, self.settings))
                return None
            items = plan_work_items(job, self.settings)
        except InputError as exc:
            raise ValidationException(str(exc)) from None
        except StorageError as exc:
            raise ValidationException(f"Could not list the input data source {job.input.uri}: {exc.code}: {exc.detail}") from None
        check_planned_items(items, self.settings, nodes=nodes)
        return items

    def describe_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _validated("DescribeTransformJob", request)["TransformJobName"]
        return wire.describe_transform_job(self._job(name))

    def list_transform_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("ListTransformJobs", request)
        return _listing(
            request,
            self.store.jobs.list,
            "TransformJobSummaries",
            wire.transform_job_summary,
            name_contains=request.get("NameContains"),
            status_equals=request.get("StatusEquals"),
            creation_time_after=_time(request.get("CreationTimeAfter")),
            creation_time_before=_time(request.get("CreationTimeBefore")),
            last_modified_time_after=_time(request.get("LastModifiedTimeAfter")),
            last_modified_time_before=_time(request.get("LastModifiedTimeBefore")),
        )

    def stop_transform_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _validated("StopTransformJob", request)["TransformJobName"]
        record = self._job(name)
        if record.status in TERMINAL:
            raise ValidationException(f"The request was rejected because the transform job is in status {record.status}.")
        if record.status != STOPPING:
            self.store.jobs.transition(name, STOPPING)
        self.on_change()
        return {}

    def _job(self, name: str) -> TransformJobRecord:
        record = self.store.jobs.get(name)
        if record is None:
            raise job_not_found(name)
        return record

    # Tags

    def _resource(self, arn: str) -> None:
        _, _, rest = arn.partition(":sagemaker:")
        kind, _, name = rest.rpartition(":")[2].partition("/")
        found = (kind == "model" and self.store.models.get(name) is not None) or (
            kind == "transform-job" and self.store.jobs.get(name) is not None
        )
        if not found or arn not in (self.settings.arn(kind, name),):
            raise ResourceNotFound(f"Could not find resource {arn}.")

    def add_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        errors = validate_request("AddTags", request) + unique_tag_key_errors(request.get("Tags"), "tags")
        if errors:
            raise ValidationException(errors)
        request = without_nulls(request, input_shape("AddTags"))
        self._resource(request["ResourceArn"])
        tags = _tags(request)
        self.store.tags.add(request["ResourceArn"], tags)
        return {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}

    def list_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("ListTags", request)
        self._resource(request["ResourceArn"])
        tags = self.store.tags.list(request["ResourceArn"])
        return {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}

    def delete_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        request = _validated("DeleteTags", request)
        self._resource(request["ResourceArn"])
        self.store.tags.delete(request["ResourceArn"], request["TagKeys"])
        return {}
