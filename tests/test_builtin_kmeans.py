"""Built-in k-means in-process: MXNet's `model_algo-1` read with numpy, the Developer Guide's
request and response formats, and `conveyor transform` on the `kmeans` image.

The centroids (tests/fixtures/kmeans, written by MXNet 1.9.1's `mx.nd.save`) are
[0,0,0,0], [5,5,5,5] and [-3,2,0.5,1.25]; the rows below sit at distances 2, √2 and √0.3125."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from conveyor.runtimes.base import InvocationError, RuntimeStartError
from conveyor.runtimes.builtin_kmeans import BuiltinKMeansRuntime
from conveyor.runtimes.registry import RuntimeTarget, kind_for
from conveyor.sagemaker import parse_model
from tests.test_transform_cli import conveyor

FIXTURES = Path(__file__).parent / "fixtures" / "kmeans"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/kmeans:1"
ROWS = [[1, 1, 1, 1], [4, 5, 6, 5], [-3, 2, 0, 1]]
CSV_BODY = b"1,1,1,1\n4,5,6,5\n-3,2,0,1\n"
JSON_ANSWER = (
    b'{"predictions": [{"closest_cluster": 0.0, "distance_to_cluster": 2.0}, '
    b'{"closest_cluster": 1.0, "distance_to_cluster": 1.4142135381698608}, '
    b'{"closest_cluster": 2.0, "distance_to_cluster": 0.55901700258255}]}'
)
JSONLINES_ANSWER = (
    b'{"closest_cluster": 0.0, "distance_to_cluster": 2.0}\n'
    b'{"closest_cluster": 1.0, "distance_to_cluster": 1.4142135381698608}\n'
    b'{"closest_cluster": 2.0, "distance_to_cluster": 0.55901700258255}\n'
)
CSV_ANSWER = b"0.0,2.0\n1.0,1.4142135381698608\n2.0,0.55901700258255\n"


def record(cluster: bytes, distance: bytes) -> bytes:
    message = (
        b"\x12\x1b\n\x0fclosest_cluster\x12\x08\x12\x06\n\x04" + cluster
        + b"\x12\x1f\n\x13distance_to_cluster\x12\x08\x12\x06\n\x04" + distance
    )  # fmt: skip
    return b"\x0a\x23\xd7\xce" + len(message).to_bytes(4, "little") + message + b"\0" * (-len(message) % 4)


RECORDIO_ANSWER = (
    record(b"\x00\x00\x00\x00", b"\x00\x00\x00@") + record(b"\x00\x00\x80?", b"\xf3\x04\xb5?") + record(b"\x00\x00\x00@", b"\xbd\x1b\x0f?")
)


def runtime(model_dir: Path = FIXTURES, **environment: str) -> BuiltinKMeansRuntime:
    model = BuiltinKMeansRuntime(str(model_dir), environment)
    model.start()
    return model


def invoke(body: bytes, content_type: str | None, accept: str | None = None, model: BuiltinKMeansRuntime | None = None) -> bytes:
    return (model or runtime()).invoke(body, content_type=content_type, accept=accept, timeout=60)


# -- responses, byte for byte ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        ("application/json", JSON_ANSWER),
        (None, JSON_ANSWER),
        ("*/*", JSON_ANSWER),
        ("application/jsonlines", JSONLINES_ANSWER),
        ("text/csv", CSV_ANSWER),
        ("application/x-recordio-protobuf", RECORDIO_ANSWER),
    ],
)
def test_every_accept_byte_for_byte(accept: str | None, answer: bytes) -> None:
    assert invoke(CSV_BODY, "text/csv", accept) == answer


def test_the_recordio_answer_reads_back_with_the_sdk() -> None:
    from sagemaker.amazon.common import read_records

    records = read_records(io.BytesIO(RECORDIO_ANSWER))
    assert [record.label["closest_cluster"].float32_tensor.values[0] for record in records] == [0.0, 1.0, 2.0]
    distances = [record.label["distance_to_cluster"].float32_tensor.values[0] for record in records]
    assert distances == pytest.approx([2.0, 2**0.5, 0.3125**0.5], rel=1e-6)


def test_the_default_accept_can_be_set_by_the_model() -> None:
    assert invoke(CSV_BODY, "text/csv", None, runtime(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="application/jsonlines")) == JSONLINES_ANSWER


# -- requests in every documented form -----------------------------------------------------------


def test_json_instances_dense_nested_and_sparse() -> None:
    body = {
        "instances": [
            {"features": ROWS[0]},
            {"data": {"features": {"values": ROWS[1]}}},
            {"data": {"features": {"keys": [0, 1, 3], "shape": [4], "values": [-3, 2, 1]}}},
        ]
    }
    assert invoke(json.dumps(body).encode(), "application/json", "text/csv") == CSV_ANSWER


def test_jsonlines_instances() -> None:
    lines = [{"features": ROWS[0]}, {"data": {"features": {"values": ROWS[1]}}}, {"data": {"features": {"keys": [0, 1, 3], "shape": [4], "values": [-3, 2, 1]}}}]
    body = "\n".join(json.dumps(line) for line in lines).encode() + b"\n"
    assert invoke(body, "application/jsonlines", "application/jsonlines") == JSONLINES_ANSWER


def test_recordio_protobuf_dense_and_sparse() -> None:
    import scipy.sparse
    from sagemaker.amazon.common import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor

    dense = io.BytesIO()
    write_numpy_to_dense_tensor(dense, np.array(ROWS, np.float32))
    assert invoke(dense.getvalue(), "application/x-recordio-protobuf", "text/csv") == CSV_ANSWER
    sparse = io.BytesIO()
    write_spmatrix_to_sparse_tensor(sparse, scipy.sparse.csr_matrix(np.array(ROWS, np.float32)))
    assert invoke(sparse.getvalue(), "application/x-recordio-protobuf", "text/csv") == CSV_ANSWER


def test_csv_with_label_size_and_crlf() -> None:
    assert invoke(CSV_BODY.replace(b"\n", b"\r\n"), "text/csv;label_size=0", "text/csv") == CSV_ANSWER


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"1,2,3\n", "text/csv", "records have 3 features but the model's centroids have feature_dim 4"),
        (b"1,x,3,4\n", "text/csv", "could not convert string to float: 'x'"),
        (b'{"rows": []}', "application/json", '{"instances": [...]}'),
        (b"1,1,1,1", "image/png", "content type 'image/png' is not supported by the k-means algorithm"),
    ],
)
def test_bad_requests_are_400_and_name_the_rule(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InvocationError) as caught:
        invoke(body, content_type)
    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert caught.value.message.startswith("Unable to evaluate payload provided: ") and message in caught.value.message


def test_an_unsupported_accept_is_406() -> None:
    with pytest.raises(InvocationError) as caught:
        invoke(CSV_BODY, "text/csv", "application/x-npy")
    assert caught.value.status == 406 and "application/x-npy" in caught.value.message


def test_a_model_without_centroids_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(RuntimeStartError, match=f"holds model_algo-1, the centroids; {tmp_path} holds model.bin"):
        runtime(tmp_path)


def test_the_registry_picks_built_in_kmeans_for_the_kmeans_image_only() -> None:
    def kind(image: str) -> str:
        model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": image, "ModelDataUrl": "s3://b/model.tar.gz"}})
        return kind_for(RuntimeTarget.for_model(model, [str(FIXTURES)], {})).name

    assert kind(IMAGE) == "kmeans"
    assert kind("174872318107.dkr.ecr.us-west-2.amazonaws.com/kmeans:latest") == "kmeans"
    assert kind("kmeans:1") == "docker"  # a local image of that name is the user's own


# -- end to end: conveyor transform ---------------------------------------------------------------


def test_conveyor_transform_runs_built_in_kmeans_from_a_tarball(tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        archive.add(FIXTURES / "model_algo-1", arcname="model_algo-1")
    request = {"ModelName": "kmeans", "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": str(tmp_path / "model.tar.gz")}}
    (tmp_path / "model.json").write_text(json.dumps(request))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "valid-data.csv").write_bytes(CSV_BODY)
    result = conveyor(
        "transform", "--model-request", str(tmp_path / "model.json"), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--content-type", "text/csv", "--split-type", "Line",
        "--accept", "application/jsonlines", "--assemble-with", "Line", "--quiet", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "valid-data.csv.out").read_bytes() == JSONLINES_ANSWER
