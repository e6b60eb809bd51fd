"""SageMaker's built-in XGBoost (the `sagemaker-xgboost` image with no user code), in-process.

Behaves as the algorithm mode of aws/sagemaker-xgboost-container (tag v1.7-1-1, the image that
`image_uris.retrieve("xgboost", region, "1.7-1")` names): `algorithm_mode/serve.py` and
`serve_utils.py`. What it reproduces, each from there:

- model files: every top-level file of the model directory but dotfiles, each tried with pickle
  and then `Booster.load_model` (binary, JSON, UBJSON); several files make an ensemble unless
  SAGEMAKER_INFERENCE_ENSEMBLE is not `true` (then the first file alone);
- request bodies: `text/csv` (no header; the delimiter sniffed from the first line, an empty
  field is NaN), `text/libsvm` (also `text/x-libsvm`, and no Content-Type at all),
  `application/x-recordio-protobuf`; anything else is refused with the container's 415 wording;
- the batch response: one prediction per line, `str()` of each value of `predictions.tolist()`,
  whatever the Accept, which is still checked (406 for others than csv, json, jsonlines, recordio);
- SAGEMAKER_INFERENCE_OUTPUT's selectable outputs (`builtin_xgboost_output`);
- errors: 415 for a body that does not parse, 400 "Unable to evaluate payload provided: …" for
  one the model refuses, 406 for the Accept; 4xx are not retried.

Conveyor always sets SAGEMAKER_BATCH=true, so the container's endpoint-only encodings are not
needed. `xgboost` comes with `pip install 'conveyor[xgboost]'` (pinned below 3.1, the last
release that loads the binary format that the 1.7-1 image's training writes).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from conveyor.runtimes import recordio_protobuf
from conveyor.runtimes.base import ExecutionParameters, InvocationError, Runtime, RuntimeStartError
from conveyor.runtimes.builtin_xgboost_output import SUPPORTED_ACCEPTS, encode_selected, selected_keys

logger = logging.getLogger(__name__)

CSV, LIBSVM, RECORDIO_PROTOBUF, PARQUET = "csv", "libsvm", "recordio-protobuf", "parquet"
VALID_CONTENT_TYPES = [
    "csv", "libsvm", "parquet", "recordio-protobuf", "text/csv", "text/libsvm", "text/x-libsvm",
    "application/x-parquet", "application/x-recordio-protobuf",
]  # fmt: skip
_KINDS = {
    "csv": CSV, "text/csv": CSV, "libsvm": LIBSVM, "text/libsvm": LIBSVM, "text/x-libsvm": LIBSVM,
    "parquet": PARQUET, "application/x-parquet": PARQUET,
    "recordio-protobuf": RECORDIO_PROTOBUF, "application/x-recordio-protobuf": RECORDIO_PROTOBUF,
}  # fmt: skip
MAX_CONTENT_MB = 6  # the container's MAX_CONTENT_LENGTH default, 6291456 bytes
INSTALL_HINT = "install it with: pip install 'conveyor[xgboost]'"


class BuiltinXGBoostRuntime(Runtime):
    """Loads the booster(s) of a SageMaker XGBoost model directory and serves them in this process.

    XGBoost's predict is thread-safe and releases the GIL, so MaxConcurrentTransforms threads
    share the loaded boosters (the container runs one process per vCPU instead)."""

    def __init__(self, model_dir: str, environment: Mapping[str, str], image: str = "") -> None:
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.one_based_libsvm = _major_version(image) >= 3
        self.boosters: list[Any] = []
        self.pickled = False
        self.objective = ""
        self.num_class = ""
        self._default_accept = self.environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "text/csv"
        self._selected: list[str] | None = None

    def start(self) -> None:
        try:
            import xgboost
        except ImportError as exc:
            raise RuntimeStartError(f"the built-in XGBoost runtime needs the xgboost package ({exc}); {INSTALL_HINT}") from None
        ensemble = self.environment.get("SAGEMAKER_INFERENCE_ENSEMBLE", "true") == "true"
        paths = model_files(self.model_dir)
        if not paths:
            raise RuntimeStartError(f"Unable to load model: model directory {self.model_dir} holds no model file (it should hold xgboost-model)")
        for path in paths if ensemble else paths[:1]:
            booster, pickled = load_booster(xgboost, path)
            self.boosters.append(booster)
            self.pickled = self.pickled or (pickled and len(self.boosters) == 1)
        config = _config(self.boosters[0])
        self.objective = config["learner"]["objective"]["name"]
        self.num_class = config["learner"]["learner_model_param"].get("num_class", "")
        if "SAGEMAKER_INFERENCE_OUTPUT" in self.environment:
            self._selected = selected_keys(self.environment["SAGEMAKER_INFERENCE_OUTPUT"])
        logger.info("Model objective : %s", self.objective)

    def execution_parameters(self) -> ExecutionParameters:
        """What the container's GET /execution-parameters answers."""
        return ExecutionParameters(max_concurrent_transforms=os.cpu_count() or 1, batch_strategy="MultiRecord", max_payload_mb=MAX_CONTENT_MB)

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        if not self.boosters:
            raise RuntimeError("BuiltinXGBoostRuntime.invoke() before start()")
        if len(payload) == 0:  # the container answers 204 No Content
            return b""
        try:
            matrix, kind = self.parse(bytes(payload), content_type)
        except Exception as exc:
            raise InvocationError(str(exc), retryable=False, status=415) from exc
        try:
            predictions = self.predict(matrix, kind)
        except Exception as exc:
            raise InvocationError(f"Unable to evaluate payload provided: {exc}", retryable=False, status=400) from exc
        accept = self.accept(accept)
        if self._selected is not None:
            try:
                return encode_selected(predictions, self._selected, self.objective, self.num_class, accept)
            except Exception as exc:
                raise InvocationError(str(exc), retryable=True, status=500) from exc
        return ("\n".join(map(str, predictions.tolist())) + "\n").encode("utf-8")

    # -- the container's steps -------------------------------------------------------------

    def accept(self, accept: str | None) -> str:
        """serve.py's `_parse_accept`: the media type, or the default for none and `*/*`."""
        media = (accept or "").split(";", 1)[0].strip()
        if not media or media == "*/*":
            return self._default_accept
        if media.lower() not in SUPPORTED_ACCEPTS:
            message = f"Accept type {media} is not supported. Please use supported accept types: {SUPPORTED_ACCEPTS}."
            raise InvocationError(message, retryable=False, status=406)
        return media.lower()

    def parse(self, payload: bytes, content_type: str | None) -> tuple[Any, str]:
        """serve_utils' `parse_content_data`: the body as a DMatrix, and its kind."""
        import xgboost

        kind = content_kind(content_type)
        if kind == CSV:
            try:
                return xgboost.DMatrix(csv_matrix(payload.strip().decode("utf-8"))), kind
            except Exception as exc:
                raise RuntimeError(f"Loading csv data failed with Exception, please ensure data is in csv format:\n {type(exc)}\n {exc}") from exc
        if kind == LIBSVM:
            try:
                return xgboost.DMatrix(libsvm_matrix(payload.strip().decode("utf-8"), self.one_based_libsvm)), kind
            except Exception as exc:
                raise RuntimeError(f"Loading libsvm data failed with Exception, please ensure data is in libsvm format:\n {type(exc)}\n {exc}") from exc
        if kind == RECORDIO_PROTOBUF:
            try:
                return xgboost.DMatrix(recordio_matrix(payload)), kind
            except Exception as exc:
                raise RuntimeError(
                    f"Loading recordio-protobuf data failed with Exception, please ensure data is in recordio-protobuf format: {type(exc)} {exc}"
                ) from exc
        raise RuntimeError(f"Content-type {content_type} is not supported.")

    def predict(self, matrix: Any, kind: str) -> np.ndarray:
        """serve_utils' `predict`: the feature-count check for pickled models, then the booster
        or the ensemble (mean, or the vote for multi:softmax and binary:hinge)."""
        if self.pickled:
            expected, given = self.boosters[0].num_features(), matrix.num_col()
            if kind == LIBSVM and given > expected + 1:
                raise ValueError(f"Feature size of libsvm inference data {given} is larger than feature size of trained model {expected}.")
            if kind in (CSV, RECORDIO_PROTOBUF) and expected not in (given, given + 1):
                raise ValueError(f"Feature size of {kind} inference data {given} is not consistent with feature size of trained model {expected}.")
        if len(self.boosters) == 1:
            return _predict(self.boosters[0], matrix)
        predictions = np.array([_predict(booster, matrix) for booster in self.boosters])
        if self.objective in ("multi:softmax", "binary:hinge"):
            from scipy import stats  # an xgboost dependency

            return stats.mode(predictions, axis=0, keepdims=False).mode
        return np.mean(predictions, axis=0)

    def close(self) -> None:
        self.boosters = []


