"""RecordIO-protobuf and MXNet NDArray files, checked against the SageMaker SDK's own protobuf code
and the files MXNet's `mx.nd.save` wrote (tests/fixtures/kmeans)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from conveyor.runtimes import mxnet_ndarray, recordio_protobuf

sdk_common = pytest.importorskip("sagemaker.amazon.common")
from sagemaker.amazon.record_pb2 import Record  # noqa: E402

KMEANS_FIXTURES = Path(__file__).parent / "fixtures" / "kmeans"


def sdk_dense(array: np.ndarray, labels: np.ndarray | None = None) -> bytes:
    buffer = io.BytesIO()
    sdk_common.write_numpy_to_dense_tensor(buffer, array, labels)
    return buffer.getvalue()


def test_reads_what_the_sdk_writes_dense_in_every_dtype() -> None:
    for dtype in (np.float32, np.float64, np.int64):
        array = np.arange(12, dtype=dtype).reshape(3, 4) - 5
        records = list(recordio_protobuf.read_records(sdk_dense(array, np.array([1.0, 0.0, 1.0]))))
        assert len(records) == 3
        assert np.array_equal(recordio_protobuf.dense_rows(records), array.astype(np.float64))
        assert [record.label["values"].values.tolist() for record in records] == [[1.0], [0.0], [1.0]]


def test_reads_what_the_sdk_writes_sparse() -> None:
    matrix = scipy.sparse.csr_matrix(np.array([[0, 2.5, 0, 0, 1], [0, 0, 0, 0, 0], [3, 0, 0, 4, 0]], np.float32))
    buffer = io.BytesIO()
    sdk_common.write_spmatrix_to_sparse_tensor(buffer, matrix)
    records = list(recordio_protobuf.read_records(buffer.getvalue()))
    assert records[0].features["values"].keys.tolist() == [1, 4] and records[0].features["values"].shape == (5,)
    assert np.array_equal(recordio_protobuf.dense_rows(records), matrix.toarray())
    data, indices, indptr, width = recordio_protobuf.sparse_rows(records)
    assert np.array_equal(scipy.sparse.csr_matrix((data, indices, indptr), shape=(3, width)).toarray(), matrix.toarray())


def test_written_records_are_what_protobuf_writes_deterministically() -> None:
    label = {
        "distance_to_cluster": recordio_protobuf.encode_float32_value([6.25]),
        "closest_cluster": recordio_protobuf.encode_float32_value([4.0]),
        "probabilities": recordio_protobuf.encode_float32_value([0.25, 0.75]),
    }
    ours = recordio_protobuf.encode_record(label=label)
    record = Record()
    record.label["distance_to_cluster"].float32_tensor.values.extend([6.25])
    record.label["closest_cluster"].float32_tensor.values.extend([4.0])
    record.label["probabilities"].float32_tensor.values.extend([0.25, 0.75])
    assert ours == record.SerializeToString(deterministic=True)
    parsed = Record()
    parsed.ParseFromString(ours)
    assert list(parsed.label["probabilities"].float32_tensor.values) == [0.25, 0.75]
    framed = recordio_protobuf.frame(ours)
    assert [bytes(message) for message in recordio_protobuf.frames(framed)] == [ours]
    assert len(framed) % 4 == 0
    assert [bytes(message) for message in sdk_common.read_recordio(io.BytesIO(framed))] == [ours]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x23\xd7\xcf\x00\x00\x00\x00", "starts with 0xCFD7230A, not the magic number 0xCED7230A"),
        (b"\x0a\x23\xd7\xce\x09\x00\x00\x00abc", "says 9 bytes but only 3 follow"),
        (b"\x0a\x23\xd7\xce", "cut short: 4 bytes left, 8 needed"),
        (recordio_protobuf.frame(b"\x0a\x05\x0a\x01"), "record 0 is not a valid Record message"),
    ],
)
def test_broken_bodies_are_named(data: bytes, message: str) -> None:
    with pytest.raises(recordio_protobuf.RecordFormatError, match=message):
        list(recordio_protobuf.read_records(data))


def test_mxnet_files_read_as_mxnet_wrote_them() -> None:
    expected = np.array(json.loads((KMEANS_FIXTURES / "expected.json").read_text())["centroids"], np.float32)
    listed = mxnet_ndarray.load(str(KMEANS_FIXTURES / "model_algo-1"))
    assert isinstance(listed, list) and listed[0].dtype == np.float32 and np.array_equal(listed[0], expected)
    named = mxnet_ndarray.load(str(KMEANS_FIXTURES / "named.params"))
    assert isinstance(named, dict) and list(named) == ["centroids"] and np.array_equal(named["centroids"], expected)
    wide = mxnet_ndarray.load(str(KMEANS_FIXTURES / "float64" / "model_algo-1"))
    assert wide[0].dtype == np.float64 and np.array_equal(wide[0], expected)


def test_not_an_mxnet_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model_algo-1"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(mxnet_ndarray.NDArrayFileError, match=r"starts with 0x.*not MXNet's NDArray list magic 0x112"):
        mxnet_ndarray.load(str(path))
    path.write_bytes((KMEANS_FIXTURES / "model_algo-1").read_bytes()[:50])
    with pytest.raises(mxnet_ndarray.NDArrayFileError, match="ends at byte 50"):
        mxnet_ndarray.load(str(path))
