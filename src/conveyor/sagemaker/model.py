"""The typed CreateModel request: a model's containers, after validation.

`parse_model` turns SageMaker's JSON shape into these objects or raises `ValidationException`.
CreateModel accepts what SageMaker's CreateModel accepts (ModelDataSource included); what a
transform job cannot use is refused when a job names the model, by `check_model_for_batch`,
as SageMaker does at CreateTransformJob.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from conveyor.errors import FieldError, ValidationException
from conveyor.sagemaker import extensions, shapes
from conveyor.sagemaker.locations import location_errors, normalize_location

if TYPE_CHECKING:
    from conveyor.sagemaker.shapes import Shape

MAX_ENVIRONMENT_BYTES = 32 * 1024  # all keys and values of all containers together (botocore's ContainerDefinition.Environment)
MODEL_DATA_SOURCE_MESSAGE = (
    "SageMaker Batch currently doesn't support Model entity with container definitions which use ModelDataSource attribute"
)
# SageMaker's first-party algorithm repositories (not the framework images such as
# `sagemaker-xgboost`, whose algorithm mode Conveyor runs as built-in XGBoost).
BUILT_IN_ALGORITHMS = frozenset(
    {
        "kmeans", "pca", "lda", "ntm", "factorization-machines", "linear-learner", "knn", "randomcutforest",
        "blazingtext", "object2vec", "ipinsights", "image-classification", "object-detection",
        "semantic-segmentation", "seq2seq", "forecasting-deepar", "xgboost",
    }
)  # fmt: skip
RUNNABLE_BUILT_IN_ALGORITHMS = frozenset({"kmeans", "xgboost"})
"""Built-in algorithm images Conveyor runs in-process (docs/semantics.md, decision 20); `xgboost`
is the legacy repository of the XGBoost algorithm, served as `sagemaker-xgboost` is."""
_ECR_IMAGE = re.compile(
    r"\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/(?P<repository>[^:@]+)(?:[:@].*)?"
)


@dataclass(frozen=True)
class ContainerSpec:
    image: str | None = None
    model_data_url: str | None = None  # normalised: s3://bucket/key or file:///absolute/path
    environment: dict[str, str] = field(default_factory=dict)  # less Conveyor's own keys, which are consumed
    hostname: str | None = None
    model_data_source: dict[str, Any] | None = None  # recorded; a transform job refuses it
    decode_workers: int | None = None  # Environment CONVEYOR_DECODE_WORKERS, consumed


@dataclass(frozen=True)
class ModelSpec:
    name: str
    containers: list[ContainerSpec]  # PrimaryContainer alone, or Containers in order
    inference_mode: Literal["Serial", "Direct"] = "Serial"
    execution_role_arn: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> ContainerSpec:
        return self.containers[0]


def parse_model(request: dict[str, Any]) -> ModelSpec:
    """Validate a CreateModel request and type it; raises `ValidationException` listing every
    broken rule. Exactly one of PrimaryContainer and Containers (1 to 15) must be given."""
    errors = shapes.validate_request("CreateModel", request, checks=_CHECKS)
    if not isinstance(request, dict):
        raise ValidationException(errors)
    primary, containers = request.get("PrimaryContainer"), request.get("Containers")
    if primary is None and containers is None:
        message = "A model needs a container: give PrimaryContainer, or Containers for an inference pipeline"
        errors.append(FieldError("primaryContainer", None, "Member must not be null", message=message))
    elif primary is not None and containers is not None:
        message = "Give either PrimaryContainer or Containers, not both: PrimaryContainer for one container, Containers for an inference pipeline"
        errors.append(FieldError("containers", containers, "Member must be null when PrimaryContainer is given", message=message))
    elif containers == []:
        errors.append(FieldError("containers", containers, "Member must have length greater than or equal to 1"))
    errors.extend(shapes.unique_tag_key_errors(request.get("Tags"), "tags"))
    errors.extend(_environment_size_errors(_container_requests(request)))
    errors.extend(_reserved_key_errors(request))
    if errors:
        raise ValidationException(errors)
    execution = request.get("InferenceExecutionConfig") or {}
    return ModelSpec(
        name=request["ModelName"],
        containers=[_container(container) for container in _container_requests(request)],
        inference_mode=execution.get("Mode") or "Serial",
        execution_role_arn=request.get("ExecutionRoleArn"),
        tags=[dict(tag) for tag in request.get("Tags") or []],
        request=copy.deepcopy(request),
    )


def check_model_for_batch(model: ModelSpec) -> None:
    """Refuse, at CreateTransformJob, a model a transform job cannot run: containers using
    ModelDataSource (as SageMaker does) and SageMaker's built-in algorithm images other than
    XGBoost and k-means, which cannot be pulled or run offline (docs/semantics.md, decision 20)."""
    errors = []
    for index, container in enumerate(model.containers, start=1):
        path = f"containers.{index}.member" if "Containers" in model.request else "primaryContainer"
        if container.model_data_source is not None:
            errors.append(FieldError(f"{path}.modelDataSource", container.model_data_source, "", message=MODEL_DATA_SOURCE_MESSAGE))
        algorithm = built_in_algorithm(container.image)
        if algorithm is not None and algorithm not in RUNNABLE_BUILT_IN_ALGORITHMS:
            message = (
                f"Model '{model.name}' uses the SageMaker built-in algorithm image '{container.image}' ({algorithm}), "
                "which Conveyor cannot run: built-in algorithm images are not available outside SageMaker, and of "
                "the built-in algorithms Conveyor runs XGBoost (the sagemaker-xgboost image) and k-means (the kmeans "
                "image) in-process. Use a Python handler (code/inference.py in the model data, with Image 'conveyor:python') "
                "or your own container image, or point Image at a model server already running (http://host:port); "
                "docs/models.md lists every form a model can take"
            )
            errors.append(FieldError(f"{path}.image", container.image, "", message=message))
    if errors:
        raise ValidationException(errors)


def built_in_algorithm(image: str | None) -> str | None:
    """The algorithm's repository name if `image` is one of SageMaker's built-in algorithm
    images (`<account>.dkr.ecr.<region>.amazonaws.com/kmeans:1`), else None."""
    match = _ECR_IMAGE.fullmatch(image or "")
    if match is None or match.group("repository") not in BUILT_IN_ALGORITHMS:
        return None
    return match.group("repository")


def _image_errors(value: str, shape: Shape, path: str) -> list[FieldError]:
    """Images Conveyor runs (docs/semantics.md, decision 15): besides `registry/repository[:tag]`, an empty Image
    (the Python handler runtime) and `process:<command line>`, whose command has spaces."""
    errors = shapes.length_errors(value, shape, path)
    if value == "" or value.startswith("process:"):
        return errors
    return shapes.constraint_errors(value, shape, path)


_CHECKS: dict[str, shapes.Check] = {"Url": location_errors, "ContainerImage": _image_errors}


def _container_requests(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The container definitions that are JSON objects, in order (others were reported)."""
    primary, containers = request.get("PrimaryContainer"), request.get("Containers")
    if primary is not None:
        return [primary] if isinstance(primary, dict) else []
    if isinstance(containers, list):
        return [container for container in containers if isinstance(container, dict)]
    return []


