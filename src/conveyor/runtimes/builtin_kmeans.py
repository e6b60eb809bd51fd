"""SageMaker's built-in k-means (the `kmeans` image), in-process, with numpy alone.

The model is `model_algo-1` in the model data: MXNet's NDArray file of the k × feature_dim
centroids (read by `mxnet_ndarray`, so no MXNet at run time). Each record gets its closest
centroid and the Euclidean distance to it. The formats are the Developer Guide's:

- requests ("Common Data Formats — Inference"): `text/csv` (one record a line, the media type's
  parameters such as `label_size=0` ignored), `application/json` (`{"instances": [...]}`),
  `application/jsonlines` (one instance a line), `application/x-recordio-protobuf` (the
  `values` feature of each Record); an instance is `{"features": [...]}` or
  `{"data": {"features": {"values": [...]}}}`, sparse with `keys` and `shape`;
- responses ("K-Means Response Formats"): JSON `{"predictions": [{"closest_cluster": 1.0,
  "distance_to_cluster": 3.0}, …]}`, JSON Lines (one such object a line), CSV (`1.0,3.0` a line)
  and RecordIO-protobuf (one Record a record, both values float32 tensors under `label`).
  `application/json` is the default Accept, as for SageMaker's other first-party algorithms.

Numbers are written as the guide's samples show them: the cluster as a float (`4.0`), the
distance as the float32 it is, printed in full (`6.285102367401123`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from conveyor.runtimes import mxnet_ndarray, recordio_protobuf
from conveyor.runtimes.base import InvocationError, Runtime, RuntimeStartError

MODEL_FILE = "model_algo-1"
JSON, JSONLINES, CSV, RECORDIO = "application/json", "application/jsonlines", "text/csv", "application/x-recordio-protobuf"
ACCEPTS = (JSON, JSONLINES, CSV, RECORDIO)
DEFAULT_ACCEPT = JSON


class BuiltinKMeansRuntime(Runtime):
    """Assigns each record to its closest centroid. Stateless after `start`, so the
    MaxConcurrentTransforms threads share the centroids."""

    def __init__(self, model_dir: str, environment: Mapping[str, str]) -> None:
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.centroids = np.empty((0, 0))
        self._squared_norms = np.empty(0)
        self._default_accept = self.environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT

    def start(self) -> None:
        self.centroids = load_centroids(self.model_dir)
        self._squared_norms = np.einsum("ij,ij->i", self.centroids, self.centroids)

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        if self.centroids.size == 0:
            raise RuntimeError("BuiltinKMeansRuntime.invoke() before start()")
        accept = self._accept(accept)
        try:
            rows = parse_rows(bytes(payload), content_type, self.centroids.shape[1])
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise InvocationError(f"Unable to evaluate payload provided: {exc}", retryable=False, status=400) from exc
        if rows.shape[1] != self.centroids.shape[1]:
            message = (
                f"Unable to evaluate payload provided: records have {rows.shape[1]} features but the model's "
                f"centroids have feature_dim {self.centroids.shape[1]}"
            )
            raise InvocationError(message, retryable=False, status=400)
        clusters, distances = self.assign(rows)
        return encode(clusters, distances, accept)

    def assign(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closest centroid of each row and the Euclidean distance to it (float32)."""
        if len(rows) == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        squared = np.einsum("ij,ij->i", rows, rows)[:, None] - 2.0 * rows @ self.centroids.T + self._squared_norms[None, :]
        clusters = np.argmin(squared, axis=1)
        closest = self.centroids[clusters]
        distances = np.sqrt(np.einsum("ij,ij->i", rows - closest, rows - closest))  # exact, not the expansion
        return clusters, distances.astype(np.float32)

    def _accept(self, accept: str | None) -> str:
        media = (accept or "").split(";", 1)[0].strip().lower()
        if not media or media == "*/*":
            return self._default_accept
        if media not in ACCEPTS:
            raise InvocationError(
                f"Accept type {accept} is not supported by the k-means algorithm; use one of: {', '.join(ACCEPTS)}",
                retryable=False,
                status=406,
            )
        return media

    def close(self) -> None:
        self.centroids = np.empty((0, 0))


