"""Splitters against frames made by small writers of our own, independent of the reader.

The TFRecord writer computes CRC-32C bit by bit (no google_crc32c), and the RecordIO writer
follows dmlc-core's `RecordIOWriter::WriteRecord` (cuts at aligned magic numbers, cflag 1/2/3).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.pipeline.split import DataError, Record, SizeGuard, iter_records, masked_crc32c

SOURCE = "s3://bucket/in/data.bin"

# --- independent writers -------------------------------------------------------------------


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, computed bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(crc32c(length))) + data + struct.pack("<I", masked(crc32c(data)))


MAGIC = struct.pack("<I", 0xCED7230A)


def recordio_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(cflag, frame) for each frame dmlc's writer emits for `data`."""
    frames = []
    lower_align = len(data) // 4 * 4
    kept_from = 0
    for i in range(0, lower_align, 4):
        if data[i : i + 4] == MAGIC:
            part = data[kept_from:i]
            frames.append((1 if kept_from == 0 else 2, part))
            kept_from = i + 4
    last = data[kept_from:]
    frames.append((3 if kept_from else 0, last))
    out = []
    for cflag, part in frames:
        header = MAGIC + struct.pack("<I", (cflag << 29) | len(part))
        out.append((cflag, header + part + b"\0" * (-len(part) % 4)))
    return out


def recordio_record(data: bytes) -> bytes:
    return b"".join(frame for _, frame in recordio_frames(data))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def records(data: bytes, split_type: str, chunk_size: int = 1 << 20) -> list[Record]:
    return list(iter_records(chunked(data, chunk_size), split_type, source=SOURCE))


# --- the writers themselves ------------------------------------------------------------------


def test_crc32c_check_value_and_rfc3720_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_masked_crc_hand_computed():
    # 0xE3069283 >> 15 = 0x0001C60D; (0xE3069283 << 17) mod 2^32 = 0x25060000; OR = 0x2507C60D;
    # + 0xA282EAD8 = 0xC78AB0E5.
    assert masked(0xE3069283) == 0xC78AB0E5
    assert masked_crc32c(b"123456789") == 0xC78AB0E5
    assert masked_crc32c(b"") == 0xA282EAD8  # crc32c(b"") is 0


def test_tfrecord_frame_of_empty_data():
    frame = tfrecord_frame(b"")
    assert frame == bytes(8) + struct.pack("<I", masked(crc32c(bytes(8)))) + b"\xd8\xea\x82\xa2"
    assert records(frame, "TFRecord") == [Record(frame, b"")]


def test_recordio_writer_splits_at_aligned_magic_only():
    data = b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij" + MAGIC[:2]
    frames = recordio_frames(data)
    assert [cflag for cflag, _ in frames] == [1, 2, 3]
    assert [len(frame) for _, frame in frames] == [8 + 4, 8 + 4, 8 + 4]
    unaligned = b"ab" + MAGIC + b"cd"
    assert [cflag for cflag, _ in recordio_frames(unaligned)] == [0]


# --- Line -------------------------------------------------------------------------------------


def test_line_records_keep_framing_and_strip_it_for_bare():
    data = b"a,1\nb,2\r\nc,3"
    assert records(data, "Line") == [
        Record(b"a,1\n", b"a,1"),
        Record(b"b,2\r\n", b"b,2"),
        Record(b"c,3\n", b"c,3"),  # a final line without a newline gets one
    ]


def test_line_empty_lines_are_not_records():
    data = b"\n\r\na\n\n\n\r\nb\r\n\r\n\n"
    assert records(data, "Line") == [Record(b"a\n", b"a"), Record(b"b\r\n", b"b")]


def test_line_carriage_returns_inside_a_line_stay():
    data = b"\r\r\nx\ry\n\r"
    assert records(data, "Line") == [Record(b"\r\r\n", b"\r"), Record(b"x\ry\n", b"x\ry")]


def test_line_final_line_ending_in_cr_is_a_crlf_line():
    assert records(b"a\nb\r", "Line") == [Record(b"a\n", b"a"), Record(b"b\r\n", b"b")]


def test_line_empty_object_and_only_empty_lines():
    assert records(b"", "Line") == []
    assert records(b"\n\r\n\n", "Line") == []


