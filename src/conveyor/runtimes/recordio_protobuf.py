"""RecordIO-protobuf (`application/x-recordio-protobuf`): SageMaker's Record messages in RecordIO frames.

The format of the SageMaker SDK (`sagemaker/amazon/record.proto`, `serializer_utils.py`): each
frame is the magic 0xCED7230A and a length (uint32, little-endian), then a serialized
`aialgs.data.Record`, padded with zeros to 4 bytes. A Record maps names to Values in `features`
and `label`; a Value holds a float32, float64 or int32 tensor (`values`, sparse `keys`, `shape`).

Hand-written rather than generated with the `protobuf` package: only the one small message is
needed, `protobuf` is not a dependency of Conveyor's core, and packed tensors decode straight
into numpy (`np.frombuffer`) without a Python object per value. Map entries are written in key
order, as protobuf's deterministic serialization writes them (its default order is unspecified).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

MAGIC = 0xCED7230A
_FRAME_HEAD = struct.Struct("<II")
# Value's oneof: field number → (tensor kind, numpy dtype of its packed values)
_TENSOR_FIELDS = {2: np.dtype("<f4"), 3: np.dtype("<f8"), 7: np.dtype("<i4")}
_BYTES_FIELD = 9


class RecordFormatError(ValueError):
    """The bytes are not RecordIO-framed Record messages; the message says where and why."""


@dataclass(frozen=True)
class Tensor:
    """One Value: dense when `keys` is None, else sparse (values at `keys`, of a vector of `shape`)."""

    values: np.ndarray
    keys: np.ndarray | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Record:
    features: dict[str, Tensor]
    label: dict[str, Tensor]


# -- framing -------------------------------------------------------------------------------


def frames(data: bytes) -> Iterator[memoryview]:
    """The payload of each RecordIO frame in `data`."""
    view, offset, end = memoryview(data), 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise RecordFormatError(f"RecordIO frame at byte {offset} is cut short: {end - offset} bytes left, 8 needed for its header")
        magic, length = _FRAME_HEAD.unpack_from(view, offset)
        if magic != MAGIC:
            raise RecordFormatError(f"RecordIO frame at byte {offset} starts with 0x{magic:08X}, not the magic number 0x{MAGIC:08X}")
        start = offset + 8
        if start + length > end:
            raise RecordFormatError(f"RecordIO frame at byte {offset} says {length} bytes but only {end - start} follow")
        yield view[start : start + length]
        offset = start + ((length + 3) & ~3)


def frame(message: bytes) -> bytes:
    """`message` as one RecordIO frame, padded to 4 bytes."""
    return _FRAME_HEAD.pack(MAGIC, len(message)) + message + b"\0" * (-len(message) % 4)


# -- decoding ------------------------------------------------------------------------------


def read_records(data: bytes) -> Iterator[Record]:
    """Every Record in a RecordIO-protobuf body, in order."""
    for index, message in enumerate(frames(data)):
        try:
            yield _record(message)
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise RecordFormatError(f"record {index} is not a valid Record message: {exc}") from None


def _varint(buffer: memoryview, offset: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, offset
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buffer: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field; length-delimited values as views."""
    offset, end = 0, len(buffer)
    while offset < end:
        tag, offset = _varint(buffer, offset)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, offset = _varint(buffer, offset)
            yield number, wire, value
        elif wire == 2:
            length, offset = _varint(buffer, offset)
            if offset + length > end:
                raise ValueError(f"field {number} says {length} bytes but only {end - offset} follow")
            yield number, wire, buffer[offset : offset + length]
            offset += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if offset + size > end:
                raise ValueError(f"field {number} is cut short")
            yield number, wire, buffer[offset : offset + size]
            offset += size
        else:
            raise ValueError(f"field {number} has wire type {wire}, which Record does not use")


def _record(message: memoryview) -> Record:
    features: dict[str, Tensor] = {}
    label: dict[str, Tensor] = {}
    for number, wire, value in _fields(message):
        if number in (1, 2) and wire == 2:  # map<string, Value> features = 1, label = 2
            name, tensor = _map_entry(value)  # type: ignore[arg-type]
            if tensor is not None:
                (features if number == 1 else label)[name] = tensor
    return Record(features, label)


def _map_entry(entry: memoryview) -> tuple[str, Tensor | None]:
    name, tensor = "", None
    for number, wire, value in _fields(entry):
        if number == 1 and wire == 2:
            name = bytes(value).decode("utf-8")
        elif number == 2 and wire == 2:
            tensor = _value(value)  # type: ignore[arg-type]
    return name, tensor


def _value(value: memoryview) -> Tensor | None:
    tensor = None
    for number, wire, content in _fields(value):
        if number in _TENSOR_FIELDS and wire == 2:
            tensor = _tensor(content, _TENSOR_FIELDS[number])  # type: ignore[arg-type]
        elif number == _BYTES_FIELD:
            raise ValueError("a Bytes value, where a numeric tensor is expected")
    return tensor


