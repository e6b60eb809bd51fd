"""CreateModel requests: parsing, validation, and what a transform job refuses to run."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import ValidationException
from conveyor.sagemaker import ContainerSpec, ModelSpec, check_model_for_batch, parse_model

MODEL_DATA_SOURCE_MESSAGE = (
    "SageMaker Batch currently doesn't support Model entity with container definitions which use ModelDataSource attribute"
)


def model_request(**container: Any) -> dict[str, Any]:
    return {"ModelName": "my-model", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": "s3://bucket/model.tar.gz", **container}}


def error_message(request: Any) -> str:
    with pytest.raises(ValidationException) as caught:
        parse_model(request)
    assert caught.value.code == "ValidationException" and caught.value.status == 400
    return caught.value.message


def batch_error(model: ModelSpec) -> str:
    with pytest.raises(ValidationException) as caught:
        check_model_for_batch(model)
    return caught.value.message


# -- parsing -----------------------------------------------------------------------------------


def test_primary_container() -> None:
    request = model_request(Environment={"SAGEMAKER_PROGRAM": "inference.py"}, ContainerHostname="main")
    request.update(ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole", Tags=[{"Key": "team", "Value": "ml"}])
    model = parse_model(request)
    assert model.name == "my-model" and model.inference_mode == "Serial"
    assert model.primary == ContainerSpec(
        image="conveyor:python",
        model_data_url="s3://bucket/model.tar.gz",
        environment={"SAGEMAKER_PROGRAM": "inference.py"},
        hostname="main",
    )
    assert model.execution_role_arn == "arn:aws:iam::123456789012:role/SageMakerRole"
    assert model.tags == [{"Key": "team", "Value": "ml"}]
    assert model.request == request


def test_request_is_a_copy_as_sent() -> None:
    request = model_request()
    model = parse_model(request)
    request["PrimaryContainer"]["Image"] = "changed"
    assert model.request["PrimaryContainer"]["Image"] == "conveyor:python"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/models/model.tar.gz", "s3://bucket/models/model.tar.gz"),
        ("https://bucket.s3.eu-west-1.amazonaws.com/models/model.tar.gz", "s3://bucket/models/model.tar.gz"),
        ("https://s3.amazonaws.com/bucket/models/model.tar.gz", "s3://bucket/models/model.tar.gz"),
        ("file:///srv/models/model.tar.gz", "file:///srv/models/model.tar.gz"),
        ("/srv/models/model/", "file:///srv/models/model/"),
    ],
)
def test_model_data_url_forms(url: str, expected: str) -> None:
    model = parse_model(model_request(ModelDataUrl=url))
    assert model.primary.model_data_url == expected
    assert model.request["PrimaryContainer"]["ModelDataUrl"] == url


def test_relative_model_data_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_model(model_request(ModelDataUrl="model.tar.gz")).primary.model_data_url == f"file://{tmp_path}/model.tar.gz"


def test_bad_model_data_url() -> None:
    assert error_message(model_request(ModelDataUrl="ftp://host/model.tar.gz")) == (
        "1 validation error detected: Value 'ftp://host/model.tar.gz' at 'primaryContainer.modelDataUrl' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*) or be a local path "
        "(file:///absolute/path or a path)"
    )


def test_no_model_data_and_no_image() -> None:
    model = parse_model({"ModelName": "m", "PrimaryContainer": {}})
    assert model.primary == ContainerSpec()


@pytest.mark.parametrize(
    "image",
    [
        "",
        "conveyor:python",
        "http://127.0.0.1:8080",
        "https://models.example.com/my-model",
        "process:python -m my_server --port 8080",
        "my-image:latest",
        "ghcr.io/org/model@sha256:" + "a" * 64,
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1",  # built-in k-means runs in-process
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest",  # so does the legacy XGBoost image
    ],
)
def test_images_conveyor_runs(image: str) -> None:
    assert parse_model(model_request(Image=image)).primary.image == image


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ("my image", "Member must satisfy regular expression pattern: [\\S]+"),
        ("x" * 256, "Member must have length less than or equal to 255"),
        ("process:" + "x" * 250, "Member must have length less than or equal to 255"),
    ],
)
def test_bad_images(image: str, rule: str) -> None:
    assert error_message(model_request(Image=image)) == (
        f"1 validation error detected: Value '{image}' at 'primaryContainer.image' failed to satisfy constraint: {rule}"
    )


# -- containers --------------------------------------------------------------------------------


def test_inference_pipeline() -> None:
    request = {
        "ModelName": "pipeline",
        "Containers": [
            {"Image": "conveyor:python", "ModelDataUrl": "s3://b/pre.tar.gz", "ContainerHostname": "pre"},
            {"Image": "my-image:1", "ModelDataUrl": "/models/main.tar.gz"},
        ],
    }
    model = parse_model(request)
    assert [container.image for container in model.containers] == ["conveyor:python", "my-image:1"]
    assert model.containers[1].model_data_url == "file:///models/main.tar.gz"
    assert model.inference_mode == "Serial" and model.primary.hostname == "pre"
    request["InferenceExecutionConfig"] = {"Mode": "Direct"}
    assert parse_model(request).inference_mode == "Direct"


def test_neither_container_given() -> None:
    assert error_message({"ModelName": "m"}) == "A model needs a container: give PrimaryContainer, or Containers for an inference pipeline"


def test_both_containers_given() -> None:
    request = model_request()
    request["Containers"] = [{"Image": "a"}]
    assert error_message(request) == (
        "Give either PrimaryContainer or Containers, not both: PrimaryContainer for one container, Containers for an inference pipeline"
    )


@pytest.mark.parametrize(
    ("count", "rule"),
    [(0, "Member must have length greater than or equal to 1"), (16, "Member must have length less than or equal to 15")],
)
def test_container_count(count: int, rule: str) -> None:
    message = error_message({"ModelName": "m", "Containers": [{"Image": "a"}] * count})
    assert message.startswith("1 validation error detected: Value '")
    assert message.endswith(f"' at 'containers' failed to satisfy constraint: {rule}")


def test_fifteen_containers() -> None:
    assert len(parse_model({"ModelName": "m", "Containers": [{"Image": f"image-{index}"} for index in range(15)]}).containers) == 15


def test_container_errors_are_one_based() -> None:
    message = error_message({"ModelName": "m", "Containers": [{"Image": "a"}, {"Image": "a b", "Hostname": "x"}]})
    assert message.startswith("2 validation errors detected: Value 'a b' at 'containers.2.member.image' failed to satisfy constraint")
    assert "Value 'x' at 'containers.2.member.hostname' failed to satisfy constraint: Member must be one of the known members of ContainerDefinition" in message


def test_inference_execution_mode_enum() -> None:
    request = {"ModelName": "m", "Containers": [{"Image": "a"}], "InferenceExecutionConfig": {"Mode": "Parallel"}}
    assert error_message(request) == (
        "1 validation error detected: Value 'Parallel' at 'inferenceExecutionConfig.mode' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Serial, Direct]"
    )


# -- names, role, tags, network ----------------------------------------------------------------


def test_model_name_rules() -> None:
    name = "m" * 64  # the model name pattern has no length cap of its own
    assert error_message({**model_request(), "ModelName": name}) == (
        f"1 validation error detected: Value '{name}' at 'modelName' failed to satisfy constraint: Member must have length "
        "less than or equal to 63"
    )
    name = "m" * 63 + "_"
    assert error_message({**model_request(), "ModelName": name}) == (
        f"2 validation errors detected: Value '{name}' at 'modelName' failed to satisfy constraint: Member must have length "
        f"less than or equal to 63; Value '{name}' at 'modelName' failed to satisfy constraint: Member must satisfy regular "
        "expression pattern: [a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"
    )
    assert error_message({"PrimaryContainer": {}}) == (
        "1 validation error detected: Value null at 'modelName' failed to satisfy constraint: Member must not be null"
    )


@pytest.mark.parametrize(
    ("member", "value", "path", "rule"),
    [
        ("ExecutionRoleArn", "arn:aws:iam::12345:role/x", "executionRoleArn", "Member must satisfy regular expression pattern: arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"),
        ("ExecutionRoleArn", "short", "executionRoleArn", "Member must have length greater than or equal to 20"),
        ("Tags", [{"Key": "k", "Value": "a;b"}], "tags.1.member.value", "Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"),
        ("VpcConfig", {"SecurityGroupIds": [], "Subnets": ["subnet-1"]}, "vpcConfig.securityGroupIds", "Member must have length greater than or equal to 1"),
        ("EnableNetworkIsolation", "true", "enableNetworkIsolation", "Member must be a boolean"),
    ],
)
def test_model_constraints(member: str, value: Any, path: str, rule: str) -> None:
    assert f"at '{path}' failed to satisfy constraint: {rule}" in error_message({**model_request(), member: value})


def test_unicode_tags_and_unique_keys() -> None:
    tags = [{"Key": "Équipe", "Value": "données 数据 ٣"}, {"Key": "équipe", "Value": ""}]
    assert parse_model({**model_request(), "Tags": tags}).tags == tags
    assert error_message({**model_request(), "Tags": [tags[0], tags[0]]}) == (
        "Tag keys must be unique: key 'Équipe' at 'tags.2.member.key' appears more than once in tags"
    )


def test_hostname_pattern() -> None:
    assert error_message(model_request(ContainerHostname="my_host")).endswith(
        "at 'primaryContainer.containerHostname' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    )


# -- environment -------------------------------------------------------------------------------


def test_environment_limits_from_the_model() -> None:
    assert len(parse_model(model_request(Environment={f"K{index}": "v" for index in range(100)})).primary.environment) == 100
    assert error_message(model_request(Environment={f"K{index}": "v" for index in range(101)})).endswith(
        "at 'primaryContainer.environment' failed to satisfy constraint: Member must have length less than or equal to 100"
    )
    assert error_message(model_request(Environment={"K": "v" * 1025})).endswith(
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 1024]"
    )
    assert error_message(model_request(Environment={"K" * 1025: "v"})).endswith(
        "failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024]"
    )
    assert error_message(model_request(Environment={"MY-VAR": "v"})).endswith(
        "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]*]"
    )


def test_environment_total_across_containers() -> None:
    half = {f"K{index:02d}": "v" * 1020 for index in range(16)}  # 16 × (3 + 1020) = 16,368 bytes
    fits = {"ModelName": "m", "Containers": [{"Image": "a", "Environment": half}, {"Image": "b", "Environment": half}]}
    assert len(parse_model(fits).containers) == 2  # 32,736 bytes
    over = {"ModelName": "m", "Containers": [{"Image": "a", "Environment": half}, {"Image": "b", "Environment": {**half, "EXTRA": "v" * 30}}]}
    assert error_message(over) == (
        "The Environment keys and values of all containers total 32771 bytes: together they must not exceed 32768 bytes (32 KB)"
    )


# -- what a transform job refuses ---------------------------------------------------------------


def test_model_data_source_is_accepted_by_create_model_and_refused_for_batch() -> None:
    source = {"S3DataSource": {"S3Uri": "s3://bucket/model/", "S3DataType": "S3Prefix", "CompressionType": "None"}}
    request = {"ModelName": "llm", "PrimaryContainer": {"Image": "my-image:1", "ModelDataSource": source}}
    model = parse_model(request)
    assert model.primary.model_data_source == source
    assert batch_error(model) == MODEL_DATA_SOURCE_MESSAGE


def test_model_data_source_is_validated_by_create_model() -> None:
    request = {"ModelName": "llm", "PrimaryContainer": {"ModelDataSource": {"S3DataSource": {"S3Uri": "s3://b/m/", "S3DataType": "Folder"}}}}
    assert error_message(request) == (
        "2 validation errors detected: "
        "Value 'Folder' at 'primaryContainer.modelDataSource.s3DataSource.s3DataType' failed to satisfy constraint: Member must satisfy enum value set: [S3Prefix, S3Object]; "
        "Value null at 'primaryContainer.modelDataSource.s3DataSource.compressionType' failed to satisfy constraint: Member must not be null"
    )


@pytest.mark.parametrize(
    "image",
    [
        "174872318107.dkr.ecr.us-west-2.amazonaws.com/linear-learner:latest",
        "522234722520.dkr.ecr.us-east-1.amazonaws.com/forecasting-deepar:1",
        "390948362332.dkr.ecr.cn-north-1.amazonaws.com.cn/image-classification:1",
        "382416733822.dkr.ecr.us-east-1.amazonaws.com/randomcutforest@sha256:" + "0" * 64,
        "382416733822.dkr.ecr.us-east-1.amazonaws.com/blazingtext",
    ],
)
def test_built_in_algorithm_images_are_refused_for_batch(image: str) -> None:
    model = parse_model({"ModelName": "algo", "PrimaryContainer": {"Image": image, "ModelDataUrl": "s3://b/model.tar.gz"}})
    message = batch_error(model)
    assert message.startswith(f"Model 'algo' uses the SageMaker built-in algorithm image '{image}'")
    assert "Use a Python handler (code/inference.py in the model data, with Image 'conveyor:python') or your own container image" in message
    assert "Conveyor runs XGBoost (the sagemaker-xgboost image) and k-means (the kmeans image) in-process" in message
    assert "docs/models.md" in message


@pytest.mark.parametrize(
    "image",
    [
        None,
        "",
        "conveyor:python",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1",  # built-in k-means runs in-process
        "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest",  # so does the legacy XGBoost image
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-kmeans:1",
        "kmeans:1",
        "docker.io/library/xgboost:latest",
        "process:python serve.py",
        "http://127.0.0.1:9000",
    ],
)
def test_other_images_are_fine_for_batch(image: str | None) -> None:
    container: dict[str, Any] = {"ModelDataUrl": "s3://b/model.tar.gz"}
    if image is not None:
        container["Image"] = image
    check_model_for_batch(parse_model({"ModelName": "m", "PrimaryContainer": container}))


def test_batch_errors_name_the_pipeline_container() -> None:
    source = {"S3DataSource": {"S3Uri": "s3://b/m/", "S3DataType": "S3Prefix", "CompressionType": "None"}}
    model = parse_model(
        {
            "ModelName": "pipe",
            "Containers": [
                {"Image": "conveyor:python"},
                {"Image": "382416733822.dkr.ecr.us-east-1.amazonaws.com/pca:1", "ModelDataSource": source},
            ],
        }
    )
    with pytest.raises(ValidationException) as caught:
        check_model_for_batch(model)
    assert [error.path for error in caught.value.errors] == ["containers.2.member.modelDataSource", "containers.2.member.image"]
    assert caught.value.message.startswith(f"2 validation errors detected: {MODEL_DATA_SOURCE_MESSAGE}; Model 'pipe' uses")
