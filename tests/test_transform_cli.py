"""End-to-end: the `conveyor transform` command, run as a user runs it, on real files."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.frames import recordio_frame, tfrecord_frame
from tests.models import BRACKET, FAIL_ON_BAD, FIELD_COUNT, JITTER, SLOW_ON_SLOW, write_model

MIB = 1 << 20


def conveyor(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CONVEYOR_HOME": str(home), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def records_for(split_type: str, rng: random.Random, count: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An object's bytes and its records as (framed, bare), built independently of our splitters."""
    records = []
    for index in range(count):
        payload = bytes(rng.randrange(97, 123) for _ in range(rng.randrange(1, 200))) + str(index).encode()
        if split_type == "Line":
            records.append((payload + b"\n", payload))
        elif split_type == "RecordIO":
            records.append((recordio_frame(payload), payload))
        else:
            records.append((tfrecord_frame(payload), payload))
    return b"".join(framed for framed, _ in records), records


def expected_bodies(records: list[tuple[bytes, bytes]], strategy: str, limit: int) -> list[bytes]:
    if strategy == "SingleRecord":
        return [bare for _, bare in records]
    bodies, current = [], b""
    for framed, _ in records:
        if current and len(current) + len(framed) > limit:
            bodies.append(current)
            current = b""
        current += framed
    return bodies + ([current] if current else [])


@pytest.mark.parametrize("split_type", ["Line", "RecordIO", "TFRecord"])
@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
@pytest.mark.parametrize("assemble_with", ["None", "Line"])
def test_split_strategy_assemble_matrix(tmp_path: Path, split_type: str, strategy: str, assemble_with: str) -> None:
    rng = random.Random(f"{split_type}{strategy}{assemble_with}")
    data, records = records_for(split_type, rng, 12_000 if strategy == "MultiRecord" else 300)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-1.bin").write_bytes(data)
    model = write_model(tmp_path, BRACKET)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", split_type, "--strategy", strategy, "--assemble-with", assemble_with,
        "--max-payload", "1", "--content-type", "application/octet-stream", home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    bodies = expected_bodies(records, strategy, MIB)
    if strategy == "MultiRecord":
        assert len(bodies) > 1, "the input must span several payloads"
    separator = b"\n" if assemble_with == "Line" else b""
    expected = b"".join(b"<" + body + b">" + separator for body in bodies)
    assert (tmp_path / "out" / "part-1.bin.out").read_bytes() == expected


@pytest.mark.parametrize("assemble_with", ["None", "Line"])
def test_split_none_sends_whole_object(tmp_path: Path, assemble_with: str) -> None:
    (tmp_path / "in" / "nested").mkdir(parents=True)
    (tmp_path / "in" / "a.json").write_bytes(b'{"x": [1, 2, 3]}\n')
    (tmp_path / "in" / "nested" / "b.json").write_bytes(b"[4]")
    (tmp_path / "in" / "empty.json").write_bytes(b"")
    model = write_model(tmp_path, BRACKET)
    result = conveyor(
        "transform", "--model", str(model), "--input", f"file://{tmp_path}/in/", "--output", f"file://{tmp_path}/out",
        "--content-type", "application/json", "--assemble-with", assemble_with, home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    newline = b"\n" if assemble_with == "Line" else b""
    assert (tmp_path / "out" / "a.json.out").read_bytes() == b'<{"x": [1, 2, 3]}\n>' + newline
    assert (tmp_path / "out" / "nested" / "b.json.out").read_bytes() == b"<[4]>" + newline
    assert (tmp_path / "out" / "empty.json.out").read_bytes() == b""


def test_gzip_input(tmp_path: Path) -> None:
    lines = b"".join(f"{i},{i * 2}\n".encode() for i in range(5000))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.csv.gz").write_bytes(gzip.compress(lines))
    model = write_model(tmp_path, FIELD_COUNT)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--compression", "Gzip", "--content-type", "text/csv", "--assemble-with", "Line",
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "data.csv.gz.out").read_bytes() == b"2\n" * 5000


