"""The batch environment: model env, then SAGEMAKER_* batch variables, then the job's env."""

from __future__ import annotations

import pytest

from conveyor.runtimes.environment import batch_environment


def test_only_sagemaker_batch_when_the_job_set_no_execution_parameters():
    environment = batch_environment(
        model_env={"A": "model"}, job_env={}, max_concurrent_transforms=None, batch_strategy=None, max_payload_mb=None
    )
    assert environment == {"A": "model", "SAGEMAKER_BATCH": "true"}


def test_all_batch_variables_when_the_job_set_them():
    environment = batch_environment(
        model_env={}, job_env={}, max_concurrent_transforms=4, batch_strategy="SingleRecord", max_payload_mb=0
    )
    assert environment == {
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
    }
    assert batch_environment(
        model_env={}, job_env={}, max_concurrent_transforms=None, batch_strategy="MultiRecord", max_payload_mb=None
    )["SAGEMAKER_BATCH_STRATEGY"] == "MULTI_RECORD"


def test_merge_order_model_then_batch_then_job():
    environment = batch_environment(
        model_env={"SHARED": "model", "SAGEMAKER_BATCH": "false", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1", "ONLY_MODEL": "m"},
        job_env={"SHARED": "job", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "9"},
        max_concurrent_transforms=2,
        batch_strategy=None,
        max_payload_mb=6,
    )
    assert environment == {
        "SHARED": "job",
        "SAGEMAKER_BATCH": "true",  # batch variables override the model's
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",
        "ONLY_MODEL": "m",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "9",  # the job's Environment wins over everything
    }


def test_inputs_are_not_modified():
    model_env = {"A": "1"}
    job_env = {"B": "2"}
    batch_environment(model_env=model_env, job_env=job_env, max_concurrent_transforms=1, batch_strategy=None, max_payload_mb=None)
    assert model_env == {"A": "1"} and job_env == {"B": "2"}


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="batch_strategy must be MultiRecord or SingleRecord, got 'Bulk'"):
        batch_environment(model_env={}, job_env={}, max_concurrent_transforms=None, batch_strategy="Bulk", max_payload_mb=None)
    with pytest.raises(TypeError, match="max_payload_mb must be an int"):
        batch_environment(model_env={}, job_env={}, max_concurrent_transforms=None, batch_strategy=None, max_payload_mb="6")  # type: ignore[arg-type]