def _tensor(message: memoryview, dtype: np.dtype) -> Tensor:
    values: list[np.ndarray] = []
    keys: list[int] = []
    shape: list[int] = []
    for number, wire, content in _fields(message):
        if number == 1:
            values.append(_numbers(content, wire, dtype))
        elif number in (2, 3):
            target = keys if number == 2 else shape
            if wire == 2:
                target.extend(_packed_varints(content))  # type: ignore[arg-type]
            else:
                target.append(content)  # type: ignore[arg-type]
    array = values[0] if len(values) == 1 else np.concatenate(values) if values else np.empty(0, dtype)
    sparse = bool(keys) or (bool(shape) and len(array) == 0)  # the SDK writes an all-zero sparse row as a shape alone
    return Tensor(array, np.array(keys, dtype=np.uint64) if sparse else None, tuple(shape) if shape else None)


def _numbers(content: int | memoryview, wire: int, dtype: np.dtype) -> np.ndarray:
    if isinstance(content, int):  # an unpacked int32
        return np.array([content - (1 << 64) if content >= 1 << 63 else content], dtype)
    if wire == 2 and dtype.kind == "i":  # packed int32s are varints
        return np.array([v - (1 << 64) if v >= 1 << 63 else v for v in _packed_varints(content)], dtype)
    if len(content) % dtype.itemsize:
        raise ValueError(f"{len(content)} bytes of packed {dtype.name} values is not a whole number of values")
    return np.frombuffer(content, dtype).copy()


def _packed_varints(content: memoryview) -> Iterator[int]:
    offset = 0
    while offset < len(content):
        value, offset = _varint(content, offset)
        yield value


# -- encoding ------------------------------------------------------------------------------


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(number: int, content: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(content)) + content


def encode_float32_value(values: list[float] | np.ndarray) -> bytes:
    """A Value holding a dense Float32Tensor (packed), as bytes."""
    packed = np.asarray(values, dtype="<f4").tobytes()
    tensor = _delimited(1, packed) if packed else b""
    return _delimited(2, tensor)


def encode_record(*, features: Mapping[str, bytes] | None = None, label: Mapping[str, bytes] | None = None) -> bytes:
    """A Record message from already encoded Values (see `encode_float32_value`), map entries
    in key order."""
    parts = []
    for number, entries in ((1, features or {}), (2, label or {})):
        for name in sorted(entries):
            parts.append(_delimited(number, _delimited(1, name.encode("utf-8")) + _delimited(2, entries[name])))
    return b"".join(parts)


def dense_rows(records: list[Record], feature_dim: int | None = None, *, name: str = "values") -> np.ndarray:
    """The `name` feature of each record as one row of a float array; sparse tensors are
    spread over their `shape` (or `feature_dim`, or one past their largest key)."""
    rows = []
    for index, record in enumerate(records):
        tensor = record.features.get(name)
        if tensor is None:
            raise RecordFormatError(f"record {index} has no feature named {name!r} (it has: {', '.join(record.features) or 'none'})")
        if tensor.keys is None:
            rows.append(tensor.values.astype(np.float64))
            continue
        width = tensor.shape[0] if tensor.shape else feature_dim if feature_dim is not None else int(tensor.keys.max()) + 1 if len(tensor.keys) else 0
        if len(tensor.keys) != len(tensor.values):
            raise RecordFormatError(f"record {index} has {len(tensor.keys)} keys for {len(tensor.values)} values")
        if len(tensor.keys) and int(tensor.keys.max()) >= width:
            raise RecordFormatError(f"record {index} has key {int(tensor.keys.max())}, outside its shape [{width}]")
        row = np.zeros(width, np.float64)
        row[tensor.keys.astype(np.int64)] = tensor.values
        rows.append(row)
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise RecordFormatError(f"records have different numbers of features: {sorted(widths)}")
    return np.vstack(rows) if rows else np.empty((0, feature_dim or 0))


def sparse_rows(records: list[Record], *, name: str = "values") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The `name` feature of each record as CSR parts (data, indices, indptr, width): for
    algorithms such as XGBoost where an absent key means a missing value, not zero."""
    data, indices, indptr, width = [], [], [0], 0
    for index, record in enumerate(records):
        tensor = record.features.get(name)
        if tensor is None:
            raise RecordFormatError(f"record {index} has no feature named {name!r} (it has: {', '.join(record.features) or 'none'})")
        keys = tensor.keys if tensor.keys is not None else np.arange(len(tensor.values), dtype=np.uint64)
        if len(keys) != len(tensor.values):
            raise RecordFormatError(f"record {index} has {len(keys)} keys for {len(tensor.values)} values")
        row_width = tensor.shape[0] if tensor.shape else int(keys.max()) + 1 if len(keys) else 0
        width = max(width, row_width)
        data.append(tensor.values.astype(np.float32))
        indices.append(keys.astype(np.int64))
        indptr.append(indptr[-1] + len(keys))
    if not records:
        return np.empty(0, np.float32), np.empty(0, np.int64), np.array(indptr, np.int64), 0
    return np.concatenate(data), np.concatenate(indices), np.array(indptr, np.int64), width
