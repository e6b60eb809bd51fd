"""Independent writers of RecordIO and TFRecord frames, for tests (not our reader's code)."""

from __future__ import annotations

import struct

import google_crc32c

RECORDIO_MAGIC = 0xCED7230A


def recordio_frame(data: bytes) -> bytes:
    """dmlc RecordIO: split at aligned magic occurrences into cflag 1/2/3 parts, as dmlc writes."""
    magic = struct.pack("<I", RECORDIO_MAGIC)
    parts: list[bytes] = []
    start = 0
    for offset in range(0, len(data) - 3, 4):
        if data[offset : offset + 4] == magic and offset >= start:
            parts.append(data[start:offset])
            start = offset + 4
    parts.append(data[start:])
    out = bytearray()
    for index, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        elif index == 0:
            cflag = 1
        elif index == len(parts) - 1:
            cflag = 3
        else:
            cflag = 2
        out += magic + struct.pack("<I", (cflag << 29) | len(part)) + part
        out += b"\0" * ((4 - len(part) % 4) % 4)
    return bytes(out)


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))