def test_manifest_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "day1").mkdir(parents=True)
    (data / "day1" / "a.csv").write_bytes(b"1,2\n")
    (data / "b.csv").write_bytes(b"3,4,5\n")
    (data / "ignored.csv").write_bytes(b"6\n")
    manifest = tmp_path / "inputs.manifest"
    manifest.write_text(json.dumps([{"prefix": f"{data}/"}, "day1/a.csv", "b.csv"]))
    model = write_model(tmp_path, FIELD_COUNT)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(manifest), "--data-type", "ManifestFile",
        "--output", str(tmp_path / "out"), "--split-type", "Line", "--content-type", "text/csv", home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "day1" / "a.csv.out").read_bytes() == b"2\n"
    assert (tmp_path / "out" / "b.csv.out").read_bytes() == b"3\n"
    assert not (tmp_path / "out" / "ignored.csv.out").exists()


def test_failing_model_fails_only_its_object(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.txt").write_bytes(b"fine\nalso fine\n")
    (tmp_path / "in" / "poison.txt").write_bytes(b"ok\nbad\n")
    (tmp_path / "in" / "zz-good.txt").write_bytes(b"last\n")
    model = write_model(tmp_path, FAIL_ON_BAD)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--retries", "2",
        home=tmp_path / "home",
    )
    assert result.returncode == 1
    assert (tmp_path / "out" / "good.txt.out").read_bytes() == b"FINE\nALSO FINE\n"
    assert (tmp_path / "out" / "zz-good.txt.out").read_bytes() == b"LAST\n"
    assert not (tmp_path / "out" / "poison.txt.out").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.txt.out", "zz-good.txt.out"]
    assert "retry 1 of 2" in result.stderr and "retry 2 of 2" in result.stderr
    assert result.stderr.count("(InvocationsMaxRetries=0, or --retries 0, stops retries)") == 1  # on the first retry only
    assert "FailureReason: 1 of 3 input objects failed" in result.stderr
    assert "poison.txt" in result.stderr and "cannot score a bad record" in result.stderr
    assert "after 3 attempts" in result.stderr


def test_slow_model_times_out(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-quick.txt").write_bytes(b"quick\n")
    (tmp_path / "in" / "b-slow.txt").write_bytes(b"slow\n")
    model = write_model(tmp_path, SLOW_ON_SLOW)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--timeout", "1", "--retries", "1", home=tmp_path / "home",
    )
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "a-quick.txt.out").read_bytes() == b"quick\n"
    assert not (tmp_path / "out" / "b-slow.txt.out").exists()
    assert "InvocationsTimeoutInSeconds=1" in result.stderr
    assert "b-slow.txt" in result.stderr


def test_order_is_kept_with_concurrent_invocations(tmp_path: Path) -> None:
    lines = [f"record-{i}" for i in range(2000)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.txt").write_text("\n".join(lines) + "\n")
    model = write_model(tmp_path, JITTER)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--strategy", "SingleRecord", "--max-concurrent", "4", "--assemble-with", "Line",
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "data.txt.out").read_text().splitlines() == [line + "!" for line in lines]
    assert "MaxConcurrentTransforms=4" in result.stderr


def test_record_larger_than_payload_fails_with_sizes(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.txt").write_bytes(b"small\n" + b"x" * (MIB + 10) + b"\n")
    model = write_model(tmp_path, BRACKET)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--max-payload", "1", home=tmp_path / "home",
    )
    assert result.returncode == 1
    assert "big.txt" in result.stderr and "record 2" in result.stderr
    assert not (tmp_path / "out" / "big.txt.out").exists()


