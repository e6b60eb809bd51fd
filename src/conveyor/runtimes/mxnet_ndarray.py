"""MXNet's NDArray list files (`mx.nd.save`), read with numpy: no MXNet at run time.

SageMaker's built-in k-means writes its centroids so (`model_algo-1`). The layout is MXNet 1.x's
(`src/ndarray/ndarray.cc`, `NDArray::Save` and `MXNDArraySave`), all little-endian:

    uint64 0x112 (list magic), uint64 0 (reserved), uint64 count, then per array:
        uint32 0xF993FAC9 or 0xF993FACA (NDArray V2 / V3 magic), int32 storage type (0 = dense),
        int32 ndim, int64 × ndim shape, int32 device type, int32 device id,
        int32 dtype flag (mshadow's), then the values in C order;
    uint64 name count, then per name: uint64 length, UTF-8 bytes.

Only dense arrays are read; sparse storage (which k-means never writes) is refused by name.
"""

from __future__ import annotations

import struct

import numpy as np

LIST_MAGIC = 0x112
ARRAY_MAGICS = {0xF993FAC9: "V2", 0xF993FACA: "V3"}
DTYPES = {0: "<f4", 1: "<f8", 2: "<f2", 3: "u1", 4: "<i4", 5: "i1", 6: "<i8", 7: "?"}  # mshadow type flags
STORAGE_TYPES = {0: "default", 1: "row_sparse", 2: "csr"}


class NDArrayFileError(ValueError):
    """Not an MXNet NDArray list file Conveyor can read; the message says what was found where."""


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.offset, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise NDArrayFileError(f"{self.path} ends at byte {len(self.data)}, inside an NDArray header at byte {self.offset}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def raw(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise NDArrayFileError(f"{self.path} ends at byte {len(self.data)}; the array at byte {self.offset} needs {size} bytes")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def load(path: str) -> dict[str, np.ndarray] | list[np.ndarray]:
    """The arrays of an `mx.nd.save` file: a dict when they were saved with names, else a list."""
    with open(path, "rb") as file:
        reader = _Reader(file.read(), path)
    magic, _reserved, count = reader.take("<QQQ")
    if magic != LIST_MAGIC:
        raise NDArrayFileError(f"{path} starts with 0x{magic:X}, not MXNet's NDArray list magic 0x{LIST_MAGIC:X}")
    arrays = [_array(reader, index) for index in range(count)]
    (name_count,) = reader.take("<Q")
    if name_count == 0:
        return arrays
    if name_count != count:
        raise NDArrayFileError(f"{path} holds {count} arrays but {name_count} names")
    names = []
    for _ in range(name_count):
        (length,) = reader.take("<Q")
        names.append(reader.raw(length).decode("utf-8"))
    return dict(zip(names, arrays))


def _array(reader: _Reader, index: int) -> np.ndarray:
    (magic,) = reader.take("<I")
    if magic not in ARRAY_MAGICS:
        raise NDArrayFileError(
            f"array {index} of {reader.path} starts with 0x{magic:08X}; Conveyor reads MXNet 1.x NDArrays "
            f"({', '.join(f'0x{m:08X}' for m in ARRAY_MAGICS)})"
        )
    (storage,) = reader.take("<i")
    if storage != 0:
        raise NDArrayFileError(f"array {index} of {reader.path} has {STORAGE_TYPES.get(storage, storage)} storage; only dense arrays are read")
    (ndim,) = reader.take("<i")
    if ndim <= 0:  # an empty array (V3 writes -1 for an unknown shape): nothing follows
        return np.empty(0, np.float32)
    shape = reader.take(f"<{ndim}q")
    reader.take("<ii")  # device type and id: where it lived when saved
    (flag,) = reader.take("<i")
    if flag not in DTYPES:
        raise NDArrayFileError(f"array {index} of {reader.path} has dtype flag {flag}, which is not one of mshadow's ({sorted(DTYPES)})")
    dtype = np.dtype(DTYPES[flag])
    size = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(reader.raw(size), dtype).reshape(shape).copy()
