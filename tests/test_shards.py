"""Shards: one large object cut into byte-range work items, whose outputs are assembled into the
one `.out`, byte for byte what an unsharded run writes (docs/semantics.md, "Shards")."""

from __future__ import annotations

import json
import os
import random
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from conveyor.engine.assembly import AssemblyStopped, assemble
from conveyor.engine.job import plan_work_items
from conveyor.pipeline.work_item import WorkItem
from conveyor.settings import Settings
from conveyor.storage import storage_for
from conveyor.storage.s3 import S3Config, S3Storage
from tests.frames import recordio_frame, tfrecord_frame
from tests.job_requests import job_request
from tests.models import BRACKET, write_model
from tests.s3_proxy import S3Proxy
from tests.s3_server import S3Server
from tests.server import start_server, wait_for_status
from tests.test_job_lifecycle import job_and_model
from tests.test_transform_cli import conveyor

SHARD = "0.0002"  # MiB: 209 bytes, so that small objects are cut at awkward places

# One output line per record, whatever the batching: CSV lines upper-cased with their field
# count; TFRecord and RecordIO frames (MultiRecord) or bare records (SingleRecord) described.
PER_RECORD = '''
import struct

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    if content_type == "application/x-tfrecord":
        out, p = [], 0
        while p < len(body):
            n = struct.unpack_from("<Q", body, p)[0]
            out.append(b"%d:%s\\n" % (n, body[p + 12 : p + 12 + n][:6].hex().encode()))
            p += 16 + n
        return b"".join(out)
    if content_type == "application/x-recordio":
        out, p = [], 0
        while p < len(body):
            flags = struct.unpack_from("<I", body, p + 4)[0]
            n = flags & ((1 << 29) - 1)
            out.append(b"%d/%d:%s\\n" % (flags >> 29, n, body[p + 8 : p + 8 + n][:6].hex().encode()))
            p += 8 + ((n + 3) & ~3)
        return b"".join(out)
    if content_type == "application/octet-stream":
        return b"%d:%s\\n" % (len(body), body[:6].hex().encode())
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return b"".join(b"%d,%s\\n" % (len(line.split(b",")), line.upper()) for line in body.splitlines())
'''


def csv_object(rng: random.Random, count: int = 120) -> bytes:
    """Lines short and long (one spans several shards), an empty line, a `\\r\\n`, no final `\\n`."""
    lines = []
    for index in range(count):
        width = 900 if index == 40 else rng.choice([1, 3, 10, 40])
        lines.append(",".join(f"v{rng.randrange(1000)}" for _ in range(width)))
    lines[60] = ""
    lines[70] += "\r"
    return ("\n".join(lines)).encode()


def binary_object(split_type: str, rng: random.Random, count: int = 60) -> bytes:
    magic = b"\x0a\x23\xd7\xce"
    records = [bytes(rng.randrange(256) for _ in range(700 if index == 20 else rng.randrange(0, 60))) for index in range(count)]
    records[30] = b"abcd" + magic + b"efgh" + magic + b"ij"  # a multi-part RecordIO record
    frame = tfrecord_frame if split_type == "TFRecord" else recordio_frame
    return b"".join(frame(record) for record in records)


def transform(tmp_path: Path, data: bytes, shard_size: str, *flags: str, name: str = "a.in") -> tuple[bytes, str]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    model = tmp_path / "model"
    if not model.exists():
        write_model(tmp_path, PER_RECORD)
    out = tmp_path / f"out-{shard_size}"
    result = conveyor(
        "transform", "--name", "job", "--model", str(model), "--input", str(folder), "--output", str(out),
        "--shard-size", shard_size, "--retries", "0", *flags, home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir() if not path.name.endswith(".jsonl")) == [f"{name}.out"], "a piece was left behind"
    return (out / f"{name}.out").read_bytes(), result.stderr


def same_as_unsharded(tmp_path: Path, data: bytes, *flags: str) -> str:
    whole, _ = transform(tmp_path, data, "0", *flags)
    sharded, log = transform(tmp_path, data, SHARD, *flags)
    assert sharded == whole
    assert whole
    return log


@pytest.mark.parametrize(
    "flags",
    [
        ("--strategy", "MultiRecord", "--assemble-with", "Line"),
        ("--strategy", "MultiRecord", "--assemble-with", "None", "--max-payload", "1"),
        ("--strategy", "SingleRecord", "--assemble-with", "None"),
        ("--strategy", "SingleRecord", "--assemble-with", "Line"),
    ],
)
def test_line_objects_sharded_give_the_unsharded_bytes(tmp_path: Path, flags: tuple[str, ...]) -> None:
    log = same_as_unsharded(tmp_path, csv_object(random.Random(7)), "--content-type", "text/csv", "--split-type", "Line", *flags)
    assert "shards" in log


