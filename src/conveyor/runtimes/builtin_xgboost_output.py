"""Built-in XGBoost's selectable inference output (SAGEMAKER_INFERENCE_OUTPUT), byte for byte.

From aws/sagemaker-xgboost-container, `algorithm_mode/serve_utils.py` (tag v1.7-1-1): which keys
each objective offers, how each value is derived from a raw prediction, and the four encodings
of a batch response. Two of the container's quirks are kept, since they are what SageMaker
writes: a key the objective does not offer is answered as NaN (`NaN` in JSON, `nan` in CSV),
and the RecordIO-protobuf answer's i-th frame holds records 0 … i concatenated (the container
never empties its record buffer; a protobuf parser merges them, so frame i still reads as
record i). Keys the objective does not offer come last, in the order they were asked for (the
container iterates a set there, whose order varies between processes).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from conveyor.runtimes import recordio_protobuf

SUPPORTED_ACCEPTS = ["application/json", "application/jsonlines", "application/x-recordio-protobuf", "text/csv"]

PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES = "predicted_label", "labels", "probability", "probabilities"
RAW_SCORE, RAW_SCORES, PREDICTED_SCORE = "raw_score", "raw_scores", "predicted_score"
KEY_ORDER = [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES, PREDICTED_SCORE]
_CLASSIFICATION = [PREDICTED_LABEL, LABELS, RAW_SCORE, RAW_SCORES]
VALID_OBJECTIVES = {
    "reg:squarederror": [PREDICTED_SCORE],
    "reg:logistic": [PREDICTED_SCORE],
    "reg:gamma": [PREDICTED_SCORE],
    "reg:absoluteerror": [PREDICTED_SCORE],
    "reg:tweedie": [PREDICTED_SCORE],
    "binary:logistic": [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES],
    "binary:logitraw": _CLASSIFICATION,
    "binary:hinge": _CLASSIFICATION,
    "multi:softmax": _CLASSIFICATION,
    "multi:softprob": [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES],
}


def selected_keys(variable: str) -> list[str]:
    """SAGEMAKER_INFERENCE_OUTPUT as the container reads it: spaces dropped, lower case, by comma."""
    return variable.replace(" ", "").lower().split(",")


def selected_predictions(predictions: np.ndarray, keys: list[str], objective: str, num_class: str = "") -> list[dict[str, Any]]:
    """serve_utils' `get_selected_predictions`: one dict per prediction."""
    if objective not in VALID_OBJECTIVES:
        raise ValueError(f"Objective `{objective}` unsupported for selectable inference predictions.")
    valid = [key for key in KEY_ORDER if key in keys and key in VALID_OBJECTIVES[objective]]
    invalid = list(dict.fromkeys(key for key in keys if key not in VALID_OBJECTIVES[objective]))
    labels = [0, 1] if "binary:" in objective else list(range(int(num_class))) if "multi:" in objective and num_class else np.nan
    result = []
    for raw in predictions:
        output: dict[str, Any] = {}
        for key in valid:
            output[key] = labels if key == LABELS else _VALUES[key](objective, raw)
        for key in invalid:
            output[key] = np.nan
        result.append(output)
    return result


def _predicted_label(objective: str, raw: np.ndarray) -> Any:
    if objective in ("binary:hinge", "multi:softmax"):
        return raw.item()
    if objective == "binary:logistic":
        return int(raw > 0.5)
    if objective == "binary:logitraw":
        return int(raw > 0)
    if objective == "multi:softprob":
        return np.argmax(raw).item()
    return np.nan


def _probability(objective: str, raw: np.ndarray) -> Any:
    if objective == "multi:softprob":
        return max(raw).item()
    if objective == "binary:logistic":
        return raw.item()
    return np.nan


def _probabilities(objective: str, raw: np.ndarray) -> Any:
    if objective == "multi:softprob":
        return raw.tolist()
    if objective == "binary:logistic":
        return [1.0 - raw.item(), raw.item()]
    return np.nan


def _raw_score(objective: str, raw: np.ndarray) -> Any:
    if objective == "multi:softprob":
        return max(raw).item()
    if objective in ("binary:logitraw", "binary:hinge", "binary:logistic", "multi:softmax"):
        return raw.item()
    return np.nan


def _raw_scores(objective: str, raw: np.ndarray) -> Any:
    if objective == "multi:softprob":
        return raw.tolist()
    if objective in ("binary:logitraw", "binary:hinge", "binary:logistic", "multi:softmax"):
        return [1.0 - raw.item(), raw.item()]
    return np.nan


_VALUES = {
    PREDICTED_LABEL: _predicted_label,
    PROBABILITY: _probability,
    PROBABILITIES: _probabilities,
    RAW_SCORE: _raw_score,
    RAW_SCORES: _raw_scores,
    PREDICTED_SCORE: lambda _objective, raw: raw.item(),
}


def encode_selected(predictions: np.ndarray, keys: list[str], objective: str, num_class: str, accept: str) -> bytes:
    """serve_utils' `encode_selected_predictions` in a batch job (SAGEMAKER_BATCH set)."""
    selected = selected_predictions(predictions, keys, objective, num_class)
    if accept == "application/json":
        return json.dumps({"predictions": selected}).encode("utf-8")
    if accept == "application/jsonlines":
        return b"".join(json.dumps(entry).encode("utf-8") + b"\n" for entry in selected)
    if accept == "application/x-recordio-protobuf":
        return _recordio(selected)
    if accept == "text/csv":
        lines = (",".join(f'"{row[key]}"' if isinstance(row[key], list) else str(row[key]) for key in keys) for row in selected)
        return ("\n".join(lines) + "\n").encode("utf-8")
    raise RuntimeError(f"Cannot encode selected predictions into accept type '{accept}'.")


def _recordio(selected: list[dict[str, Any]]) -> bytes:
    """Each prediction's values as float32 tensors under `label`; frame i holds the records
    0 … i (the container's cumulative buffer)."""
    out, cumulative = bytearray(), bytearray()
    for row in selected:
        label = {key: recordio_protobuf.encode_float32_value(value if isinstance(value, list) else [value]) for key, value in row.items()}
        cumulative += recordio_protobuf.encode_record(label=label)
        out += recordio_protobuf.frame(bytes(cumulative))
    return bytes(out)
