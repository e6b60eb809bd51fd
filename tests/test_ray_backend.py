"""The Ray backend on a real local Ray cluster started here (`ray.cluster_utils.Cluster`, 2 CPUs
on 127.0.0.1): the same jobs give the local backend's bytes, actors die and nodes leave mid-job
without failing it, an impossible GPU request fails at once, Stop frees the actors, and the
boto3 flow runs against `conveyor server --backend ray` (docs/scale.md)."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest
from ray.cluster_utils import Cluster

from conveyor.engine.backend import JobStartFailed
from conveyor.engine.job import instance_config, plan_work_items, run_job
from conveyor.engine.ledger import MemoryLedger
from conveyor.engine.ray_backend import RayBackend, RayCluster, RayUnavailable, actor_resources
from conveyor.sagemaker import parse_model
from conveyor.sagemaker.instance_types import BUILT_IN, InstanceType
from conveyor.settings import Settings
from tests.job_requests import job_request
from tests.models import sleepy, write_model
from tests.server import ServerProcess, free_port, start_server, wait_for_status
from tests.test_job_lifecycle import DIE_ON_MARKER, Recorder, job_and_model
from tests.test_shards import PER_RECORD, binary_object, csv_object, without_inference_ids
from tests.test_transform_cli import conveyor

HOST_ACTOR = "ray::InstanceHost"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # the clusters started here report nothing


CLIENT_PORT = free_port()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    """A head node of 2 CPUs, with a Ray Client server on CLIENT_PORT for `ray://` addresses."""
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2, "ray_client_server_port": CLIENT_PORT})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def on_ray(cluster: Cluster) -> dict[str, str]:
    return {"CONVEYOR_BACKEND": "ray", "CONVEYOR_RAY_ADDRESS": cluster.address}


def host_actors() -> list[psutil.Process]:
    """The processes of live InstanceHost actors (Ray names its workers' processes after the actor)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if process.info["cmdline"] and process.info["cmdline"][0].startswith(HOST_ACTOR):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_transform(
    tmp_path: Path, data: bytes, backend_env: dict[str, str], *flags: str, out: str, model_code: str = PER_RECORD
) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / "a.in").write_bytes(data)
    model = tmp_path / "model"
    if not model.exists():
        write_model(tmp_path, model_code)
    return conveyor(
        "transform", "--name", "job", "--model", str(model), "--input", str(folder), "--output", str(tmp_path / out),
        "--retries", "0", *flags, home=tmp_path / "home", env=backend_env, timeout=180,
    )  # fmt: skip


def same_on_both_backends(tmp_path: Path, cluster: Cluster, data: bytes, *flags: str) -> tuple[bytes, str]:
    local = run_transform(tmp_path, data, {"CONVEYOR_BACKEND": "local"}, *flags, out="local")
    assert local.returncode == 0, local.stderr
    on_ray_result = run_transform(tmp_path, data, on_ray(cluster), *flags, out="ray")
    assert on_ray_result.returncode == 0, on_ray_result.stderr
    local_bytes, ray_bytes = (tmp_path / "local" / "a.in.out").read_bytes(), (tmp_path / "ray" / "a.in.out").read_bytes()
    assert sorted(path.name for path in (tmp_path / "ray").iterdir() if not path.name.endswith(".jsonl")) == ["a.in.out"]
    return local_bytes, on_ray_result.stderr if ray_bytes == local_bytes else pytest.fail(f"outputs differ:\n{local_bytes[:300]!r}\n{ray_bytes[:300]!r}")


@pytest.mark.parametrize(
    "flags",
    [
        ("--strategy", "MultiRecord", "--assemble-with", "Line", "--shard-size", "0.0002", "--instance-count", "2"),
        ("--strategy", "SingleRecord", "--assemble-with", "None"),
    ],
)
def test_line_jobs_give_the_local_backends_bytes(tmp_path: Path, ray_cluster: Cluster, flags: tuple[str, ...]) -> None:
    _, log = same_on_both_backends(tmp_path, ray_cluster, csv_object(random.Random(7)), "--content-type", "text/csv", "--split-type", "Line", *flags)
    assert re.search(r"Instance \d started", log)  # with 2 instances, the job may be done before one of them has loaded
    assert f"Ray cluster {ray_cluster.address}: 1 node" in log


