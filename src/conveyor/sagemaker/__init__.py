"""SageMaker's API as Conveyor reads it: typed requests, their rules, and SageMaker's wording.

`parse_transform_job` and `parse_model` turn CreateTransformJob / CreateModel JSON into typed
objects or raise `ValidationException` listing every broken rule (the limits and enums come
from botocore's own service model, `shapes`); `check_model_for_batch` refuses models a transform
job cannot run; `jsonpath` holds the grammar of SageMaker's data-processing filters. Nothing
here imports the rest of Conveyor but `conveyor.errors`.
"""

from conveyor.sagemaker.locations import LocationError, is_local, normalize_location
from conveyor.sagemaker.model import ContainerSpec, ModelSpec, check_model_for_batch, parse_model
from conveyor.sagemaker.transform_job import (
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
    "ContainerSpec",
    "DataCaptureConfig",
    "DataProcessing",
    "LocationError",
    "ModelClientConfig",
    "ModelSpec",
    "TransformInput",
    "TransformJobSpec",
    "TransformOutput",
    "TransformResources",
    "check_model_for_batch",
    "is_local",
    "normalize_location",
    "parse_model",
    "parse_transform_job",
]