def without_inference_ids(output: bytes) -> list[bytes]:
    return [b",".join(line.split(b",")[:-2]) for line in output.splitlines()]


def test_filters_join_and_inference_ids_across_shards(tmp_path: Path) -> None:
    data = csv_object(random.Random(3)).replace(b"\r", b"")
    flags = (
        "--content-type", "text/csv", "--split-type", "Line", "--strategy", "MultiRecord", "--assemble-with", "Line",
        "--accept", "text/csv", "--input-filter", "$[0,2:]", "--join-source", "Input", "--output-filter", "$[0,1,-2:]", "--data-capture", f"file://{tmp_path}/capture",
    )  # fmt: skip
    whole, _ = transform(tmp_path, data, "0", *flags)
    sharded, _ = transform(tmp_path, data, SHARD, *flags)
    assert without_inference_ids(sharded) == without_inference_ids(whole)
    assert len(set(line.split(b",")[-2] for line in sharded.splitlines())) == len(sharded.splitlines())  # every record its own id


@pytest.mark.parametrize("split_type", ["TFRecord", "RecordIO"])
@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
def test_framed_objects_sharded_give_the_unsharded_bytes(tmp_path: Path, split_type: str, strategy: str) -> None:
    content_type = "application/octet-stream" if strategy == "SingleRecord" else f"application/x-{split_type.lower()}"
    data = binary_object(split_type, random.Random(11))
    assemble_with = "Line" if strategy == "SingleRecord" else "None"
    same_as_unsharded(
        tmp_path, data, "--content-type", content_type, "--split-type", split_type, "--strategy", strategy, "--assemble-with", assemble_with
    )


def test_failed_records_keep_their_numbers_in_the_whole_object(tmp_path: Path) -> None:
    rows = [f"bad-{n}" if n in (3, 40, 41, 77) else f"row-{n}," + "x" * (n % 13) for n in range(1, 101)]
    data = "".join(f"{row}\n" for row in rows).encode()
    flags = ("--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--max-failed-records", "10")
    whole, _ = transform(tmp_path, data, "0", *flags)
    whole_manifest = (tmp_path / "out-0" / "job.errors.jsonl").read_text()
    sharded, log = transform(tmp_path, data, SHARD, *flags)
    sharded_manifest = (tmp_path / f"out-{SHARD}" / "job.errors.jsonl").read_text()
    assert sharded == whole
    numbers = [(entry["record"], entry["offset"]) for entry in map(json.loads, sharded_manifest.splitlines())]
    assert numbers == [(entry["record"], entry["offset"]) for entry in map(json.loads, whole_manifest.splitlines())]
    assert [number for number, _ in numbers] == [3, 40, 41, 77]
    assert "4 records failed; their outputs are empty lines" in log