def ray_servers() -> set[int]:
    """The GCS server processes of every Ray runtime on this machine."""
    return {process.pid for process in psutil.process_iter(["name"]) if process.info["name"] == "gcs_server"}


def test_without_an_address_a_local_runtime_lives_as_long_as_the_command(tmp_path: Path, ray_cluster: Cluster) -> None:
    before = ray_servers()
    result = run_transform(tmp_path, b"1\n2\n", {"CONVEYOR_BACKEND": "ray", "CONVEYOR_RAY_ADDRESS": "", "RAY_ADDRESS": ""}, "--content-type", "text/csv", out="out")
    assert result.returncode == 0, result.stderr
    assert "Ray cluster started for this command: 1 node" in result.stderr  # not the module's cluster, though it runs here
    assert (tmp_path / "out" / "a.in.out").read_bytes() == b"1,1\n1,2\n"
    deadline = time.monotonic() + 15
    while ray_servers() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_servers() - before, "the command left its Ray runtime running"


def test_the_auto_address_finds_the_cluster_this_machine_joined(tmp_path: Path, ray_cluster: Cluster) -> None:
    env = {"CONVEYOR_RAY_ADDRESS": "auto", "RAY_ADDRESS": ray_cluster.address}  # as `ray start` leaves a node's shell
    result = run_transform(tmp_path, b"1\n", env, "--content-type", "text/csv", out="out")
    assert result.returncode == 0, result.stderr
    assert "Ray cluster auto: 1 node" in result.stderr


def test_a_ray_client_address_runs_the_job(tmp_path: Path, ray_cluster: Cluster) -> None:
    env = {"CONVEYOR_RAY_ADDRESS": f"ray://127.0.0.1:{CLIENT_PORT}"}  # an address alone says which backend
    data = csv_object(random.Random(5))
    flags = ("--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--shard-size", "0.001")
    local = run_transform(tmp_path, data, {"CONVEYOR_BACKEND": "local"}, *flags, out="local")
    remote = run_transform(tmp_path, data, env, *flags, out="client")
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert f"Ray cluster ray://127.0.0.1:{CLIENT_PORT}: 1 node; each instance asks Ray for 1 CPU, 0 GPU" in remote.stderr
    assert (tmp_path / "client" / "a.in.out").read_bytes() == (tmp_path / "local" / "a.in.out").read_bytes()


CLIENT_SERVER_EXITED = (
    "Initialization failure from server:\nTraceback (most recent call last):\n  ...\n"
    "RuntimeError: Starting Ray client server failed. See ray_client_server_23000.err for detailed logs."
)  # what Ray Client answered when the server it starts for a driver exited at once (seen under load)


def failing_ray_init(monkeypatch: pytest.MonkeyPatch, errors: list[Exception]) -> list[str]:
    """Make `ray.init` raise `errors` in turn, then succeed; returns the addresses it was called with."""
    import ray

    calls: list[str] = []

    def init(*, address: str, **_: Any) -> None:
        calls.append(address)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    return calls


