"""Model servers started as local processes (Image `process:<command line>`), end to end.

The bring-your-own-container example of tests/byoc (Flask behind gunicorn, laid out as AWS's
scikit_bring_your_own example) runs here as a local process; the scripted server of
test_http_runtime plays the misbehaving ones.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conveyor.runtimes.base import RuntimeStartError
from conveyor.runtimes.pipeline import SerialPipelineRuntime
from conveyor.runtimes.process_server import ProcessServerRuntime
from conveyor.runtimes.registry import container_environment, create_runtime
from conveyor.sagemaker.model import parse_model
from tests.models import BRACKET, write_model
from tests.test_http_runtime import write_model_request, write_server
from tests.test_transform_cli import conveyor

BYOC = Path(__file__).parent / "byoc"
IRIS_TREE = {
    "feature": 2,
    "threshold": 2.45,
    "left": "setosa",
    "right": {"feature": 3, "threshold": 1.75, "left": "versicolor", "right": "virginica"},
}
IRIS = [
    ("5.1,3.5,1.4,0.2", "setosa"),
    ("4.9,3.0,1.4,0.2", "setosa"),
    ("7.0,3.2,4.7,1.4", "versicolor"),
    ("6.4,3.2,4.5,1.5", "versicolor"),
    ("6.3,3.3,6.0,2.5", "virginica"),
    ("5.8,2.7,5.1,1.9", "virginica"),
]


def iris_model(directory: Path) -> Path:
    """model.tar.gz holding the decision tree, as a training job would leave it."""
    (directory / "model-files").mkdir(parents=True)
    (directory / "model-files" / "decision-tree-model.json").write_text(json.dumps(IRIS_TREE))
    archive = directory / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory / "model-files" / "decision-tree-model.json", arcname="decision-tree-model.json")
    return archive


def scripted(tmp_path: Path) -> str:
    return f"process:{sys.executable} {write_server(tmp_path)}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status not in ("Z", "X")


def group_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def interruptible() -> None:
    """In a child about to run the command: Ctrl-C interrupts it, as at a terminal, even where the
    test suite was started with SIGINT ignored (as `cmd &` does in a script), which a child inherits."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(condition, timeout: float = 15.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# -- the bring-your-own-container example ----------------------------------------------------


def test_byoc_flask_gunicorn_server_as_a_local_process(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "iris.csv").write_text("".join(row + "\n" for row, _ in IRIS))
    (tmp_path / "in" / "broken.csv").write_text("5.1,3.5,1.4,0.2\nnot,a,flower,row\n")
    request = write_model_request(
        tmp_path / "model.json", "iris-byoc", f"process:{sys.executable} {BYOC / 'program' / 'serve'}", iris_model(tmp_path),
        MODEL_SERVER_WORKERS="2", MODEL_SERVER_HOST="127.0.0.1",
    )
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--accept", "text/csv", "--split-type", "Line", "--assemble-with", "Line",
        home=tmp_path / "home",
    )
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "iris.csv.out").read_text() == "".join(species + "\n" for _, species in IRIS)
    assert not (tmp_path / "out" / "broken.csv.out").exists()
    # the container's /execution-parameters asked for one request per worker
    assert "MaxConcurrentTransforms=2, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in result.stderr
    # what the server prints reaches the job log; its error message reaches the failure reason
    assert "Invoked with 6 records" in result.stderr
    assert "broken.csv" in result.stderr
    assert "ClientError: 400 Bad Request from the model server. Message: Could not parse record 2: 'not,a,flower,row' is not four numbers" in result.stderr


