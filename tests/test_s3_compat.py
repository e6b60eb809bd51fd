"""Conveyor against a second, independent S3 implementation: `rclone serve s3` (Go, gofakes3).

moto is what most tests use; a store written by other people catches what only works on moto.
This one differs from S3 where it matters to a reader: it ignores `If-Match`, and on a ranged
GET it sends the whole object's checksum. Conveyor must still read every object whole with both
read strategies, notice an object replaced mid-read, leave no upload behind, and run a job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.storage.base import StorageError
from conveyor.storage.s3 import S3Storage
from tests.models import BRACKET, write_model
from tests.numbered_lines import numbered_lines
from tests.s3_server import S3Server

MiB = 1 << 20


@pytest.fixture
def bucket(rclone_server: S3Server) -> str:
    name = rclone_server.new_bucket_name()
    rclone_server.client().create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("strategy", ["stream", "ranges"])
def test_objects_read_back_whole_with_either_strategy(rclone_server: S3Server, bucket: str, strategy: str) -> None:
    writer = S3Storage(rclone_server.s3_config())  # 16 MiB parts
    reader = S3Storage(rclone_server.s3_config(read_strategy=strategy, part_size=5 * MiB))
    single, parts = b"".join(numbered_lines(12 * MiB + 7)), b"".join(numbered_lines(40 * MiB))
    for name, data in (("single.csv", single), ("parts.csv", parts)):  # one PUT with a CRC32; three parts
        with writer.open_write(f"s3://{bucket}/{name}") as out:
            out.write(data)
        with reader.open_read(f"s3://{bucket}/{name}") as stream:
            assert stream.read() == data, name


@pytest.mark.parametrize("replacement", [b"x" * (25 * MiB), b"something shorter"])
def test_replaced_object_is_noticed_though_the_store_ignores_if_match(rclone_server: S3Server, bucket: str, replacement: bytes) -> None:
    storage = S3Storage(rclone_server.s3_config(read_strategy="ranges", part_size=5 * MiB, read_concurrency=1))
    client = rclone_server.client()
    client.put_object(Bucket=bucket, Key="moving.csv", Body=b"".join(numbered_lines(20 * MiB)))
    stale = client.head_object(Bucket=bucket, Key="moving.csv")["ETag"]
    assert client.get_object(Bucket=bucket, Key="moving.csv", IfMatch='"not-it"', Range="bytes=0-0")["ETag"] == stale
    with storage.open_read(f"s3://{bucket}/moving.csv") as stream:
        stream.read(1)
        client.put_object(Bucket=bucket, Key="moving.csv", Body=replacement)
        with pytest.raises(StorageError) as caught:
            while stream.read(MiB):
                pass
    assert caught.value.code == "PreconditionFailed"
    assert "replaced while it was being read" in str(caught.value)


def test_a_failed_write_leaves_no_object_and_no_upload(rclone_server: S3Server, bucket: str) -> None:
    storage = S3Storage(rclone_server.s3_config(part_size=5 * MiB))
    with pytest.raises(RuntimeError):
        with storage.open_write(f"s3://{bucket}/out/failed.out") as writer:
            for block in numbered_lines(12 * MiB):
                writer.write(block)
            assert writer.parts_uploaded == 2
            raise RuntimeError("the model failed")
    client = rclone_server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_transform_job_reads_and_writes_the_store(rclone_server: S3Server, bucket: str, tmp_path: Path) -> None:
    client = rclone_server.client()
    client.put_object(Bucket=bucket, Key="input/a.csv", Body=b"1,2\n3,4\n")
    client.put_object(Bucket=bucket, Key="input/more/b.csv", Body=b"5,6\n")
    model = write_model(tmp_path, BRACKET)
    command = [
        sys.executable, "-m", "conveyor", "transform", "--quiet", "--s3-endpoint", rclone_server.endpoint_url,
        "--model", str(model), "--input", f"s3://{bucket}/input/", "--output", f"s3://{bucket}/output/",
        "--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line",
        "--kms-key", "key-for-outputs",
    ]  # fmt: skip
    environment = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert finished.returncode == 0, finished.stderr
    outputs = {
        key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in ("output/a.csv.out", "output/more/b.csv.out")
    }
    assert outputs == {"output/a.csv.out": b"<1,2>\n<3,4>\n", "output/more/b.csv.out": b"<5,6>\n"}
    assert client.head_object(Bucket=bucket, Key="output/a.csv.out")["ServerSideEncryption"] == "aws:kms"


def test_a_sharded_object_is_assembled_on_a_store_that_does_not_copy_parts(rclone_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """rclone's store takes UploadPartCopy for a plain UploadPart: it stores an empty part and
    answers without an ETag. The first copy finds that out, and the pieces are written through
    the process instead, so the object is still assembled whole."""
    client = rclone_server.client()
    data = b"".join(numbered_lines(16 * MiB))
    client.put_object(Bucket=bucket, Key="input/big.csv", Body=data)
    model = write_model(tmp_path, BRACKET)
    command = [
        sys.executable, "-m", "conveyor", "transform", "--quiet", "--s3-endpoint", rclone_server.endpoint_url,
        "--model", str(model), "--input", f"s3://{bucket}/input/", "--output", f"s3://{bucket}/output/",
        "--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--shard-size", "6",
    ]  # fmt: skip
    environment = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr
    expected = b"".join(b"<" + line + b">\n" for line in data.splitlines())
    assert client.get_object(Bucket=bucket, Key="output/big.csv.out")["Body"].read() == expected
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket, Prefix="output/")["Contents"]] == ["output/big.csv.out"]