def test_a_ray_client_server_that_could_not_start_the_drivers_server_is_tried_again(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls = failing_ray_init(monkeypatch, [ConnectionAbortedError(CLIENT_SERVER_EXITED)] * 2)
    RayCluster("ray://127.0.0.1:10001").connect()
    assert calls == ["ray://127.0.0.1:10001"] * 3
    assert "the Ray Client server failed to start a server for this driver; trying again (2 of 3)" in caplog.text
    assert "trying again (3 of 3)" in caplog.text

    calls = failing_ray_init(monkeypatch, [ConnectionAbortedError(CLIENT_SERVER_EXITED)] * 3)
    with pytest.raises(RayUnavailable, match="cannot connect to the Ray cluster: Initialization failure from server"):
        RayCluster("ray://127.0.0.1:10001").connect()
    assert len(calls) == 3


def test_other_ray_connection_errors_are_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing_ray_init(monkeypatch, [ConnectionError("ray client connection timeout")])
    with pytest.raises(RayUnavailable, match=r"--ray-address ray://127.0.0.1:10001: cannot connect to the Ray cluster: ray client connection timeout"):
        RayCluster("ray://127.0.0.1:10001").connect()
    assert len(calls) == 1


@pytest.mark.parametrize("split_type", ["TFRecord", "RecordIO"])
def test_framed_jobs_give_the_local_backends_bytes(tmp_path: Path, ray_cluster: Cluster, split_type: str) -> None:
    same_on_both_backends(
        tmp_path, ray_cluster, binary_object(split_type, random.Random(11)), "--content-type", f"application/x-{split_type.lower()}",
        "--split-type", split_type, "--strategy", "MultiRecord", "--assemble-with", "None", "--shard-size", "0.0002",
    )  # fmt: skip


def test_filters_join_and_inference_ids_on_ray(tmp_path: Path, ray_cluster: Cluster) -> None:
    data = csv_object(random.Random(3)).replace(b"\r", b"")
    flags = (
        "--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--accept", "text/csv", "--input-filter", "$[0,2:]",
        "--join-source", "Input", "--output-filter", "$[0,1,-2:]", "--data-capture", f"file://{tmp_path}/capture", "--shard-size", "0.0002",
    )  # fmt: skip
    local = run_transform(tmp_path, data, {"CONVEYOR_BACKEND": "local"}, *flags, out="local")
    remote = run_transform(tmp_path, data, on_ray(ray_cluster), *flags, out="ray")
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    local_bytes, ray_bytes = (tmp_path / "local" / "a.in.out").read_bytes(), (tmp_path / "ray" / "a.in.out").read_bytes()
    assert without_inference_ids(ray_bytes) == without_inference_ids(local_bytes)


@pytest.mark.slow
def test_a_200_mb_object_is_shared_by_two_actors(tmp_path: Path, ray_cluster: Cluster) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    line = b"0123456789," * 9 + b"abcdefghi\n"  # 108 bytes
    with open(folder / "big.csv", "wb") as file:
        for _ in range(200):
            file.write(line * ((1 << 20) // len(line)))
    model = write_model(tmp_path, "def model_fn(d):\n    return None\n\ndef transform_fn(m, body, content_type, accept):\n    return body\n")
    result = conveyor(
        "transform", "--model", str(model), "--input", str(folder), "--output", str(tmp_path / "out"), "--content-type", "text/csv",
        "--split-type", "Line", "--assemble-with", "Line", "--instance-count", "2", "--instance-type", "ml.m5.large", "--shard-size", "32",
        home=tmp_path / "home", env=on_ray(ray_cluster), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "big.csv: 7 shards" in result.stderr
    assert "Instance 2 started" in result.stderr
    assert "each instance asks Ray for 1 CPU" in result.stderr  # ml.m5.large's 2 vCPUs, shared by 2 instances on 2 CPUs
    assert (tmp_path / "out" / "big.csv.out").stat().st_size == (folder / "big.csv").stat().st_size
    assert subprocess.run(["cmp", str(folder / "big.csv"), str(tmp_path / "out" / "big.csv.out")]).returncode == 0


def kill_one_actor_when_busy(stop: threading.Event, killed: list[int]) -> None:
    while not stop.is_set():
        actors = host_actors()
        if actors:
            time.sleep(1.0)  # a moment into its first items
            actors[0].send_signal(signal.SIGKILL)
            killed.append(actors[0].pid)
            return
        time.sleep(0.05)


def test_an_actor_killed_mid_job_has_its_item_retried(tmp_path: Path, ray_cluster: Cluster) -> None:
    data = "".join(f"row-{n},{'x' * (n % 17)}\n" for n in range(400)).encode()
    flags = ("--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--shard-size", "0.002")
    local = run_transform(tmp_path, data, {"CONVEYOR_BACKEND": "local"}, *flags, out="local", model_code=sleepy(0.01))
    assert local.returncode == 0, local.stderr
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_one_actor_when_busy, args=(stop, killed))
    killer.start()
    try:
        remote = run_transform(tmp_path, data, on_ray(ray_cluster), *flags, "--instance-count", "2", out="ray", model_code=sleepy(0.01))
    finally:
        stop.set()
        killer.join()
    assert killed, "no actor was seen to kill"
    assert remote.returncode == 0, remote.stderr
    assert "Ray actor died" in remote.stderr
    assert (tmp_path / "ray" / "a.in.out").read_bytes() == (tmp_path / "local" / "a.in.out").read_bytes()


def test_a_node_removed_mid_job_does_not_fail_it(tmp_path: Path) -> None:
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    try:
        second = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        data = "".join(f"row-{n}\n" for n in range(300)).encode()
        flags = ("--content-type", "text/csv", "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--shard-size", "0.0005")
        env = {**on_ray(cluster), "CONVEYOR_LOCAL_ROOTS": str(tmp_path)}  # both nodes are this machine: its files are shared
        removed = threading.Event()

        def remove_when_two_actors_run() -> None:
            deadline = time.monotonic() + 60
            while len(host_actors()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            cluster.remove_node(second)
            removed.set()

        remover = threading.Thread(target=remove_when_two_actors_run)
        remover.start()
        result = run_transform(tmp_path, data, env, *flags, "--instance-count", "2", "--instance-type", "ml.m5.large", out="ray", model_code=sleepy(0.02))
        remover.join()
        assert removed.is_set()
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "ray" / "a.in.out").read_bytes() == data
    finally:
        cluster.shutdown()


def test_local_paths_on_a_cluster_of_several_nodes_need_a_local_root(tmp_path: Path) -> None:
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        result = run_transform(tmp_path, b"a\n", on_ray(cluster), "--content-type", "text/csv", out="out", model_code=sleepy(0))
        assert result.returncode == 2
        assert "Ray cluster of 2 nodes" in result.stderr and "--local-root" in result.stderr
        assert not (tmp_path / "out").exists()
    finally:
        cluster.shutdown()


def test_an_impossible_gpu_request_fails_at_once(tmp_path: Path, ray_cluster: Cluster) -> None:
    started = time.monotonic()
    result = run_transform(
        tmp_path, b"a\n", on_ray(ray_cluster), "--content-type", "text/csv", "--instance-type", "ml.g5.xlarge", out="out", model_code=sleepy(0)
    )
    assert result.returncode == 1
    assert "InstanceType ml.g5.xlarge needs 1 GPU per instance, and no node of the Ray cluster has 1 GPU" in result.stderr
    assert time.monotonic() - started < 60
    assert not host_actors()


def test_without_ray_the_backend_says_how_to_install_it(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), *sys.path])}
    result = conveyor(
        "transform", "--backend", "ray", "--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o"), home=tmp_path / "home", env=env
    )
    assert result.returncode == 2
    assert "pip install 'conveyor[ray]'" in result.stderr


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    result = conveyor(
        "transform", "--backend", "spark", "--model", str(tmp_path), "--input", str(tmp_path), "--output", str(tmp_path / "o"), home=tmp_path / "home"
    )
    assert result.returncode == 2
    assert "--backend='spark' is not a backend; choose local" in result.stderr