def test_closing_stops_the_whole_process_group(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "decision-tree-model.json").write_text(json.dumps(IRIS_TREE))
    runtime = ProcessServerRuntime(
        f"{sys.executable} {BYOC / 'program' / 'serve'}", model_dir=str(model_dir),
        environment={"MODEL_SERVER_WORKERS": "2", "MODEL_SERVER_HOST": "127.0.0.1"}, startup_timeout=60,
    )
    runtime.start()
    assert runtime.process is not None
    group = runtime.process.pid
    assert runtime.invoke(b"7.0,3.2,4.7,1.4\n", content_type="text/csv", accept=None, timeout=10) == b"versicolor\n"
    # serve, the gunicorn master, two workers: the second worker may boot after the first answers
    assert wait_until(lambda: len(group_members(group)) >= 4, timeout=30)
    runtime.close()
    assert group_members(group) == []


# -- environment ------------------------------------------------------------------------------


def test_the_server_gets_the_batch_environment_its_port_and_model_dir(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    (tmp_path / "model").mkdir()
    request = write_model_request(
        tmp_path / "model.json", "env-model", scripted(tmp_path), tmp_path / "model",
        MODE="env", MY_MODEL_SETTING="model", MY_SHARED="from the model",
    )
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--max-concurrent", "2", "--env", "MY_SHARED=from the job", "--env", "MY_JOB_SETTING=job", home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp_path / "out" / "a.txt.out").read_text())
    port = seen.pop("SAGEMAKER_BIND_TO_PORT")
    assert port.isdigit() and f"serving on port {port}" in result.stderr
    assert seen == {
        "MY_MODEL_SETTING": "model",
        "MY_SHARED": "from the job",  # the job's Environment wins
        "MY_JOB_SETTING": "job",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "2",  # set by the job, so passed on
        "SM_MODEL_DIR": str(tmp_path / "model"),
    }


# -- failures -------------------------------------------------------------------------------


def test_500_twice_then_200_is_retried_and_the_retries_logged(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("hello\n")
    request = write_model_request(tmp_path / "model.json", "flaky", scripted(tmp_path), FAIL_FIRST="2", MODE="upper")
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.txt.out").read_text() == "HELLO\n"
    assert "payload 1: ClientError: 500 Internal Server Error from the model server. Message: temporary failure 1; retry 1 of 3" in result.stderr
    assert "Message: temporary failure 2; retry 2 of 3" in result.stderr
    assert "retry 3 of 3" not in result.stderr


def test_a_server_slower_than_the_timeout_fails_its_object(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-quick.txt").write_text("quick\n")
    (tmp_path / "in" / "b-slow.txt").write_text("slow\n")
    request = write_model_request(tmp_path / "model.json", "slow", scripted(tmp_path), SLEEP_ON="slow")
    began = time.monotonic()
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--timeout", "1", "--retries", "1", home=tmp_path / "home",
    )
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - began < 25
    assert (tmp_path / "out" / "a-quick.txt.out").read_text() == "quick\n"
    assert not (tmp_path / "out" / "b-slow.txt.out").exists()
    assert "did not answer within InvocationsTimeoutInSeconds=1; retry 1 of 1" in result.stderr
    assert "b-slow.txt" in result.stderr and "after 2 attempts" in result.stderr


def test_a_server_that_exits_at_start_fails_the_job_with_its_output(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    request = write_model_request(tmp_path / "model.json", "broken", scripted(tmp_path), EXIT_AT_START="3")
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        home=tmp_path / "home",
    )
    assert result.returncode == 1
    assert "exited with code 3" in result.stderr
    assert "cannot load the model: weights.bin is missing" in result.stderr


def test_a_missing_program_is_a_clear_start_error(tmp_path: Path) -> None:
    runtime = ProcessServerRuntime("no-such-model-server --port 1", model_dir=None, environment={})
    with pytest.raises(RuntimeStartError, match=r"cannot start the model server `no-such-model-server --port 1`: No such file or directory"):
        runtime.start()


def test_a_never_healthy_process_fails_at_the_start_up_limit(tmp_path: Path) -> None:
    runtime = ProcessServerRuntime(
        f"{sys.executable} {write_server(tmp_path)}", model_dir=None, environment={"NEVER_HEALTHY": "1", "PID_FILE": str(tmp_path / "pid")},
        startup_timeout=1.5,
    )
    with pytest.raises(RuntimeStartError, match=r"within 1.5 s \(the start-up limit\); last answer: HTTP 503: model is still loading"):
        runtime.start()
    assert not alive(int((tmp_path / "pid").read_text()))  # a failed start leaves nothing running


# -- instances and stopping -------------------------------------------------------------------


def test_each_instance_starts_its_own_server(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for index in range(4):
        (tmp_path / "in" / f"part-{index}.txt").write_text(f"line {index}\n")
    request = write_model_request(tmp_path / "model.json", "two", scripted(tmp_path))
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--instance-count", "2", home=tmp_path / "home", env={"CONVEYOR_CAPACITY": "2"},
    )
    assert result.returncode == 0, result.stderr
    servers = set(re.findall(r"serving on port (\d+) as process (\d+)", result.stderr))
    assert len(servers) == 2, result.stderr
    for index in range(4):
        assert (tmp_path / "out" / f"part-{index}.txt.out").read_text() == f"line {index}\n"


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_a_job_stopped_midway_leaves_no_server_running(tmp_path: Path, how: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("slow\n")
    request = write_model_request(tmp_path / "model.json", "stuck", scripted(tmp_path), SLEEP_ON="slow", PID_FILE=str(tmp_path / "pid"))
    environment = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}
    job = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "transform", "--model-request", str(request), "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--quiet"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=interruptible,
    )
    try:
        assert wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip() != ""), "the server never started"
        server_pid = int((tmp_path / "pid").read_text())
        time.sleep(1.0)  # the request is in flight
        job.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
        job.wait(timeout=30)
        assert wait_until(lambda: not alive(server_pid)), "the model server outlived its job"
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert not (tmp_path / "out" / "a.txt.out").exists()


