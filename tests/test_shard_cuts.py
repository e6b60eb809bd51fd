"""Cutting an object into byte-range shards at record boundaries (pipeline.shards), alone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.pipeline.shards import ShardReader, can_shard, read_start, shard_ranges, shift_offsets, shift_record_numbers
from conveyor.pipeline.split import iter_records
from tests.frames import recordio_frame, tfrecord_frame

MAGIC = b"\x0a\x23\xd7\xce"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[index : index + size] for index in range(0, len(data), size)]


def shards_of(data: bytes, split_type: str, shard_size: int, chunk_size: int = 7) -> list[tuple[bytes, int | None]]:
    """Each shard's bytes and where they begin, each read as a worker reads it: from its read start."""
    cut = []
    for start, end in shard_ranges(len(data), shard_size):
        reader = ShardReader(chunked(data[read_start(split_type, start) :], chunk_size), split_type, start=start, end=end, size=len(data))
        cut.append((b"".join(reader), reader.begin))
    return cut


def check_partition(data: bytes, split_type: str, shard_size: int, chunk_size: int) -> list[bytes]:
    """The shards' bytes, in order, are the object; each begins where it says and holds whole records."""
    pieces = shards_of(data, split_type, shard_size, chunk_size)
    assert b"".join(piece for piece, _ in pieces) == data
    position = 0
    for piece, begin in pieces:
        if piece:
            assert begin == position
            list(iter_records([piece], split_type, source="x"))  # whole records, or it raises
        position += len(piece)
    return [piece for piece, _ in pieces]


lines = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=25)
ends = st.sampled_from([b"\n", b"\r\n", b"\n\n"])


@settings(max_examples=300, deadline=None)
@given(lines, ends, st.booleans(), st.integers(1, 60), st.integers(1, 13))
def test_line_shards_partition_the_object(records, end, last_line_ended, shard_size, chunk_size):
    data = end.join(records) + (end if last_line_ended else b"")
    check_partition(data, "Line", shard_size, chunk_size)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12), st.integers(1, 90), st.integers(1, 13))
def test_tfrecord_shards_partition_the_object(records, shard_size, chunk_size):
    data = b"".join(tfrecord_frame(record) for record in records)
    check_partition(data, "TFRecord", shard_size, chunk_size)


recordio_data = st.lists(st.one_of(st.binary(max_size=40), st.binary(max_size=12).map(lambda b: b"abcd" + MAGIC + b)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(recordio_data, st.integers(1, 90), st.integers(1, 13))
def test_recordio_shards_partition_the_object(records, shard_size, chunk_size):
    data = b"".join(recordio_frame(record) for record in records)
    check_partition(data, "RecordIO", shard_size, chunk_size)


def test_a_line_cut_inside_a_record_moves_to_the_next_line_end():
    data = b"alpha\nbravo\ncharlie\n"
    assert shards_of(data, "Line", 8) == [(b"alpha\nbravo\n", 0), (b"charlie\n", 12), (b"", None)]


def test_a_line_starting_exactly_at_a_cut_belongs_to_the_shard_it_starts_in():
    data = b"abc\ndef\n"
    assert [piece for piece, _ in shards_of(data, "Line", 4)] == [b"abc\n", b"def\n"]


def test_a_record_spanning_several_shards_leaves_them_empty():
    data = b"x" * 50 + b"\nshort\n"
    assert [piece for piece, _ in shards_of(data, "Line", 10)] == [b"x" * 50 + b"\n", b"", b"", b"", b"", b"short\n"]
    big = tfrecord_frame(b"y" * 100) + tfrecord_frame(b"z")
    pieces = [piece for piece, _ in shards_of(big, "TFRecord", 30)]
    assert pieces == [tfrecord_frame(b"y" * 100), b"", b"", tfrecord_frame(b"z"), b""]  # the second record starts at 116


def test_a_multipart_recordio_record_stays_in_the_shard_it_starts_in():
    multipart = recordio_frame(b"abcd" + MAGIC + b"efgh" + MAGIC + b"ijkl")
    data = recordio_frame(b"first") + multipart + recordio_frame(b"last")
    pieces = [piece for piece, _ in shards_of(data, "RecordIO", 20)]
    assert recordio_frame(b"first") + multipart in (pieces[0], pieces[0] + pieces[1])
    assert b"".join(pieces) == data


def test_a_tfrecord_header_inside_data_is_not_taken_for_a_boundary():
    """A record's data holding a valid header (its length CRC checks) is passed over: the record
    that header announces would run past the object, or no valid header follows it."""
    fake = tfrecord_frame(b"q" * 10)[:12]
    data = tfrecord_frame(b"\0" * 3 + fake + b"p" * 40) + tfrecord_frame(b"after")
    check_partition(data, "TFRecord", 5, 4)


def test_corrupt_frames_reach_the_splitter():
    """A frame the walk cannot read hands on the rest of the object, for the splitter to name."""
    data = tfrecord_frame(b"good") + b"\xff" * 20
    pieces = shards_of(data, "TFRecord", 8)
    assert pieces[0][0] == data


def test_what_can_be_cut():
    assert can_shard("Line", "None") and can_shard("TFRecord", "None") and can_shard("RecordIO", "None")
    assert not can_shard("Line", "Gzip") and not can_shard("None", "None")
    assert shard_ranges(10, 0) == [(0, 10)] and shard_ranges(10, 10) == [(0, 10)]
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_messages_are_made_the_objects():
    source = "file:///in/a.rec"
    message = f"TFRecord record 3 at byte offset 40 of {source} is corrupt"
    assert shift_offsets(message, source, 1000) == f"TFRecord record 3 at byte offset 1040 of {source} is corrupt"
    assert shift_record_numbers(message, source, 7) == f"TFRecord record 10 at byte offset 40 of {source} is corrupt"
    assert shift_record_numbers(f"record 2 of {source}: bad, the 3 records 4 to 6", source, 10) == f"record 12 of {source}: bad, the 3 records 14 to 16"