def test_two_instances_share_the_objects(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for index in range(6):
        (tmp_path / "in" / f"part-{index}.txt").write_text(f"line {index}\n")
    model = write_model(tmp_path, BRACKET)
    result = conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--instance-count", "2", home=tmp_path / "home", env={"CONVEYOR_CAPACITY": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert "Instance 1 started" in result.stderr and "Instance 2 started" in result.stderr
    for index in range(6):
        assert (tmp_path / "out" / f"part-{index}.txt.out").read_text() == f"<line {index}\n>"


def test_request_file_from_the_seed(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "valid_data.csv").write_text("1,2,3\n4,5\n")
    request = {
        "TransformJobName": "Batch-Transform-2026-11-23-10-00-00",
        "ModelName": "kmeans",
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformOutput": {"S3OutputPath": f"file://{tmp_path}/output"},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(tmp_path / "input")}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1},
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    model = write_model(tmp_path, FIELD_COUNT)
    result = conveyor("transform", "--request", str(tmp_path / "request.json"), "--model", str(model), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output" / "valid_data.csv.out").read_text() == "3\n2\n"
    assert "MaxConcurrentTransforms=4, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in result.stderr


def test_validation_errors_name_field_value_and_rule(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    model = write_model(tmp_path, BRACKET)
    result = conveyor(
        "transform", "--model", str(model), "--name", "bad_name", "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--max-payload", "60", "--max-concurrent", "2", home=tmp_path / "home",
    )
    assert result.returncode == 2
    assert "--name (TransformJobName) 'bad_name' failed to satisfy constraint" in result.stderr
    assert "60" in result.stderr


def test_empty_input_is_refused_before_running(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    model = write_model(tmp_path, BRACKET)
    result = conveyor("transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 2
    assert "No objects found under" in result.stderr
    assert not (tmp_path / "out").exists()


def test_model_that_fails_to_load_fails_the_job(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    model = write_model(tmp_path, "def model_fn(model_dir):\n    raise RuntimeError('weights missing')\n")
    result = conveyor("transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), home=tmp_path / "home")
    assert result.returncode == 1
    assert "weights missing" in result.stderr


ENVIRONMENT_ECHO = '''
import os

SEEN_AT_IMPORT = {key: os.environ.get(key) for key in ("A", "B", "SAGEMAKER_BATCH", "SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_BATCH_STRATEGY", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS")}

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return ";".join(f"{k}={v}" for k, v in SEEN_AT_IMPORT.items()).encode()
'''


def test_environment_merges_model_batch_and_job_values(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    model = write_model(tmp_path, ENVIRONMENT_ECHO)
    model_request = {
        "ModelName": "env-model",
        "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": str(model), "Environment": {"A": "model", "B": "model"}},
    }
    (tmp_path / "model.json").write_text(json.dumps(model_request))
    result = conveyor(
        "transform", "--model-request", str(tmp_path / "model.json"), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--env", "B=job", "--max-payload", "2", home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.txt.out").read_text() == (
        "A=model;B=job;SAGEMAKER_BATCH=true;SAGEMAKER_MAX_PAYLOAD_IN_MB=2;"
        "SAGEMAKER_BATCH_STRATEGY=None;SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=None"
    )


def test_built_in_algorithm_image_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    image = "382416733822.dkr.ecr.us-east-1.amazonaws.com/pca:1"
    (tmp_path / "model.json").write_text(json.dumps({"ModelName": "pca", "PrimaryContainer": {"Image": image}}))
    result = conveyor(
        "transform", "--model-request", str(tmp_path / "model.json"), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), home=tmp_path / "home",
    )
    assert result.returncode == 2
    assert image in result.stderr and "inference.py" in result.stderr


def test_killing_the_command_leaves_no_instance_running(tmp_path: Path) -> None:
    import psutil

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "slow.txt").write_text("slow\n")
    model = write_model(tmp_path, SLOW_ON_SLOW)
    environment = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(process.pid)
    deadline = time.monotonic() + 30
    while not parent.children() and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = parent.children(recursive=True)
    assert workers, "the instance process did not start"
    time.sleep(2)  # the instance is inside the model call now
    process.kill()
    process.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"instance processes outlived their parent: {alive}"
    assert not (tmp_path / "out" / "slow.txt.out").exists()
