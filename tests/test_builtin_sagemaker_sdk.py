"""SageMaker's built-in algorithms through the SageMaker Python SDK 2.x and boto3, against a real
`conveyor server` and the S3 test server, as users write them:

- `sagemaker.model.Model` with the built-in XGBoost image of `image_uris.retrieve("xgboost",
  region, "1.7-1")`, and the Developer Guide's data-processing example on it (InputFilter `$[1:]`,
  JoinSource Input, OutputFilter `$[0,-1]`);
- `KMeansModel(model_data=…, role=<a full role ARN>)`;
- a boto3 CreateModel naming another built-in image, refused with the advice.

The models are the fixtures written by XGBoost 1.7.6 and MXNet 1.9.1 (tests/fixtures).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.test_builtin_kmeans import FIXTURES as KMEANS_FIXTURES
from tests.test_builtin_kmeans import JSONLINES_ANSWER as KMEANS_JSONLINES
from tests.test_builtin_xgboost import EXPECTED, LOGISTIC
from tests.test_builtin_xgboost import FIXTURES as XGBOOST_FIXTURES
from tests.test_s3_jobs import unique
from tests.test_sagemaker_sdk import network_watch, sagemaker, sagemaker_session, server  # noqa: F401 (fixtures)

ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole"
REGION = "us-east-1"


def upload_tarball(bucket: str, key: str, files: dict[str, Path]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, path in files.items():
            archive.add(path, arcname=name)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def read_output(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def rows_csv(with_ids: bool = False) -> bytes:
    lines = [("id%d," % index if with_ids else "") + ",".join(f"{value:.3f}" for value in row) for index, row in enumerate(EXPECTED["rows"])]
    return ("\n".join(lines) + "\n").encode()


def xgboost_model(sagemaker_session: Any, bucket: str) -> Any:
    from sagemaker import image_uris
    from sagemaker.model import Model

    image = image_uris.retrieve("xgboost", REGION, "1.7-1")
    assert image == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    model_data = upload_tarball(bucket, f"{unique('xgboost')}/model.tar.gz", {"xgboost-model": XGBOOST_FIXTURES / "binary" / "xgboost-model"})
    return Model(image_uri=image, model_data=model_data, role=ROLE, sagemaker_session=sagemaker_session)


def test_built_in_xgboost_model_through_the_sdk(network_watch: Any, sagemaker_session: Any, s3_bucket: str) -> None:
    prefix = unique("xgb-batch")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"{prefix}/input/rows.csv", Body=rows_csv())
    transformer = xgboost_model(sagemaker_session, s3_bucket).transformer(
        instance_count=1, instance_type="ml.m5.xlarge", output_path=f"s3://{s3_bucket}/{prefix}/output",
        strategy="MultiRecord", assemble_with="Line", accept="text/csv",
    )  # fmt: skip
    transformer.transform(f"s3://{s3_bucket}/{prefix}/input", content_type="text/csv", split_type="Line")
    transformer.wait(logs=False)
    assert read_output(s3_bucket, f"{prefix}/output/rows.csv.out") == LOGISTIC
    assert network_watch.outbound == []


def test_the_developer_guides_data_processing_example_on_built_in_xgboost(sagemaker_session: Any, s3_bucket: str) -> None:
    prefix = unique("xgb-join")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"{prefix}/input/rows.csv", Body=rows_csv(with_ids=True))
    transformer = xgboost_model(sagemaker_session, s3_bucket).transformer(
        instance_count=1, instance_type="ml.m5.xlarge", output_path=f"s3://{s3_bucket}/{prefix}/output",
        assemble_with="Line", accept="text/csv",
    )  # fmt: skip
    transformer.transform(
        f"s3://{s3_bucket}/{prefix}/input", content_type="text/csv", split_type="Line",
        input_filter="$[1:]", join_source="Input", output_filter="$[0,-1]",
    )  # fmt: skip
    transformer.wait(logs=False)
    expected = [f"id{index},{prediction.decode()}" for index, prediction in enumerate(LOGISTIC.split())]
    assert read_output(s3_bucket, f"{prefix}/output/rows.csv.out").decode().splitlines() == expected


def test_kmeans_model_through_the_sdk(sagemaker_session: Any, s3_bucket: str) -> None:
    from sagemaker import KMeansModel

    prefix = unique("kmeans")
    model_data = upload_tarball(s3_bucket, f"{prefix}/model/model.tar.gz", {"model_algo-1": KMEANS_FIXTURES / "model_algo-1"})
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"{prefix}/input/valid-data.csv", Body=b"1,1,1,1\n4,5,6,5\n-3,2,0,1\n")
    model = KMeansModel(model_data=model_data, role=ROLE, sagemaker_session=sagemaker_session)
    transformer = model.transformer(
        instance_count=1, instance_type="ml.m5.xlarge", output_path=f"s3://{s3_bucket}/{prefix}/output",
        accept="application/jsonlines", assemble_with="Line",
    )  # fmt: skip
    transformer.transform(f"s3://{s3_bucket}/{prefix}/input", content_type="text/csv", split_type="Line")
    transformer.wait(logs=False)
    assert read_output(s3_bucket, f"{prefix}/output/valid-data.csv.out") == KMEANS_JSONLINES
    described = sagemaker_session.sagemaker_client.describe_model(ModelName=transformer.model_name)
    assert described["PrimaryContainer"]["Image"] == "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1"


def test_another_built_in_image_is_refused_with_the_ways_that_work(server: Any, s3_bucket: str) -> None:
    sm = server.client()
    name = unique("pca")
    sm.create_model(
        ModelName=name, ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "382416733822.dkr.ecr.us-east-1.amazonaws.com/pca:1", "ModelDataUrl": f"s3://{s3_bucket}/pca/model.tar.gz"},
    )  # fmt: skip
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.create_transform_job(
            TransformJobName=unique("job"), ModelName=name,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{s3_bucket}/pca/in"}}},
            TransformOutput={"S3OutputPath": f"s3://{s3_bucket}/pca/out"},
            TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        )  # fmt: skip
    message = json.dumps(caught.value.response["Error"])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "XGBoost (the sagemaker-xgboost image) and k-means (the kmeans image)" in message