# -- model files -----------------------------------------------------------------------------


def model_files(model_dir: str) -> list[str]:
    """The model directory's top-level files but dotfiles, by name (the container lists them in
    the directory's order; by name makes an ensemble's order the same everywhere)."""
    paths = []
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            if name.startswith("."):
                logger.warning("Ignoring dotfile '%s' found in model directory - please exclude dotfiles from model archives", path)
            else:
                paths.append(path)
    return paths


def load_booster(xgboost: Any, path: str) -> tuple[Any, bool]:
    """A booster from `path` and whether it was pickled: pickle first, then xgboost's own formats."""
    try:
        with open(path, "rb") as file:
            booster = pickle.load(file)
        if not isinstance(booster, xgboost.Booster):
            raise TypeError(f"the pickle holds a {type(booster).__name__}, not an xgboost Booster")
        return booster, True
    except Exception as pickle_error:
        try:
            booster = xgboost.Booster()
            booster.load_model(path)
            return booster, False
        except Exception as xgboost_error:
            raise RuntimeStartError(
                f"Unable to load model: Model {path} cannot be loaded:\nPickle load error={pickle_error}\nXGB load model error={xgboost_error}"
            ) from None


def _config(booster: Any) -> dict[str, Any]:
    import json

    return json.loads(booster.save_config())


