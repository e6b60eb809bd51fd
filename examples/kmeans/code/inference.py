"""The k-means model's handler: SageMaker's inference-handler contract (model_fn, input_fn, …)."""

import io
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type):
    if content_type != "text/csv":
        raise ValueError(f"this model reads text/csv, not {content_type}")
    text = input_data.decode() if isinstance(input_data, bytes) else input_data  # text/csv arrives as str
    return np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)


def predict_fn(data, model):
    return model.predict(data.astype(model.cluster_centers_.dtype, copy=False))


def output_fn(prediction, accept):
    return "".join(f"{label}\n" for label in prediction.tolist())