def reference_lines(data: bytes) -> list[Record]:
    """docs/semantics.md decision 5, written the obvious way over the whole object at once."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    out = []
    for piece in pieces:
        bare = piece[:-1] if piece.endswith(b"\r") else piece
        if bare:
            out.append(Record(piece + b"\n", bare))
    return out


@given(st.lists(st.sampled_from([b"a", b"b,", b"\n", b"\r", b"\r\n", b"\n\n"]), max_size=30), st.integers(1, 9))
def test_line_records_match_reference_however_chunked(parts, chunk_size):
    data = b"".join(parts)
    assert records(data, "Line", chunk_size) == reference_lines(data)


# --- None -------------------------------------------------------------------------------------


def test_none_is_the_whole_object():
    assert records(b"a\nb\n", "None", chunk_size=1) == [Record(b"a\nb\n", b"a\nb\n")]
    assert records(b"", "None") == []


# --- TFRecord ---------------------------------------------------------------------------------

TF_DATA = [b"", b"x", b"hello tfrecord", bytes(range(256)) * 3]


@pytest.mark.parametrize("chunk_size", [1, 3, 12, 16, 1 << 20])
def test_tfrecord_records(chunk_size):
    stream = b"".join(tfrecord_frame(d) for d in TF_DATA)
    assert records(stream, "TFRecord", chunk_size) == [Record(tfrecord_frame(d), d) for d in TF_DATA]


def test_tfrecord_corrupt_data_crc_names_record_and_offset():
    frames = [tfrecord_frame(d) for d in TF_DATA]
    bad = bytearray(frames[2])
    bad[14] ^= 0x01  # a byte of the data
    stream = frames[0] + frames[1] + bytes(bad)
    with pytest.raises(DataError) as caught:
        records(stream, "TFRecord", 5)
    message = str(caught.value)
    assert "record 3" in message and f"byte offset {len(frames[0]) + len(frames[1])}" in message
    assert SOURCE in message and "CRC" in message


def test_tfrecord_corrupt_length_crc():
    frame = bytearray(tfrecord_frame(b"abc"))
    frame[9] ^= 0x80  # the length's CRC
    with pytest.raises(DataError, match=r"record 1 at byte offset 0 .*length"):
        records(bytes(frame), "TFRecord")
    frame = bytearray(tfrecord_frame(b"abc"))
    frame[0] = 4  # the length itself
    with pytest.raises(DataError, match="CRC"):
        records(bytes(frame), "TFRecord")


@pytest.mark.parametrize("cut", [1, 11, 12, 15, 18])
def test_tfrecord_truncated(cut):
    first = tfrecord_frame(b"ok")
    stream = first + tfrecord_frame(b"abcdef")[:cut]
    with pytest.raises(DataError, match=rf"record 2 at byte offset {len(first)} .*truncated"):
        records(stream, "TFRecord", 4)


def test_tfrecord_guard_refuses_a_large_record_from_its_header():
    frame = tfrecord_frame(b"y" * 100)
    seen = []

    def chunks():
        seen.append(frame[:12])
        yield frame[:12]
        raise AssertionError("the data was read")

    guard = SizeGuard(50, framed=False, error=lambda number, size, exact: ValueError(number, size, exact))
    with pytest.raises(ValueError) as caught:
        list(iter_records(chunks(), "TFRecord", source=SOURCE, guard=guard))
    assert caught.value.args == (1, 100, True)


# --- RecordIO ---------------------------------------------------------------------------------

RECORDIO_DATA = [
    b"",
    b"a",
    b"abcd",
    b"abcde",
    MAGIC,  # two empty parts
    MAGIC + b"tail",
    b"head" + MAGIC,
    b"xy" + MAGIC + b"zz",  # magic not 4-aligned: no split
    b"1234" + MAGIC + MAGIC + b"5678" + MAGIC + b"9",
    bytes(range(200)) + MAGIC + bytes(range(50)),
]


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 1 << 20])
def test_recordio_records_reassemble_multipart(chunk_size):
    stream = b"".join(recordio_record(d) for d in RECORDIO_DATA)
    got = records(stream, "RecordIO", chunk_size)
    assert [r.bare for r in got] == RECORDIO_DATA
    assert [r.framed for r in got] == [recordio_record(d) for d in RECORDIO_DATA]


def test_recordio_multipart_frames_really_are_multipart():
    assert [cflag for cflag, _ in recordio_frames(b"1234" + MAGIC + MAGIC + b"5678" + MAGIC + b"9")] == [1, 2, 2, 3]
    assert [cflag for cflag, _ in recordio_frames(MAGIC)] == [1, 3]


def test_recordio_padding_is_not_data():
    (record,) = records(recordio_record(b"abcde"), "RecordIO")
    assert record.framed == MAGIC + struct.pack("<I", 5) + b"abcde\0\0\0"
    assert record.bare == b"abcde"


def test_recordio_bad_magic_names_offset():
    first = recordio_record(b"abcd")
    with pytest.raises(DataError, match=rf"record 2 at byte offset {len(first)} .*magic") as caught:
        records(first + b"\0" * 8 + b"abcd", "RecordIO")
    assert SOURCE in str(caught.value)


@pytest.mark.parametrize("cut", [3, 8, 10])
def test_recordio_truncated(cut):
    first = recordio_record(b"abcd")
    with pytest.raises(DataError, match=rf"record 2 at byte offset {len(first)} .*truncated"):
        records(first + recordio_record(b"abcdef")[:cut], "RecordIO", 3)


def test_recordio_multipart_cut_short_or_out_of_order():
    frames = [frame for _, frame in recordio_frames(b"1234" + MAGIC + b"5678")]
    with pytest.raises(DataError, match="truncated.*multipart"):
        records(frames[0], "RecordIO")
    with pytest.raises(DataError, match="without the first part"):
        records(frames[1], "RecordIO")
    with pytest.raises(DataError, match="starts before the multipart record"):
        records(frames[0] + recordio_record(b"x"), "RecordIO")
    with pytest.raises(DataError, match="continuation flag 5"):
        records(MAGIC + struct.pack("<I", (5 << 29) | 4) + b"abcd", "RecordIO")


def test_unknown_split_type():
    with pytest.raises(ValueError, match="SplitType"):
        iter_records([b"x"], "Lines", source=SOURCE)


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=24), max_size=6), st.integers(1, 13), st.data())
def test_recordio_roundtrip_with_magic_sprinkled(datas, chunk_size, draw):
    datas = [
        b"".join(MAGIC if draw.draw(st.booleans(), label="magic") else d[i : i + 4] for i in range(0, len(d), 4)) for d in datas
    ]
    stream = b"".join(recordio_record(d) for d in datas)
    assert [r.bare for r in records(stream, "RecordIO", chunk_size)] == datas
