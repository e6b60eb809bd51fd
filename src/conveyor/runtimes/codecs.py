"""Content-type codecs: the default decoders and encoders of the Python handler runtime.

They behave as the SageMaker inference toolkit's (`sagemaker_inference.decoder` and `.encoder`,
1.10) so a handler that relies on the defaults gets what it would get in SageMaker, with two
additions the toolkit lacks: `application/jsonlines` both ways, and media-type parameters
(`text/csv; charset=utf-8`) are ignored when picking a codec.

numpy is imported by the codecs that use it, not with the module: an instance whose handler
never meets a default codec does not pay for its import (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np

JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
NPZ = "application/x-npz"
ANY = "*/*"

UTF8_TYPES = frozenset({JSON, CSV})
"""Content types whose body the toolkit hands to the handler as `str` rather than `bytes`."""


class UnsupportedFormatError(Exception):
    """No default codec for this content type (the toolkit answers HTTP 415)."""

    def __init__(self, content_type: str | None) -> None:
        super().__init__(
            f"Content type {content_type} is not supported by the default handler; "
            "implement input_fn to deserialize the request data or output_fn to serialize the response"
        )
        self.content_type = content_type


def media_type(content_type: str | None) -> str | None:
    """`Text/CSV; charset=utf-8` -> `text/csv`: the part that picks a codec."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def parse_accept(accept: str) -> list[str]:
    """The media types of an Accept header, in order (the toolkit's `utils.parse_accept`)."""
    return accept.replace(" ", "").split(",")


def _text(data: bytes | str) -> str:
    return data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data


def _bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


# -- decoders: request body -> object ------------------------------------------------------


def json_to_numpy(data: bytes | str) -> np.ndarray:
    import numpy as np

    return np.array(json.loads(data))


def csv_to_numpy(data: bytes | str) -> np.ndarray:
    """Rows of comma-separated numbers -> a float64 array (a value that is no number -> nan).

    The toolkit calls genfromtxt with dtype=None, which gives float64 for numeric data but a
    structured array when some columns hold only integers; float64 throughout avoids that, and
    keeps the dtype scikit-learn models are fitted with (float32 breaks KMeans.predict)."""
    import numpy as np

    return np.genfromtxt(io.StringIO(_text(data)), delimiter=",", dtype=np.float64)


def npy_to_numpy(data: bytes | str) -> np.ndarray:
    import numpy as np

    return np.load(io.BytesIO(_bytes(data)), allow_pickle=True)


def npz_to_sparse(data: bytes | str) -> Any:
    import scipy.sparse  # only this codec needs scipy

    return scipy.sparse.load_npz(io.BytesIO(_bytes(data)))


def jsonlines_to_numpy(data: bytes | str) -> np.ndarray | list[Any]:
    """One JSON value per non-empty line -> an array when the lines form one, else the list."""
    import numpy as np

    rows = [json.loads(line) for line in _text(data).splitlines() if line.strip()]
    try:
        array = np.array(rows)
    except ValueError:  # ragged rows
        return rows
    return rows if array.dtype == object else array


_DECODERS: dict[str, Callable[[bytes | str], Any]] = {
    JSON: json_to_numpy,
    CSV: csv_to_numpy,
    NPY: npy_to_numpy,
    NPZ: npz_to_sparse,
    JSONLINES: jsonlines_to_numpy,
}


def decode(data: bytes | str, content_type: str | None) -> Any:
    """Decode a request body by its content type; `UnsupportedFormatError` when none fits."""
    decoder = _DECODERS.get(media_type(content_type))  # type: ignore[arg-type]
    if decoder is None:
        raise UnsupportedFormatError(content_type)
    return decoder(data)


# -- encoders: prediction -> response body -------------------------------------------------


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def array_to_json(value: Any) -> bytes:
    return json.dumps(value, default=_tolist).encode("utf-8")


def array_to_csv(value: Any) -> bytes:
    """One row per line, values joined by `,` (numpy.savetxt with fmt `%s`, as the toolkit);
    a single value is one line (where the toolkit fails). Values that are not numbers or strings
    (a dict, None) are refused rather than written as Python's repr."""
    import numpy as np

    array = np.asarray(value)
    values = (str, int, float, np.generic)
    if array.ndim > 2 or (array.dtype.kind == "O" and not all(isinstance(item, values) for item in array.flat)):
        raise TypeError(f"a {type(value).__name__} is not a value, a row or rows of numbers or strings")
    stream = io.StringIO()
    np.savetxt(stream, np.atleast_1d(array) if array.ndim == 0 else array, delimiter=",", fmt="%s")
    return stream.getvalue().encode("utf-8")


def array_to_npy(value: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, value)
    return buffer.getvalue()


def array_to_jsonlines(value: Any) -> bytes:
    """One JSON line per row (per element of a list or of an array's first axis)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        rows = value.tolist() if value.ndim else [value.tolist()]
    elif isinstance(value, (list, tuple)):
        rows = value
    else:
        rows = [value]
    return "".join(json.dumps(row, default=_tolist) + "\n" for row in rows).encode("utf-8")


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    JSON: array_to_json,
    CSV: array_to_csv,
    NPY: array_to_npy,
    JSONLINES: array_to_jsonlines,
}


def encode(value: Any, accept: str) -> tuple[bytes, str]:
    """Encode for the first type in `accept` that has an encoder; returns (body, that type)."""
    for candidate in parse_accept(accept):
        encoder = _ENCODERS.get(media_type(candidate))  # type: ignore[arg-type]
        if encoder is not None:
            return encoder(value), candidate
    raise UnsupportedFormatError(accept)
