"""End-to-end: GPU instance types with `conveyor transform`, on any machine (the device lists are given).

The handler answers what its process saw: CUDA_VISIBLE_DEVICES when it was imported, and the
`gpu_id` its context carried when the model loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.models import write_model
from tests.test_transform_cli import conveyor

DEVICE_ECHO = '''
import os
import time

SEEN = os.environ.get("CUDA_VISIBLE_DEVICES")
GPU_ID = []

def model_fn(model_dir, context):
    GPU_ID.append(context.system_properties["gpu_id"])
    return None

def transform_fn(model, body, content_type, accept):
    barrier = os.environ.get("BARRIER")
    if barrier:  # hold this object until another instance holds one too, so that both instances answer
        open(os.path.join(barrier, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return f"{SEEN}|{GPU_ID[0]}".encode()
'''

BIG = 1 << 20
"""An instance holding an object this large is sent no other (engine.local), so two objects go to two instances."""


def transform(tmp_path: Path, *flags: str, objects: int = 1, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "in").mkdir(exist_ok=True)
    for index in range(objects):
        (tmp_path / "in" / f"part-{index}.bin").write_bytes(b"x" * BIG)
    model = write_model(tmp_path, DEVICE_ECHO)
    return conveyor(
        "transform", "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "application/octet-stream", *flags, home=tmp_path / "home", env={"CONVEYOR_CAPACITY": "2", **(env or {})},
    )


def seen(tmp_path: Path) -> list[str]:
    return sorted(path.read_text() for path in (tmp_path / "out").glob("*.out"))


def test_two_instances_each_see_their_own_gpu(tmp_path: Path) -> None:
    (tmp_path / "barrier").mkdir()
    result = transform(
        tmp_path, "--instance-type", "ml.g5.xlarge", "--instance-count", "2", "--gpus", "0,1",
        "--env", f"BARRIER={tmp_path / 'barrier'}", objects=2,
    )
    assert result.returncode == 0, result.stderr
    assert seen(tmp_path) == ["0|0", "1|0"]  # numbering restarts at 0 under CUDA_VISIBLE_DEVICES
    assert "runs on CPU" not in result.stderr


def test_gpu_type_without_gpus_runs_on_cpu_and_says_so(tmp_path: Path) -> None:
    result = transform(tmp_path, "--instance-type", "ml.g5.xlarge", "--gpus", "none")
    assert result.returncode == 0, result.stderr
    assert seen(tmp_path) == ["|None"]
    assert "InstanceType ml.g5.xlarge has 1 A10G GPU per instance, but this machine has no GPU: instance 1 runs on CPU." in result.stderr


def test_require_gpus_fails_at_start_with_the_reason(tmp_path: Path) -> None:
    result = transform(tmp_path, "--instance-type", "ml.g5.12xlarge", "--require-gpus", "--gpus", "0,1")
    assert result.returncode == 1
    assert (
        "FailureReason: ClientError: InstanceType ml.g5.12xlarge has 4 A10G GPUs per instance, but this machine has 2 GPUs (0,1), "
        "and --require-gpus (CONVEYOR_REQUIRE_GPUS) is set."
    ) in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_require_gpus_from_the_environment(tmp_path: Path) -> None:
    result = transform(tmp_path, "--instance-type", "ml.p3.2xlarge", env={"CONVEYOR_REQUIRE_GPUS": "true", "CONVEYOR_GPUS": "none"})
    assert result.returncode == 1
    assert "InstanceType ml.p3.2xlarge has 1 V100 GPU per instance, but this machine has no GPU, and --require-gpus" in result.stderr


def test_cpu_type_sees_no_gpu(tmp_path: Path) -> None:
    result = transform(tmp_path, "--instance-type", "ml.m5.xlarge", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 0, result.stderr
    assert seen(tmp_path) == ["|None"]


def test_profiles_file_gives_a_type_gpus(tmp_path: Path) -> None:
    profiles = tmp_path / "types.json"
    profiles.write_text(json.dumps({"ml.m5.xlarge": {"gpus": 1, "gpu_kind": "T4"}}))
    result = transform(tmp_path, "--instance-type", "ml.m5.xlarge", "--instance-types", str(profiles), "--gpus", "3")
    assert result.returncode == 0, result.stderr
    assert seen(tmp_path) == ["3|0"]


def test_broken_profiles_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    profiles = tmp_path / "types.json"
    profiles.write_text(json.dumps({"ml.g5.xlarge": {"gpus": -1}}))
    result = transform(tmp_path, "--instance-type", "ml.g5.xlarge", env={"CONVEYOR_INSTANCE_TYPES": str(profiles)})
    assert result.returncode == 2
    assert f"instance types file {profiles}: instance type 'ml.g5.xlarge': gpus -1 must be an integer of at least 0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_gpu_list_is_refused(tmp_path: Path) -> None:
    result = transform(tmp_path, "--gpus", "0,0")
    assert result.returncode == 2
    assert "--gpus (CONVEYOR_GPUS) '0,0': device '0' is listed twice" in result.stderr


def test_server_refuses_a_broken_profiles_file(tmp_path: Path) -> None:
    profiles = tmp_path / "types.json"
    profiles.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "server", "--home", str(tmp_path / "home"), "--port", "0", "--instance-types", str(profiles)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert f"conveyor server: instance types file {profiles}: is not JSON" in result.stderr