def _environment_size_errors(containers: list[dict[str, Any]]) -> list[FieldError]:
    """All keys and values of all containers' Environment together ≤ 32 KB (UTF-8 bytes)."""
    total = 0
    for container in containers:
        environment = container.get("Environment")
        if isinstance(environment, dict):
            total += sum(len(str(key).encode()) + len(str(value).encode()) for key, value in environment.items() if value is not None)
    if total <= MAX_ENVIRONMENT_BYTES:
        return []
    message = (
        f"The Environment keys and values of all containers total {total} bytes: "
        f"together they must not exceed {MAX_ENVIRONMENT_BYTES} bytes (32 KB)"
    )
    return [FieldError("environment", total, f"Member must total at most {MAX_ENVIRONMENT_BYTES} bytes", message=message)]


def _reserved_key_errors(request: dict[str, Any]) -> list[FieldError]:
    """Conveyor's own keys in each container's Environment (docs/semantics.md, "Conveyor's
    Environment keys"): a model may hold CONVEYOR_DECODE_WORKERS, the others are a job's."""
    errors = []
    primary = request.get("PrimaryContainer") is not None
    for index, container in enumerate(_container_requests(request), start=1):
        environment = container.get("Environment")
        if isinstance(environment, dict):
            path = "primaryContainer.environment" if primary else f"containers.{index}.member.environment"
            errors.extend(extensions.reserved_key_errors(environment, field=path, model=True))
    return errors


def _container(container: dict[str, Any]) -> ContainerSpec:
    url = container.get("ModelDataUrl")
    environment = dict(container.get("Environment") or {})
    return ContainerSpec(
        image=container.get("Image"),
        model_data_url=normalize_location(url) if url else None,
        environment=extensions.without_reserved_keys(environment),
        hostname=container.get("ContainerHostname"),
        model_data_source=copy.deepcopy(container.get("ModelDataSource")),
        decode_workers=extensions.decode_workers(environment),
    )