# -- serial inference pipelines ---------------------------------------------------------------


def write_pipeline_request(path: Path, name: str, containers: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"ModelName": name, "Containers": containers, "InferenceExecutionConfig": {"Mode": "Serial"}}))
    return path


def test_two_container_serial_pipeline(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one\ntwo\n")
    request = write_pipeline_request(tmp_path / "model.json", "pipeline", [
        {"ContainerHostname": "shout", "Image": scripted(tmp_path), "Environment": {"MODE": "upper", "RESPONSE_TYPE": "text/x-shouted"}},
        {"ContainerHostname": "describe", "Image": scripted(tmp_path), "Environment": {"MODE": "describe"}},
    ])
    result = conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line",
        "--content-type", "text/plain", "--accept", "application/json", home=tmp_path / "home",
    )
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out" / "a.txt.out").read_text().splitlines()
    # the second container received the first one's response, typed by its Content-Type, and the job's Accept
    assert [line.split("|")[0:2] + line.split("|")[3:] for line in lines] == [
        ["text/x-shouted", "application/json", "ONE"],
        ["text/x-shouted", "application/json", "TWO"],
    ]
    assert "[shout] serving on port" in result.stderr and "[describe] serving on port" in result.stderr


def test_pipeline_errors_name_the_container(tmp_path: Path) -> None:
    model = parse_model({
        "ModelName": "pipeline",
        "Containers": [
            {"Image": scripted(tmp_path), "Environment": {"MODE": "upper"}},
            {"ContainerHostname": "judge", "Image": scripted(tmp_path), "Environment": {"STATUS_ON": "BAD:400"}},
        ],
        "InferenceExecutionConfig": {"Mode": "Serial"},
    })
    runtime = create_runtime(model, [], {"SAGEMAKER_BATCH": "true"})
    assert isinstance(runtime, SerialPipelineRuntime)
    runtime.start()
    try:
        assert runtime.invoke(b"fine", content_type="text/plain", accept=None, timeout=5) == b"FINE"
        with pytest.raises(Exception, match=r"container 2 of 2 \(judge\): ClientError: 400 Bad Request .* cannot score this record: BAD"):
            runtime.invoke(b"bad", content_type="text/plain", accept=None, timeout=5)
    finally:
        runtime.close()