def test_cpu_and_memory_requests_are_capped_to_the_cluster_and_said() -> None:
    said: list[str] = []
    laptop = [{"CPU": 2.0, "memory": 8.0 * (1 << 30)}]
    resources = actor_resources(BUILT_IN["ml.c4.xlarge"], 1, laptop, said.append)
    assert (resources.cpus, resources.gpus, resources.memory_bytes) == (2.0, 0, int(7.5 * (1 << 30)))
    assert "ml.c4.xlarge has 4 vCPUs and 7.5 GiB per instance" in said[0] and "asks Ray for 2 CPU" in said[0]
    shared = actor_resources(BUILT_IN["ml.c4.xlarge"], 3, laptop, said.append)
    assert shared.cpus == 0.66 and shared.memory_bytes == int(8 * (1 << 30) / 3)
    big = [{"CPU": 64.0, "GPU": 8.0, "memory": 512.0 * (1 << 30)}]
    said.clear()
    assert actor_resources(BUILT_IN["ml.g5.xlarge"], 2, big, said.append).gpus == 1
    assert not said  # nothing capped, nothing said
    with pytest.raises(JobStartFailed, match=r"needs 2 GPU per instance.*\(its nodes: 2 CPU, 0 GPU\)"):
        actor_resources(InstanceType("two", 8, 32, 2), 1, [{"CPU": 2.0}], said.append)


