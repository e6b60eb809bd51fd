"""What a handler's missing functions do, as each SageMaker serving toolkit does it.

A framework image runs the user's module with its toolkit's defaults for the functions the
module leaves out (docs/semantics.md, "The serving toolkits' defaults", with the sources):

- scikit-learn (`sagemaker-scikit-learn-container`): no default `model_fn`; input decoded, CSV
  and JSON cast to float32; `model.predict`; the toolkit's encoders.
- XGBoost framework mode (`sagemaker-xgboost-container`'s user-module handler): no default
  `model_fn`; input decoded into a `DMatrix` (CSV, LIBSVM, RecordIO-protobuf, JSON, NPY);
  `model.predict(data, validate_features=False)`; the toolkit's encoders.
- PyTorch (`sagemaker-pytorch-inference-toolkit`): `model_fn` loads TorchScript `model.pt` (or
  the one `.pt`/`.pth` file); input as a float tensor; `model(data)` under `torch.no_grad()`;
  a tensor answer encoded as a list.
- Every other framework image (MXNet, TensorFlow, Hugging Face): the inference toolkit's bare
  defaults, which have no `model_fn` and no `predict_fn`.
- `conveyor:python` (or no Image): Conveyor's contract, `model.predict` as the default predict.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from conveyor.runtimes import codecs

SDK_DOCUMENTATION = "https://github.com/aws/sagemaker-python-sdk"
TOOLKIT_DOCUMENTATION = "https://sagemaker.readthedocs.io/en/stable/"


class MissingHandlerFunction(Exception):
    """The module leaves out a function its toolkit has no default for."""


@dataclass(frozen=True)
class ToolkitDefaults:
    name: str
    model_fn: Callable[[str], Any] | None  # None: the toolkit refuses a module without model_fn
    input_fn: Callable[[bytes | str, str | None], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    missing_model_fn: str  # what the toolkit says when model_fn is missing and it has no default


def _please_provide(function: str, documentation: str) -> str:
    return f"Please provide a {function} implementation. See documentation for {function} at {documentation}"


def conveyor_input_fn(input_data: bytes | str, content_type: str | None) -> Any:
    """Decode by content type; a 1-D numeric array becomes one row (one CSV line or a flat JSON
    list is one sample for `model.predict`)."""
    import numpy as np  # with the handler's first input, not with the module (conveyor.runtimes.codecs)

    data = codecs.decode(input_data, content_type)
    if isinstance(data, np.ndarray) and data.ndim < 2 and data.dtype.kind in "biuf":
        data = data.reshape(1, -1)
    return data


def model_predict(data: Any, model: Any) -> Any:
    return model.predict(data)


def encode(prediction: Any, accept: str) -> tuple[bytes, str]:
    """The toolkit's encoders: (body, the accept type it was encoded for)."""
    return codecs.encode(prediction, accept)


def sklearn_input_fn(input_data: bytes | str, content_type: str | None) -> Any:
    import numpy as np

    data = conveyor_input_fn(input_data, content_type)
    return data.astype(np.float32) if codecs.media_type(content_type) in codecs.UTF8_TYPES else data


def xgboost_input_fn(input_data: bytes | str, content_type: str | None) -> Any:
    """The XGBoost toolkit's `encoder.decode`: the payload as a `DMatrix`."""
    import numpy as np
    import xgboost

    from conveyor.runtimes.builtin_xgboost import csv_matrix, libsvm_matrix, recordio_matrix

    media = codecs.media_type(content_type)
    text = input_data.decode("utf-8") if isinstance(input_data, (bytes, bytearray)) else input_data
    if media == codecs.CSV:
        return xgboost.DMatrix(csv_matrix(text.rstrip("\n")))
    if media == "text/libsvm":
        return xgboost.DMatrix(libsvm_matrix(text.rstrip("\n"), one_based=False))
    if media == "application/x-recordio-protobuf":
        return xgboost.DMatrix(recordio_matrix(input_data if isinstance(input_data, bytes) else input_data.encode()))
    return xgboost.DMatrix(np.atleast_2d(codecs.decode(input_data, content_type)))


def xgboost_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data, validate_features=False)


def _torch(function: str) -> Any:
    """torch, which the PyTorch toolkit's defaults need and Conveyor does not install."""
    try:
        import torch
    except ImportError:
        raise MissingHandlerFunction(
            f"the PyTorch toolkit's default {function} needs torch, which is not installed here: "
            f"define {function} in the handler, or install torch"
        ) from None
    return torch


def pytorch_model_fn(model_dir: str) -> Any:
    torch = _torch("model_fn")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = os.path.join(model_dir, "model.pt")
    if not os.path.exists(path):
        files = [name for name in os.listdir(model_dir) if re.search(r"\.pth?$", name) and os.path.isfile(os.path.join(model_dir, name))]
        if len(files) != 1:
            raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: {files}")
        path = os.path.join(model_dir, files[0])
    try:
        return torch.jit.load(path, map_location=device).to(device)
    except RuntimeError as exc:
        raise ValueError(f"Failed to load {path}. Please ensure model is saved using torchscript.") from exc


def pytorch_input_fn(input_data: bytes | str, content_type: str | None) -> Any:
    torch = _torch("input_fn")

    array = codecs.decode(input_data, content_type)
    tensor = torch.FloatTensor(array) if codecs.media_type(content_type) in codecs.UTF8_TYPES else torch.from_numpy(array)
    return tensor.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def pytorch_predict_fn(data: Any, model: Any) -> Any:
    torch = _torch("predict_fn")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with torch.no_grad():
        model = model.to(device)
        model.eval()
        return model(data.to(device))


def pytorch_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy().tolist()
    return encode(prediction, accept)


def no_predict_fn(data: Any, model: Any) -> Any:
    raise MissingHandlerFunction(_please_provide("predict_fn", TOOLKIT_DOCUMENTATION))


CONVEYOR = ToolkitDefaults(
    "Conveyor", None, conveyor_input_fn, model_predict, encode,
    "defines no model_fn(model_dir): the Python runtime needs one to load the model",
)
SCIKIT_LEARN = ToolkitDefaults(
    "scikit-learn", None, sklearn_input_fn, model_predict, encode, _please_provide("model_fn", SDK_DOCUMENTATION)
)
XGBOOST = ToolkitDefaults(
    "XGBoost", None, xgboost_input_fn, xgboost_predict_fn, encode, _please_provide("model_fn", SDK_DOCUMENTATION)
)
PYTORCH = ToolkitDefaults("PyTorch", pytorch_model_fn, pytorch_input_fn, pytorch_predict_fn, pytorch_output_fn, "")
INFERENCE_TOOLKIT = ToolkitDefaults(
    "SageMaker inference toolkit", None, codecs.decode, no_predict_fn, encode, _please_provide("model_fn", TOOLKIT_DOCUMENTATION)
)

_BY_REPOSITORY = (
    (re.compile(r"(^|/)sagemaker-scikit-learn(:|@|$)"), SCIKIT_LEARN),
    (re.compile(r"(^|/)sagemaker-xgboost(:|@|$)"), XGBOOST),
    (re.compile(r"(^|/)(pytorch-inference|sagemaker-pytorch)(:|@|$)"), PYTORCH),
)


def defaults_for(image: str) -> ToolkitDefaults:
    """The defaults of the toolkit that serves `image`'s framework (Conveyor's own for
    `conveyor:python` or no Image)."""
    image = image.strip()
    if image in ("", "conveyor:python"):
        return CONVEYOR
    for pattern, defaults in _BY_REPOSITORY:
        if pattern.search(image):
            return defaults
    return INFERENCE_TOOLKIT