def test_pipeline_mixing_a_python_handler_and_a_server(tmp_path: Path) -> None:
    handler = write_model(tmp_path, BRACKET)
    model = parse_model({
        "ModelName": "mixed",
        "Containers": [
            {"Image": "conveyor:python", "ModelDataUrl": str(handler)},
            {"Image": scripted(tmp_path), "Environment": {"MODE": "describe"}},
        ],
        "InferenceExecutionConfig": {"Mode": "Serial"},
    })
    runtime = create_runtime(model, [str(handler)], {"SAGEMAKER_BATCH": "true"})
    assert not runtime.enforces_timeout  # a Python handler in the chain needs the instance's watchdog
    runtime.start()
    try:
        body = runtime.invoke(b"x", content_type="text/plain", accept="text/csv", timeout=5)
        assert body.startswith(b"text/csv|text/csv|") and body.endswith(b"|<x>")  # no response type: the Accept asked for
    finally:
        runtime.close()


def test_pipeline_containers_see_only_their_own_model_environment() -> None:
    model = parse_model({
        "ModelName": "pipeline",
        "Containers": [
            {"Image": "process:a", "Environment": {"MY_A": "1", "MY_SHARED": "a"}},
            {"Image": "process:b", "Environment": {"MY_B": "2", "MY_SHARED": "b"}},
        ],
        "InferenceExecutionConfig": {"Mode": "Serial"},
    })
    merged = {"MY_A": "1", "MY_B": "2", "MY_SHARED": "b", "SAGEMAKER_BATCH": "true", "MY_JOB": "j"}
    assert container_environment(model, 0, merged) == {"MY_A": "1", "MY_SHARED": "a", "SAGEMAKER_BATCH": "true", "MY_JOB": "j"}
    assert container_environment(model, 1, merged) == {"MY_B": "2", "MY_SHARED": "b", "SAGEMAKER_BATCH": "true", "MY_JOB": "j"}
    merged["MY_SHARED"] = "job"  # the job's Environment overrides every container's
    assert container_environment(model, 0, merged)["MY_SHARED"] == "job"


def test_pipeline_parameters_take_the_first_container_and_the_least_concurrency(tmp_path: Path) -> None:
    model = parse_model({
        "ModelName": "pipeline",
        "Containers": [
            {"Image": scripted(tmp_path), "Environment": {"EXECUTION_PARAMETERS": '{"MaxConcurrentTransforms": 8, "MaxPayloadInMB": 3}'}},
            {"Image": scripted(tmp_path), "Environment": {"EXECUTION_PARAMETERS": '{"MaxConcurrentTransforms": 2, "BatchStrategy": "SINGLE_RECORD"}'}},
        ],
        "InferenceExecutionConfig": {"Mode": "Serial"},
    })
    runtime = create_runtime(model, [], {"SAGEMAKER_BATCH": "true"})
    runtime.start()
    try:
        wishes = runtime.execution_parameters()
        assert (wishes.max_concurrent_transforms, wishes.max_payload_mb, wishes.batch_strategy) == (2, 3, None)
    finally:
        runtime.close()


def test_the_model_requests_in_the_documentation_are_valid() -> None:
    from conveyor.runtimes.registry import RuntimeTarget, kind_for

    text = (Path(__file__).parent.parent / "docs" / "containers.md").read_text()
    blocks = [block for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if '"ModelName"' in block]  # not the profiles file
    targets = [RuntimeTarget.for_model(parse_model(json.loads(block)), [], {}) for block in blocks]
    kinds = [[kind_for(stage).name for stage in target.stages()] for target in targets]
    assert kinds == [["docker"], ["process"], ["docker", "process"]]