def model_and_inputs(client: Any, tmp_path: Path, handler: str, *, objects: int, records: int) -> Path:
    """Model `m` with `handler`, and `objects` CSV objects of `records` lines each; their folder."""
    model = write_model(tmp_path, handler)
    client.create_model(ModelName="m", PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model}"})
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(objects):
        (inputs / f"part-{index}.csv").write_text("".join(f"{index},{n}\n" for n in range(records)))
    return inputs


def test_boto3_flow_against_a_ray_server_and_stop_frees_the_actors(tmp_path: Path, ray_cluster: Cluster) -> None:
    server = start_server(tmp_path / "home", "--backend", "ray", "--ray-address", ray_cluster.address)
    try:
        client = server.client()
        handler = "import sys, time\n\ndef model_fn(d):\n    print('loaded on a Ray node', file=sys.stderr)\n\n"
        handler += "def transform_fn(m, body, content_type, accept):\n    time.sleep(0.02)\n    return body\n"
        inputs = model_and_inputs(client, tmp_path, handler, objects=3, records=50)
        client.create_transform_job(
            **job_request("quick", "m", f"file://{inputs}", f"file://{tmp_path}/out", instance_count=2, AssembleWith="Line", BatchStrategy="SingleRecord")
        )
        done = wait_for_status(client, "quick", timeout=120)
        assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
        for index in range(3):
            assert (tmp_path / "out" / f"part-{index}.csv.out").read_text() == (inputs / f"part-{index}.csv").read_text()
        events = server.client("logs").filter_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix="quick")["events"]
        assert any("Instance 1 started" in event["message"] for event in events)
        streams = {event["logStreamName"] for event in events if "[model stderr] loaded on a Ray node" in event["message"]}
        assert streams == {"quick/instance-1", "quick/instance-2"}, "each instance's handler output goes to its own stream"

        slow_model = write_model(tmp_path, sleepy(0.5), name="slow")
        client.create_model(
            ModelName="slow",
            PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{slow_model}"},
            ExecutionRoleArn="arn:aws:iam::000000000000:role/r",
        )
        client.create_transform_job(
            **job_request("long", "slow", f"file://{inputs}", f"file://{tmp_path}/long", instance_count=2, BatchStrategy="SingleRecord")
        )
        wait_for_actors(2)
        client.stop_transform_job(TransformJobName="long")
        stopped = wait_for_status(client, "long", timeout=60)
        assert stopped["TransformJobStatus"] == "Stopped"
        assert_actors_gone()
        left = sorted(path.name for path in (tmp_path / "long").iterdir()) if (tmp_path / "long").exists() else []
        assert all(name.endswith(".out") for name in left), f"Stop left partial outputs: {left}"  # whole outputs, no temporaries
    finally:
        server.stop()


def assert_actors_gone(within: float = 15) -> None:
    """The job's actors are killed (asynchronously: a killed actor's process takes a moment to exit)."""
    deadline = time.monotonic() + within
    while host_actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not host_actors(), "actors were left running"


def wait_for_actors(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(host_actors()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} actors started"
        time.sleep(0.1)


def test_a_ray_server_killed_with_9_resumes_its_job(tmp_path: Path, ray_cluster: Cluster) -> None:
    server: ServerProcess = start_server(tmp_path / "home", "--backend", "ray", "--ray-address", ray_cluster.address)
    try:
        client = server.client()
        inputs = model_and_inputs(client, tmp_path, sleepy(0.2), objects=6, records=8)
        client.create_transform_job(
            **job_request("resumed", "m", f"file://{inputs}", f"file://{tmp_path}/out", BatchStrategy="SingleRecord", AssembleWith="Line")
        )
        deadline = time.monotonic() + 60
        while not list((tmp_path / "out").glob("*.out")) if (tmp_path / "out").exists() else True:
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.1)
        server.kill()
        server = server.restart()
        done = wait_for_status(server.client(), "resumed", timeout=120)
        assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
        for index in range(6):
            assert (tmp_path / "out" / f"part-{index}.csv.out").read_text() == (inputs / f"part-{index}.csv").read_text()
    finally:
        server.stop()