def test_a_record_that_fails_its_object_is_named_by_its_number_in_the_object(tmp_path: Path) -> None:
    rows = [f"row-{n}," + "y" * 30 for n in range(1, 60)]
    rows[44] = "bad"
    data = "".join(f"{row}\n" for row in rows).encode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.in").write_bytes(data)
    write_model(tmp_path, PER_RECORD)
    result = conveyor(
        "transform", "--name", "job", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--shard-size", SHARD, "--retries", "0", "--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord",
        "--max-payload", "0", "--max-failed-records", "0", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode != 0
    assert not (tmp_path / "out").exists() or [path.name for path in (tmp_path / "out").iterdir() if ".conveyor-tmp-" in path.name] == []
    manifest = [json.loads(line) for line in (tmp_path / "out" / "job.errors.jsonl").read_text().splitlines()]
    assert [entry["record"] for entry in manifest] == [45]


COUNTING = '''
from pathlib import Path

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    with open({calls!r}, "a") as calls:
        calls.write("x")
    body = body if isinstance(body, bytes) else body.encode()
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body
'''


def test_the_shards_after_a_failed_one_are_not_run(tmp_path: Path) -> None:
    """An object whose first shard fails cannot be assembled: its other shards fail at once, untransformed."""
    line = b"0123456789" * 10 + b"\n"
    data = b"bad\n" + line * ((6 << 20) // len(line))  # 6 MiB: six shards of a little over 1 MiB, sent one at a time
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(data)
    write_model(tmp_path, COUNTING.format(calls=str(tmp_path / "calls")))
    result = conveyor(
        "transform", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--shard-size", "1.1", "--retries", "0", "--content-type", "text/csv", "--split-type", "Line", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 1
    assert "shard 6 of 6 not transformed: another shard of the object failed" in result.stderr
    assert "1 of 1 input object failed. First:" in result.stderr and "cannot score a bad record" in result.stderr
    assert len((tmp_path / "calls").read_text()) <= 2, "shards after the failed one were transformed"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


SLOW_MARKING = '''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    time.sleep(0.4)
    with open({marks!r}, "a") as marks:
        marks.write("x")
    return b"".join(b"scored " + line + b"\\n" for line in body.splitlines())
'''


def test_kill_9_with_some_shards_done_then_resume(tmp_path: Path) -> None:
    data = "".join(f"row-{n},{'z' * (n % 17)}\n" for n in range(1, 200)).encode()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(data)
    marks = tmp_path / "marks"
    model = write_model(tmp_path, textwrap.dedent(SLOW_MARKING.format(marks=str(marks))))
    out = tmp_path / "out"
    server = start_server(tmp_path / "home", "--shard-size", "0.0005")  # 524 bytes: 5 shards
    try:
        sm = server.client()
        sm.create_model(ModelName="slow", PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model}"})
        sm.create_transform_job(**job_request("crashes", "slow", f"file://{tmp_path}/in/", f"file://{out}", AssembleWith="Line"))
        deadline = time.monotonic() + 60
        while not (marks.exists() and len(marks.read_text()) >= 2):
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.02)
        server.kill()
        assert not (out / "a.csv.out").exists()
        server = server.restart()
        described = wait_for_status(server.client(), "crashes", timeout=90)
        assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    finally:
        server.stop()
    expected = b"".join(b"scored " + line + b"\n" for line in data.splitlines())
    assert (out / "a.csv.out").read_bytes() == expected
    assert sorted(path.name for path in out.iterdir()) == ["a.csv.out"]


def test_stop_during_an_s3_assembly_leaves_no_object_and_no_pending_upload(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = s3_server.client()
    storage = S3Storage(S3Config(endpoint_url=s3_server.endpoint_url, part_size=5 << 20))
    output = f"s3://{s3_bucket}/out/a.csv.out"
    pieces = [bytes([65 + shard]) * ((6 if shard < 2 else 1) << 20) for shard in range(3)]

    def put_pieces() -> None:  # 6, 6 and 1 MiB: the multipart upload has begun when Stop comes
        for shard, piece in enumerate(pieces):
            s3.put_object(Bucket=s3_bucket, Key=f"out/a.csv.out.conveyor-tmp-shard-{shard:05d}", Body=piece)

    put_pieces()
    item = WorkItem(item_id=2, input_uri=f"s3://{s3_bucket}/in/a.csv", output_uri=output, size=100, shard=2, shards=3, range_start=0, range_end=1)

    class StopAfterTheFirstParts(threading.Event):
        """A Stop that arrives once the assembly has copied two chunks (a part is uploading)."""

        checks = 0

        def is_set(self) -> bool:
            self.checks += 1
            return self.checks > 2

    with pytest.raises(AssemblyStopped):
        assemble(item, lambda uri: storage, StopAfterTheFirstParts())
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert "out/a.csv.out" not in [entry["Key"] for entry in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    storage.sweep_temporaries(output)  # what the job's end does with the pieces of an object it did not assemble
    assert s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []

    put_pieces()  # unstopped: the pieces in order, whole, and the pieces gone
    assemble(item, lambda uri: storage, threading.Event())
    assert s3.get_object(Bucket=s3_bucket, Key="out/a.csv.out")["Body"].read() == b"".join(pieces)
    assert [entry["Key"] for entry in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["out/a.csv.out"]
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_local_assembly_copies_pieces_in_the_kernel(tmp_path: Path) -> None:
    """Local pieces are appended with copy_file_range, empty ones included, whole or not at all."""
    output = f"file://{tmp_path}/o/a.out"
    storage = storage_for(output)
    (tmp_path / "o").mkdir()
    pieces = [b"abc\n" * 1000, b"", b"x" * (3 << 20) + b"\n", b"tail"]
    for shard, piece in enumerate(pieces):
        Path(storage.piece_uri(output, shard).removeprefix("file://")).write_bytes(piece)
    item = WorkItem(item_id=1, input_uri=f"file://{tmp_path}/a", output_uri=output, size=1, shard=3, shards=4, range_start=0, range_end=1)
    assert assemble(item, storage_for, threading.Event()) == sum(len(piece) for piece in pieces)
    assert (tmp_path / "o" / "a.out").read_bytes() == b"".join(pieces)
    assert sorted(path.name for path in (tmp_path / "o").iterdir()) == ["a.out"]


class PieceReads(S3Proxy):
    """Counts the requests that read a shard's piece through this process (GETs of a piece)."""

    reads = 0

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        if request.command == "GET" and "conveyor-tmp-shard" in request.path:
            with self._lock:
                self.reads += 1
        self.forward(request, body)


@pytest.mark.parametrize(
    ("sizes_kib", "pieces_read"),
    [
        ((6144, 6144, 1024), 0),  # every piece a part copied by S3, the last one small
        ((1024, 10240, 6144, 300), 2),  # the small first piece and 4 MiB of the next travel here to make a 5 MiB part
        ((1024, 7168, 300), 3),  # what is left of the 7 MiB piece after its head is too small to be a part: read too
        ((100, 200, 300), 3),  # all small: one part of all three, read
    ],
)
def test_s3_assembly_copies_pieces_inside_s3(s3_server: S3Server, s3_bucket: str, sizes_kib: tuple[int, ...], pieces_read: int) -> None:
    """Pieces of 5 MiB and more are parts that S3 copies (UploadPartCopy): their bytes never
    pass through the assembling process; what is smaller is read to make S3's 5 MiB minimum."""
    s3 = s3_server.client()
    pieces = [bytes([65 + shard]) * (size << 10) for shard, size in enumerate(sizes_kib)]
    for shard, piece in enumerate(pieces):
        s3.put_object(Bucket=s3_bucket, Key=f"out/b.csv.out.conveyor-tmp-shard-{shard:05d}", Body=piece)
    shards = len(pieces)
    item = WorkItem(item_id=1, input_uri=f"s3://{s3_bucket}/in/b.csv", output_uri=f"s3://{s3_bucket}/out/b.csv.out", size=1, shard=shards - 1, shards=shards, range_start=0, range_end=1)
    with PieceReads(s3_server.endpoint_url) as proxy:
        storage = S3Storage(S3Config(endpoint_url=proxy.endpoint_url, part_size=5 << 20))
        assert assemble(item, lambda uri: storage, threading.Event()) == sum(len(piece) for piece in pieces)
    assert s3.get_object(Bucket=s3_bucket, Key="out/b.csv.out")["Body"].read() == b"".join(pieces)
    assert proxy.reads == pieces_read
    assert [entry["Key"] for entry in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["out/b.csv.out"]
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_the_shard_size_is_a_setting(tmp_path: Path) -> None:
    result = conveyor("transform", "--shard-size", "lots", "--model", "m", "--input", "i", "--output", "o", home=tmp_path / "home")
    assert result.returncode == 2 and "--shard-size='lots'" in result.stderr
    assert storage_for(f"file://{tmp_path}/o/a.out").piece_uri(f"file://{tmp_path}/o/a.out", 3) == f"file://{tmp_path}/o/.a.out.conveyor-tmp-shard-00003"


@pytest.mark.parametrize("read_strategy", ["stream", "ranges"])
def test_a_sharded_job_on_s3_gives_the_unsharded_bytes(tmp_path: Path, s3_server: S3Server, s3_bucket: str, read_strategy: str) -> None:
    """Input and output in the store: each shard a ranged read, its piece a temporary object,
    the pieces assembled into one object; nothing else left in the bucket."""
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="in/a.csv", Body=csv_object(random.Random(11), count=400))
    model = write_model(tmp_path, PER_RECORD)
    outputs = {}
    for shard_size in ("0", "0.002"):
        result = conveyor(
            "transform", "--name", "whole" if shard_size == "0" else "sharded", "--model", str(model), "--input", f"s3://{s3_bucket}/in/",
            "--output", f"s3://{s3_bucket}/out-{shard_size}/", "--content-type", "text/csv", "--split-type", "Line",
            "--strategy", "MultiRecord", "--assemble-with", "Line", "--shard-size", shard_size, "--retries", "0",
            "--s3-endpoint", s3_server.endpoint_url, home=tmp_path / "home", env={"CONVEYOR_S3_READ_STRATEGY": read_strategy},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        listed = [entry["Key"] for entry in s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"out-{shard_size}/").get("Contents", [])]
        assert listed == [f"out-{shard_size}/a.csv.out"], "a piece was left behind"
        outputs[shard_size] = s3.get_object(Bucket=s3_bucket, Key=f"out-{shard_size}/a.csv.out")["Body"].read()
    assert "shards" in result.stderr
    assert outputs["0.002"] == outputs["0"] and outputs["0"]
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.parametrize(("instances", "shard_size", "items"), [(1, None, 1), (2, None, 2), (1, 16.0, 5), (2, 0.0, 1)])
def test_without_a_size_only_a_job_of_several_instances_is_cut(tmp_path: Path, instances: int, shard_size: float | None, items: int) -> None:
    """One instance would transform the shards one after another, as the whole object, and pay
    for their assembly besides; a size given applies whatever the instance count."""
    job, _ = job_and_model(
        tmp_path, BRACKET, files={"big.csv": ""},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": instances},
    )
    os.truncate(tmp_path / "in" / "big.csv", 65 << 20)  # sparse: planning reads nothing
    settings = Settings(home=tmp_path / "home", capacity=2, shard_size_mb=shard_size)
    assert len(plan_work_items(job, settings)) == items
