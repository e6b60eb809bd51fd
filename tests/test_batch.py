"""Batching: SingleRecord and MultiRecord payloads within MaxPayloadInMB, and the Line fast path."""

from __future__ import annotations

import itertools
import pickle
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.pipeline.batch import Payload, RecordTooLarge, iter_payloads, pack_records
from conveyor.pipeline.split import DataError, Record, iter_records
from tests.test_split import MAGIC, recordio_record, tfrecord_frame

SOURCE = "s3://bucket/in/part-7.csv"


def payloads(data: bytes | list[bytes], split_type="Line", strategy="MultiRecord", limit=0, chunk_size=1 << 20) -> list[Payload]:
    chunks = data if isinstance(data, list) else [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    return list(iter_payloads(chunks, split_type=split_type, strategy=strategy, max_payload_bytes=limit, source=SOURCE))


def slow_line_payloads(chunks: list[bytes], limit: int) -> list[Payload]:
    records = iter_records(chunks, "Line", source=SOURCE)
    return list(pack_records(records, strategy="MultiRecord", max_payload_bytes=limit, source=SOURCE))


# --- Line ------------------------------------------------------------------------------------


def test_multi_record_packs_whole_lines_up_to_the_limit():
    data = b"aaa\nbbb\nccc\nddd\n"
    assert payloads(data, limit=8) == [Payload(b"aaa\nbbb\n", 2, 0), Payload(b"ccc\nddd\n", 2, 2)]
    assert payloads(data, limit=11) == [Payload(b"aaa\nbbb\n", 2, 0), Payload(b"ccc\nddd\n", 2, 2)]
    assert payloads(data, limit=12) == [Payload(b"aaa\nbbb\nccc\n", 3, 0), Payload(b"ddd\n", 1, 3)]


def test_record_exactly_at_the_limit_fits_and_one_byte_over_does_not():
    data = b"12345\nab\n"
    assert payloads(data, limit=6) == [Payload(b"12345\n", 1, 0), Payload(b"ab\n", 1, 1)]
    with pytest.raises(RecordTooLarge) as caught:
        payloads(data, limit=5)
    message = str(caught.value)
    assert "record 1" in message and SOURCE in message and "6 bytes" in message and "(5 bytes)" in message
    # SingleRecord measures the line without its newline.
    assert payloads(data, strategy="SingleRecord", limit=5) == [Payload(b"12345", 1, 0), Payload(b"ab", 1, 1)]
    with pytest.raises(RecordTooLarge, match="record 1 .* 5 bytes"):
        payloads(data, strategy="SingleRecord", limit=4)


def test_record_too_large_names_the_record_and_the_limit_in_mib():
    line = b"x" * ((1 << 20) + 10) + b"\n"
    with pytest.raises(RecordTooLarge) as caught:
        payloads(b"a\nb\n" + line, limit=1 << 20)
    assert caught.value.record_number == 3
    assert "record 3 of s3://bucket/in/part-7.csv" in str(caught.value)
    assert "1048576 bytes = 1 MiB" in str(caught.value)
    assert isinstance(caught.value, DataError)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is RecordTooLarge and str(copy) == str(caught.value) and copy.record_number == 3


def test_empty_lines_crlf_and_no_trailing_newline():
    data = b"\n\r\na,1\r\n\r\n\nb,2\n\n\nc,3"
    assert payloads(data, limit=100) == [Payload(b"a,1\r\nb,2\nc,3\n", 3, 0)]
    assert payloads(data, limit=7) == [Payload(b"a,1\r\n", 1, 0), Payload(b"b,2\n", 1, 1), Payload(b"c,3\n", 1, 2)]
    assert payloads(data, strategy="SingleRecord") == [Payload(b"a,1", 1, 0), Payload(b"b,2", 1, 1), Payload(b"c,3", 1, 2)]


def test_limit_zero_means_no_limit():
    data = b"x" * 5000 + b"\n" + b"y\n" * 1000
    assert payloads(data, limit=0, chunk_size=100) == [Payload(data, 1001, 0)]
    assert len(payloads(data, strategy="SingleRecord", limit=0)) == 1001


def test_zero_byte_and_blank_objects_give_no_payload():
    for split_type in ("None", "Line", "RecordIO", "TFRecord"):
        for strategy in ("SingleRecord", "MultiRecord"):
            assert payloads(b"", split_type, strategy, limit=10) == []
            assert payloads([], split_type, strategy, limit=10) == []
    assert payloads(b"\n\r\n\n") == []


def test_first_record_counts_records_not_lines():
    data = b"a\n\nb\nc\n\r\nd\n"
    assert [p.first_record for p in payloads(data, limit=4)] == [0, 2]
    assert [p.first_record for p in payloads(data, strategy="SingleRecord")] == [0, 1, 2, 3]


def test_a_never_ending_line_fails_fast():
    consumed = 0

    def endless():
        nonlocal consumed
        chunk = b"x" * (64 << 10)
        while True:
            consumed += 1
            yield chunk

    with pytest.raises(RecordTooLarge, match=r"record 1 .* at least"):
        list(iter_payloads(endless(), split_type="Line", strategy="MultiRecord", max_payload_bytes=1 << 20, source=SOURCE))
    assert consumed <= 17
    consumed = 0
    with pytest.raises(RecordTooLarge, match=r"record 1 .* at least"):
        list(iter_payloads(endless(), split_type="Line", strategy="SingleRecord", max_payload_bytes=1 << 20, source=SOURCE))
    assert consumed <= 17


# --- the fast path is the slow path, byte for byte --------------------------------------------

line_parts = st.sampled_from([b"a", b"bc", b",", b"\n", b"\r", b"\r\n", b"\n\n", b"\n\r\n", b"xyzxyz"])


@settings(max_examples=400, deadline=None)
@given(st.lists(line_parts, max_size=40), st.lists(st.integers(1, 12), min_size=1, max_size=8), st.integers(0, 30))
def test_fast_path_equals_slow_path(parts, cuts, limit):
    data = b"".join(parts)
    chunks, position = [], 0
    for size in itertools.cycle(cuts):
        if position >= len(data):
            break
        chunks.append(data[position : position + size])
        position += size
    fast_out, fast_error = _run(lambda: iter_payloads(chunks, split_type="Line", strategy="MultiRecord", max_payload_bytes=limit, source=SOURCE))
    slow_out, slow_error = _run(lambda: slow_line_payloads(chunks, limit))
    if fast_error is None and slow_error is None:
        assert fast_out == slow_out
        assert all(limit == 0 or len(p.body) <= limit for p in fast_out)
        assert sum(p.record_count for p in fast_out) == len(list(iter_records(chunks, "Line", source=SOURCE)))
    else:
        # Both refuse the same record; the fast path may notice an unfinished long line sooner,
        # so the payloads produced before the refusal are a prefix of one another.
        assert isinstance(fast_error, RecordTooLarge) and isinstance(slow_error, RecordTooLarge)
        assert fast_error.record_number == slow_error.record_number
        shorter = min(len(fast_out), len(slow_out))
        assert fast_out[:shorter] == slow_out[:shorter]


def test_fast_path_equals_slow_path_on_large_chunks_with_numpy_checks():
    # Big enough that the empty-line and counting checks take their vectorised branches.
    body = b"".join(b"%d,%s\n" % (i, b"v" * (i % 37)) for i in range(20000))
    variants = [
        body,
        body.replace(b"\n", b"\r\n"),
        body[:70000] + b"\n" + body[70000:],
        body[:70001] + b"\r\n" + body[70001:],
        body.replace(b"\n", b"\r\n")[:90000] + b"\r\n\r\n" + body[90000:],
        b"\n" + body,
        body + b"\n\n",
    ]
    for data in variants:
        for chunk_size in (1 << 15, 100_003, 1 << 20):
            chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
            for limit in (0, 4096, 65536, 300_000):
                fast = list(iter_payloads(chunks, split_type="Line", strategy="MultiRecord", max_payload_bytes=limit, source=SOURCE))
                assert fast == slow_line_payloads(chunks, limit)


def _run(make):
    out = []
    try:
        for payload in make():
            out.append(payload)
    except RecordTooLarge as error:
        return out, error
    return out, None


def test_memory_stays_bounded_by_the_payload_not_the_object():
    chunk = (b"0123456789," * 9 + b"\n") * ((1 << 20) // 100)
    tracemalloc.start()
    try:
        total = 0
        for payload in iter_payloads(itertools.repeat(chunk, 256), split_type="Line", strategy="MultiRecord", max_payload_bytes=2 << 20, source=SOURCE):
            total += len(payload.body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == len(chunk) * 256
    assert peak < 12 << 20, peak


# --- SplitType None ----------------------------------------------------------------------------


def test_none_sends_the_whole_object():
    data = b'{"instances": [1, 2, 3]}'
    for strategy in ("SingleRecord", "MultiRecord"):
        assert payloads(data, "None", strategy, limit=len(data), chunk_size=5) == [Payload(data, 1, 0)]
        assert payloads(data, "None", strategy, limit=0, chunk_size=5) == [Payload(data, 1, 0)]


def test_none_over_the_limit_fails_fast():
    consumed = 0

    def five_gigabytes():
        nonlocal consumed
        chunk = bytes(1 << 20)
        for _ in range(5 << 10):
            consumed += 1
            yield chunk

    with pytest.raises(RecordTooLarge) as caught:
        list(iter_payloads(five_gigabytes(), split_type="None", strategy="MultiRecord", max_payload_bytes=6 << 20, source=SOURCE))
    assert consumed == 7
    assert "SplitType is None" in str(caught.value) and SOURCE in str(caught.value)
    assert "6291456 bytes = 6 MiB" in str(caught.value)
    with pytest.raises(RecordTooLarge):
        payloads(b"abcdef", "None", limit=5)


# --- binary formats ----------------------------------------------------------------------------

TF_DATA = [b"", b"one", b"two!", b"x" * 40]


def test_tfrecord_multi_record_keeps_frames_single_record_strips_them():
    frames = [tfrecord_frame(d) for d in TF_DATA]
    stream = b"".join(frames)
    assert payloads(stream, "TFRecord", "SingleRecord", limit=40, chunk_size=7) == [Payload(d, 1, i) for i, d in enumerate(TF_DATA)]
    # 16 + 19 + 20 = 55 bytes fit in 60; the 56-byte frame goes alone.
    assert payloads(stream, "TFRecord", "MultiRecord", limit=60, chunk_size=7) == [
        Payload(frames[0] + frames[1] + frames[2], 3, 0),
        Payload(frames[3], 1, 3),
    ]
    with pytest.raises(RecordTooLarge, match="record 4 .* 56 bytes"):
        payloads(stream, "TFRecord", "MultiRecord", limit=55)
    with pytest.raises(RecordTooLarge, match="record 4 .* 40 bytes"):
        payloads(stream, "TFRecord", "SingleRecord", limit=39)


def test_recordio_multi_record_keeps_frames_single_record_reassembles():
    datas = [b"abcd" + MAGIC + b"efgh", b"z", MAGIC]
    records = [recordio_record(d) for d in datas]
    stream = b"".join(records)
    assert payloads(stream, "RecordIO", "SingleRecord", chunk_size=3) == [Payload(d, 1, i) for i, d in enumerate(datas)]
    assert payloads(stream, "RecordIO", "MultiRecord", limit=len(records[0]) + len(records[1]), chunk_size=3) == [
        Payload(records[0] + records[1], 2, 0),
        Payload(records[2], 1, 2),
    ]
    with pytest.raises(RecordTooLarge, match="record 1"):
        payloads(stream, "RecordIO", "MultiRecord", limit=len(records[0]) - 1)
    with pytest.raises(RecordTooLarge, match="record 1"):
        payloads(stream, "RecordIO", "SingleRecord", limit=11)
    assert payloads(stream, "RecordIO", "SingleRecord", limit=12)[0].body == datas[0]


def test_corrupt_binary_data_is_a_data_error_not_a_payload():
    frame = bytearray(tfrecord_frame(b"abc"))
    frame[-1] ^= 1
    with pytest.raises(DataError, match="CRC"):
        payloads(bytes(frame), "TFRecord", "MultiRecord")


# --- pack_records --------------------------------------------------------------------------------


def test_pack_records_after_filtering():
    records = [Record(b"a,1\n", b"a,1"), Record(b"b\n", b"b"), Record(b"cc\n", b"cc")]
    assert list(pack_records(records, strategy="MultiRecord", max_payload_bytes=6, source=SOURCE, first_record=10)) == [
        Payload(b"a,1\nb\n", 2, 10),
        Payload(b"cc\n", 1, 12),
    ]
    assert list(pack_records(records, strategy="SingleRecord", max_payload_bytes=3, source=SOURCE, first_record=10)) == [
        Payload(b"a,1", 1, 10),
        Payload(b"b", 1, 11),
        Payload(b"cc", 1, 12),
    ]
    with pytest.raises(RecordTooLarge, match="record 11 "):
        list(pack_records(records, strategy="SingleRecord", max_payload_bytes=2, source=SOURCE, first_record=10))
    assert list(pack_records(records, strategy="MultiRecord", max_payload_bytes=0, source=SOURCE)) == [Payload(b"a,1\nb\ncc\n", 3, 0)]
    assert list(pack_records([], strategy="MultiRecord", max_payload_bytes=6, source=SOURCE)) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="BatchStrategy"):
        iter_payloads([b"x"], split_type="Line", strategy="Multi", max_payload_bytes=0, source=SOURCE)
    with pytest.raises(ValueError, match="SplitType"):
        iter_payloads([b"x"], split_type="line", strategy="MultiRecord", max_payload_bytes=0, source=SOURCE)
    with pytest.raises(ValueError, match="max_payload_bytes"):
        pack_records([], strategy="MultiRecord", max_payload_bytes=-1, source=SOURCE)


@pytest.mark.parametrize("crlf", [False, True])
def test_empty_line_detection_at_every_offset_parity(crlf):
    from conveyor.pipeline.batch import _has_empty_line

    ending = b"\r\n" if crlf else b"\n"
    line = b"ab" + ending
    base = line * 10_000  # past the size where the check is vectorised
    assert not _has_empty_line(base, 0, len(base))
    for position in list(range(len(line), 12 * len(line), len(line))) + [len(base) - len(line), len(base)]:
        data = base[:position] + ending + base[position:]
        for start in (0, len(line), 2 * len(line)):  # line starts in base; shifted in data after the insert
            shifted = start if start <= position else start + len(ending)
            assert _has_empty_line(data, shifted, len(data)) == (position >= start), (position, start)