@pytest.fixture
def ray_backend(ray_cluster: Cluster) -> Iterator[RayBackend]:
    """This test process as the cluster's driver, running the lifecycle in-process."""
    cluster = RayCluster(ray_cluster.address)
    try:
        yield RayBackend(cluster)
    finally:
        cluster.shutdown()


def ray_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", retry_backoff_seconds=0.01, capacity=2, backend="ray")


def test_the_lifecycle_on_ray_retries_an_item_whose_instance_died(tmp_path: Path, ray_backend: RayBackend) -> None:
    settings = ray_settings(tmp_path)
    job, model = job_and_model(tmp_path, DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=1), files={"a.csv": "1\ndie\n3\n", "b.csv": "4\n"})
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder, backend=ray_backend)
    assert (outcome.status, outcome.objects_done, outcome.failure_reason) == ("Completed", 2, None)
    assert (tmp_path / "out" / "a.csv.out").read_text() == "<1>\n<die>\n<3>\n"
    assert f"Instance 1 exited with code 7 while transforming file://{tmp_path}/in/a.csv" in recorder.lines
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.csv.out", "b.csv.out"]


def test_the_lifecycle_on_ray_fails_an_item_whose_instance_always_dies(tmp_path: Path, ray_backend: RayBackend) -> None:
    settings = ray_settings(tmp_path)
    job, model = job_and_model(tmp_path, DIE_ON_MARKER.format(marks=str(tmp_path / "marks"), times=99), files={"a.csv": "die\n", "b.csv": "2\n"})
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), backend=ray_backend)
    assert outcome.failure_reason == (
        f"1 of 2 input objects failed. First: file://{tmp_path}/in/a.csv: Unable to get response from the model: "
        "its instance exited with code 7 3 times"
    )
    assert (tmp_path / "out" / "b.csv.out").read_text() == "<2>\n"


def test_the_lifecycle_on_ray_applies_the_invocation_timeout(tmp_path: Path, ray_backend: RayBackend) -> None:
    settings = ray_settings(tmp_path)
    job, model = job_and_model(
        tmp_path, sleepy(3600), files={"a.csv": "1\n"}, ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 1}
    )
    recorder = Recorder()
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), listener=recorder, backend=ray_backend)
    assert "did not answer within InvocationsTimeoutInSeconds=1 in 2 attempts (InvocationsMaxRetries=1)" in (outcome.failure_reason or "")
    assert sum("took longer than InvocationsTimeoutInSeconds=1" in line for line in recorder.lines) == 2


def test_a_model_that_cannot_load_fails_the_job_on_ray(tmp_path: Path, ray_backend: RayBackend) -> None:
    settings = ray_settings(tmp_path)
    job, model = job_and_model(tmp_path, "def model_fn(model_dir):\n    raise RuntimeError('no weights here')\n", files={"a.csv": "1\n"})
    outcome = run_job(job, model, settings, ledger=MemoryLedger(plan_work_items(job, settings)), backend=ray_backend)
    assert outcome.status == "Failed"
    assert "no weights here" in (outcome.failure_reason or "")
    assert_actors_gone()


def test_an_instance_without_the_drivers_model_cache_fetches_the_model_again(tmp_path: Path) -> None:
    """As on another node of a cluster: the unpacked model is gone, the archive is not."""
    model_dir = write_model(
        tmp_path, "def model_fn(model_dir):\n    return open(model_dir + '/weights').read()\n\ndef predict_fn(data, model):\n    return data\n"
    )
    (model_dir / "weights").write_text("w1")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for path in model_dir.rglob("*"):
            archive.add(path, arcname=str(path.relative_to(model_dir)))
    settings = ray_settings(tmp_path)
    job, _ = job_and_model(tmp_path, "", files={"a.csv": "1\n"})
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": f"file://{tmp_path}/model.tar.gz"}})
    config = instance_config(job, model, settings, started_at=datetime.now(timezone.utc))
    shutil.rmtree(settings.home / "cache")
    instance = config.start(0)
    try:
        assert os.path.isfile(os.path.join(config.model_dirs[0], "weights"))
    finally:
        instance.close()
