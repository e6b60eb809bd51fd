"""The environment a model runs with in a batch transform job (docs/containers.md, "The contract")."""

from __future__ import annotations

from typing import Mapping

_BATCH_STRATEGIES = {
    "MultiRecord": "MULTI_RECORD",
    "SingleRecord": "SINGLE_RECORD",
    "MULTI_RECORD": "MULTI_RECORD",
    "SINGLE_RECORD": "SINGLE_RECORD",
}


def batch_environment(
    *,
    model_env: Mapping[str, str],
    job_env: Mapping[str, str],
    max_concurrent_transforms: int | None,
    batch_strategy: str | None,
    max_payload_mb: int | None,
) -> dict[str, str]:
    """The model's Environment, then the SAGEMAKER_* batch variables, then the job's Environment
    (job values win), as SageMaker's local mode merges them.

    `SAGEMAKER_BATCH` is always set; the other three only when the job itself set the value
    (pass None otherwise), so the container's execution-parameters or the defaults apply.
    """
    environment = dict(model_env)
    environment["SAGEMAKER_BATCH"] = "true"
    if max_payload_mb is not None:
        environment["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(_integer("max_payload_mb", max_payload_mb))
    if batch_strategy is not None:
        if batch_strategy not in _BATCH_STRATEGIES:
            raise ValueError(f"batch_strategy must be MultiRecord or SingleRecord, got {batch_strategy!r}")
        environment["SAGEMAKER_BATCH_STRATEGY"] = _BATCH_STRATEGIES[batch_strategy]
    if max_concurrent_transforms is not None:
        environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(
            _integer("max_concurrent_transforms", max_concurrent_transforms)
        )
    environment.update(job_env)
    return environment


def _integer(name: str, value: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value