def _predict(booster: Any, matrix: Any) -> np.ndarray:
    """As the container: every tree, unless an old pickled booster carries `best_ntree_limit`."""
    best = getattr(booster, "best_ntree_limit", 0)
    best = best if isinstance(best, int) else 0
    if best > 0:
        return booster.predict(matrix, iteration_range=(0, best), validate_features=False)
    return booster.predict(matrix, validate_features=False)


def _major_version(image: str) -> int:
    """The XGBoost major version in a `sagemaker-xgboost:<version>-<build>` tag (1 when none)."""
    match = re.search(r":(\d+)\.", image)
    return int(match.group(1)) if match else 1


# -- request bodies ----------------------------------------------------------------------------


def content_kind(content_type: str | None) -> str:
    """data_utils' `get_content_type`: no Content-Type means libsvm."""
    if content_type is None:
        return LIBSVM
    media, _, parameters = content_type.lower().partition(";")
    media = media.strip()
    kind = _KINDS.get(media)
    if kind is None:
        raise ValueError(f"{content_type} is not an accepted ContentType: {', '.join(VALID_CONTENT_TYPES)}.")
    if kind == CSV:
        label_size = _parameter(parameters, "label_size")
        if label_size is not None and label_size != "1":
            raise ValueError(f"{content_type} is not an accepted csv ContentType. Optional parameter label_size must be equal to 1")
    return kind


def _parameter(parameters: str, name: str) -> str | None:
    for part in parameters.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


def csv_matrix(text: str) -> np.ndarray:
    """encoder.py's `csv_to_dmatrix` without the DMatrix: the delimiter sniffed from the first
    line (`,` when the sniffer picks a letter or digit), empty fields NaN, float64.

    Fast path: numpy's C reader on the same delimiter; any row it cannot take (an empty field,
    a ragged row, a stray character) falls back to the container's own per-field conversion,
    which gives the same numbers or the container's error."""
    sniffed = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    delimiter = "," if sniffed.isalnum() else sniffed
    try:
        matrix = np.loadtxt(io.StringIO(text), delimiter=delimiter, dtype=np.float64, comments=None, ndmin=2, quotechar=None)
        if matrix.shape[0] == text.count("\n") + 1:
            return matrix
    except ValueError:
        pass
    rows = [["nan" if field == "" else field for field in line.split(delimiter)] for line in text.split("\n")]
    return np.array(rows).astype(float)


def libsvm_matrix(text: str, one_based: bool) -> Any:
    """serve_utils' `_get_sparse_matrix_from_libsvm`: `index:value` tokens of each line as a
    CSR row (other tokens, such as a label, ignored). Indexes are used as given, as the 1.7-1
    image does; images of XGBoost 3 shift 1-based indexes to 0-based, as their serving does."""
    from scipy.sparse import csr_matrix  # an xgboost dependency

    rows, columns, values = [], [], []
    for row, line in enumerate(text.split("\n")):
        for item in line.split(" "):
            if ":" in item:
                index, value = item.split(":")[0], item.split(":")[1]
                rows.append(row)
                columns.append(index)
                values.append(value)
    column_array = np.array(columns).astype(int)
    if one_based and len(column_array) > 0 and column_array.min() >= 1:
        column_array = column_array - 1
    return csr_matrix((np.array(values).astype(float), (np.array(rows), column_array)))


def recordio_matrix(payload: bytes) -> Any:
    """Each record's `values` feature as one row: dense tensors stacked, sparse ones as CSR
    (an absent key is a missing value to XGBoost, not a zero)."""
    records = list(recordio_protobuf.read_records(payload))
    if not records:
        raise ValueError("No records found in RecordIO-Protobuf data")
    if all(record.features.get("values") is not None and record.features["values"].keys is None for record in records):
        return recordio_protobuf.dense_rows(records)
    from scipy.sparse import csr_matrix  # an xgboost dependency

    data, indices, indptr, width = recordio_protobuf.sparse_rows(records)
    return csr_matrix((data, indices, indptr), shape=(len(records), width))
