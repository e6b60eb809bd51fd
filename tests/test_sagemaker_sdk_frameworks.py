"""The SageMaker Python SDK 2.x framework model classes, as users write them, against a real
`conveyor server` and the S3 test server: SKLearnModel and XGBoostModel upload
`sourcedir.tar.gz` and run in script mode; PyTorchModel repacks `code/` into the model data."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.test_s3_jobs import unique
from tests.test_sagemaker_sdk import network_watch, sagemaker, sagemaker_session, server  # noqa: F401 (fixtures)

ROLE = "arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole"

SCALER = """
import os

from helpers import scale

def model_fn(model_dir):
    return float(open(os.path.join(model_dir, "factor.txt")).read())

def predict_fn(data, model):
    return scale(data, model)
"""
# PyTorch's default input_fn and output_fn make and read torch tensors; this handler needs no torch.
SCALER_WITHOUT_TORCH = SCALER + """
import numpy as np

def input_fn(body, content_type):
    return np.array([[float(value) for value in line.split(",")] for line in body.splitlines()])

def output_fn(prediction, accept):
    return "".join(f"{value}\\n" for value in prediction)
"""
HELPERS = """
def scale(rows, factor):
    return rows.sum(axis=1) * factor
"""


def put_tarball(bucket: str, key: str, files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def source_dir(root: Path, files: dict[str, str]) -> str:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return str(root)


def transform(model: Any, bucket: str, prefix: str, rows: bytes) -> bytes:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/input/rows.csv", Body=rows)
    transformer = model.transformer(
        instance_count=1, instance_type="ml.m5.xlarge", output_path=f"s3://{bucket}/{prefix}/output", accept="text/csv", assemble_with="Line",
    )  # fmt: skip
    transformer.transform(f"s3://{bucket}/{prefix}/input", content_type="text/csv", split_type="Line")
    transformer.wait(logs=False)
    return s3.get_object(Bucket=bucket, Key=f"{prefix}/output/rows.csv.out")["Body"].read()


def test_sklearn_model_with_source_dir_and_a_helper_module(network_watch: Any, sagemaker_session: Any, s3_bucket: str, tmp_path: Path) -> None:
    from sagemaker.sklearn import SKLearnModel

    prefix = unique("sklearn")
    model = SKLearnModel(
        model_data=put_tarball(s3_bucket, f"{prefix}/model.tar.gz", {"factor.txt": b"2"}), role=ROLE, entry_point="inference.py",
        source_dir=source_dir(tmp_path / "src", {"inference.py": SCALER, "helpers.py": HELPERS}),
        framework_version="1.2-1", py_version="py3", sagemaker_session=sagemaker_session,
    )  # fmt: skip
    assert transform(model, s3_bucket, prefix, b"1,2\n3,4\n") == b"6.0\n14.0\n"
    environment = sagemaker_session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"].startswith(f"s3://{s3_bucket}/") and environment["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    assert network_watch.outbound == []


def test_xgboost_model_in_framework_mode_uses_the_toolkits_default_input_and_predict(sagemaker_session: Any, s3_bucket: str, tmp_path: Path) -> None:
    import numpy as np
    import xgboost
    from sagemaker.xgboost import XGBoostModel

    features = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]] * 8)
    booster = xgboost.train({"objective": "reg:squarederror", "max_depth": 2}, xgboost.DMatrix(features, label=features.sum(axis=1)), 5)
    booster.save_model(str(tmp_path / "model.json"))
    handler = """
    import os
    import xgboost

    def model_fn(model_dir):
        booster = xgboost.Booster()
        booster.load_model(os.path.join(model_dir, "model.json"))
        return booster
    """
    prefix = unique("xgboost-framework")
    model = XGBoostModel(
        model_data=put_tarball(s3_bucket, f"{prefix}/model.tar.gz", {"model.json": (tmp_path / "model.json").read_bytes()}),
        role=ROLE, entry_point="inference.py", source_dir=source_dir(tmp_path / "src", {"inference.py": handler}),
        framework_version="1.7-1", sagemaker_session=sagemaker_session,
    )  # fmt: skip
    answer = transform(model, s3_bucket, prefix, b"0,1\n1,1\n")
    expected = booster.predict(xgboost.DMatrix(np.array([[0.0, 1.0], [1.0, 1.0]])))
    assert [float(value) for value in answer.split()] == pytest.approx(expected.tolist(), rel=1e-6)


def test_pytorch_model_repacks_code_into_the_model_data(sagemaker_session: Any, s3_bucket: str, tmp_path: Path) -> None:
    from sagemaker.pytorch import PyTorchModel

    prefix = unique("pytorch")
    model = PyTorchModel(
        model_data=put_tarball(s3_bucket, f"{prefix}/model.tar.gz", {"factor.txt": b"3"}), role=ROLE, entry_point="inference.py",
        source_dir=source_dir(tmp_path / "src", {"inference.py": SCALER_WITHOUT_TORCH, "helpers.py": HELPERS}),
        framework_version="2.1", py_version="py310", sagemaker_session=sagemaker_session,
    )  # fmt: skip
    assert transform(model, s3_bucket, prefix, b"1,2\n") == b"9.0\n"
    environment = sagemaker_session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
