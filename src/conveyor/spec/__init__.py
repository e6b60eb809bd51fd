"""Typed SageMaker requests and their validation, in SageMaker's wording.

`parse_transform_job` and `parse_model` turn CreateTransformJob / CreateModel JSON into typed
specs or raise `ValidationException` listing every broken rule; `check_model_for_batch` refuses
models a transform job cannot run. Nothing here imports the rest of Conveyor.
"""

from conveyor.spec.errors import (
    ConveyorError,
    FieldError,
    ResourceInUse,
    ResourceLimitExceeded,
    ResourceNotFound,
    ValidationException,
)
from conveyor.spec.locations import LocationError, is_local, normalize_location
from conveyor.spec.model import ContainerSpec, ModelSpec, check_model_for_batch, parse_model
from conveyor.spec.transform_job import (
    DataCaptureConfig,
    DataProcessing,
    ModelClientConfig,
    TransformInput,
    TransformJobSpec,
    TransformOutput,
    TransformResources,
    parse_transform_job,
)

__all__ = [
    "ConveyorError",
    "ContainerSpec",
    "DataCaptureConfig",
    "DataProcessing",
    "FieldError",
    "LocationError",
    "ModelClientConfig",
    "ModelSpec",
    "ResourceInUse",
    "ResourceLimitExceeded",
    "ResourceNotFound",
    "TransformInput",
    "TransformJobSpec",
    "TransformOutput",
    "TransformResources",
    "ValidationException",
    "check_model_for_batch",
    "is_local",
    "normalize_location",
    "parse_model",
    "parse_transform_job",
]