def load_centroids(model_dir: str) -> np.ndarray:
    """The k × feature_dim centroids of `model_algo-1`, as float64."""
    path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(path):
        found = ", ".join(sorted(os.listdir(model_dir))) or "nothing"
        raise RuntimeStartError(f"a k-means model directory holds {MODEL_FILE}, the centroids; {model_dir} holds {found}")
    try:
        arrays = mxnet_ndarray.load(path)
    except (mxnet_ndarray.NDArrayFileError, OSError) as exc:
        raise RuntimeStartError(f"cannot read the k-means centroids: {exc}") from exc
    values = list(arrays.values()) if isinstance(arrays, dict) else arrays
    if not values or values[0].ndim != 2 or 0 in values[0].shape:
        shapes = [list(array.shape) for array in values]
        raise RuntimeStartError(f"{path} should hold one k × feature_dim array of centroids; it holds arrays of shapes {shapes}")
    return values[0].astype(np.float64)


# -- requests ----------------------------------------------------------------------------------


def parse_rows(payload: bytes, content_type: str | None, feature_dim: int) -> np.ndarray:
    """The records of a request body as rows of a float64 matrix."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == CSV:
        return _csv_rows(payload.decode("utf-8"))
    if media == JSON:
        document = json.loads(payload)
        if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
            raise ValueError('an application/json request is {"instances": [...]}, one instance per record')
        return _stack([_instance(item, feature_dim) for item in document["instances"]], feature_dim)
    if media == JSONLINES:
        lines = [line for line in payload.decode("utf-8").split("\n") if line.strip()]
        return _stack([_instance(json.loads(line), feature_dim) for line in lines], feature_dim)
    if media == RECORDIO:
        return recordio_protobuf.dense_rows(list(recordio_protobuf.read_records(payload)), feature_dim)
    raise ValueError(f"content type {content_type!r} is not supported by the k-means algorithm; use one of: {CSV}, {JSON}, {JSONLINES}, {RECORDIO}")


def _csv_rows(text: str) -> np.ndarray:
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    rows = [[float(field) for field in line.split(",")] for line in lines]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"text/csv rows have different numbers of features: {sorted(widths)}")
    return np.array(rows, np.float64).reshape(len(rows), -1)


def _instance(item: Any, feature_dim: int) -> np.ndarray:
    """One instance: `{"features": [...]}` or `{"data": {"features": {...}}}`."""
    if not isinstance(item, dict):
        raise ValueError(f'an instance is {{"features": [...]}} or {{"data": {{"features": {{"values": [...]}}}}}}, not {json.dumps(item)[:80]}')
    if "features" in item:
        return _element(item["features"], feature_dim)
    data = item.get("data")
    if isinstance(data, dict) and "features" in data:
        return _element(data["features"], feature_dim)
    raise ValueError(f'an instance needs "features" or "data": {{"features": ...}}; got the keys {sorted(item)}')


def _element(element: Any, feature_dim: int) -> np.ndarray:
    """A numeric vector, or the protobuf-like `{"values", "keys", "shape"}` (sparse when keyed)."""
    if isinstance(element, list):
        return np.array(element, np.float64)
    if not isinstance(element, dict) or "values" not in element:
        raise ValueError('features are a list of numbers or {"values": [...], "keys": [...], "shape": [n]}')
    values = np.array(element["values"], np.float64)
    keys = element.get("keys")
    if not keys:
        return values
    shape = element.get("shape") or [feature_dim]
    row = np.zeros(int(shape[0]), np.float64)
    if len(keys) != len(values):
        raise ValueError(f"a sparse instance has {len(keys)} keys for {len(values)} values")
    row[np.array(keys, np.int64)] = values
    return row


def _stack(rows: list[np.ndarray], feature_dim: int) -> np.ndarray:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"instances have different numbers of features: {sorted(widths)}")
    return np.vstack(rows) if rows else np.empty((0, feature_dim))


# -- responses ---------------------------------------------------------------------------------


def encode(clusters: np.ndarray, distances: np.ndarray, accept: str) -> bytes:
    """The response in `accept`, one prediction per record in order."""
    pairs = [(float(cluster), float(distance)) for cluster, distance in zip(clusters.tolist(), distances.tolist())]
    if accept == JSON:
        predictions = [{"closest_cluster": cluster, "distance_to_cluster": distance} for cluster, distance in pairs]
        return json.dumps({"predictions": predictions}).encode("utf-8")
    if accept == JSONLINES:
        return "".join(json.dumps({"closest_cluster": c, "distance_to_cluster": d}) + "\n" for c, d in pairs).encode("utf-8")
    if accept == CSV:
        return "".join(f"{c!r},{d!r}\n" for c, d in pairs).encode("utf-8")
    return b"".join(
        recordio_protobuf.frame(
            recordio_protobuf.encode_record(
                label={
                    "closest_cluster": recordio_protobuf.encode_float32_value([c]),
                    "distance_to_cluster": recordio_protobuf.encode_float32_value([d]),
                }
            )
        )
        for c, d in pairs
    )
