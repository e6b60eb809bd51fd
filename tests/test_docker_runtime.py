"""Docker images run as SageMaker runs them: `docker run <image> serve`, model at /opt/ml/model.

These tests always run: tests/docker_env.py starts a Docker engine and makes a base image with
Python when the machine has none (no image registry is used). The images under test are built
here with `docker build`: the bring-your-own-container example of tests/byoc, and the scripted
server of test_http_runtime as an image whose `serve` is that server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.runtimes.base import RuntimeStartError
from conveyor.runtimes.docker_server import DockerServerRuntime, has_gpus
from tests.test_http_runtime import SCRIPTED_SERVER, write_model_request
from tests.test_process_runtime import IRIS, interruptible, iris_model, wait_until, write_pipeline_request
from tests.test_transform_cli import conveyor

BYOC = Path(__file__).parent / "byoc"
BYOC_IMAGE = "conveyor-test-byoc"
SCRIPTED_IMAGE = "conveyor-test-scripted"


def docker(*arguments: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *arguments], capture_output=True, text=True, timeout=timeout, env={**os.environ, "DOCKER_BUILDKIT": "0"}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(arguments)} failed: {result.stderr}")
    return result


def containers_of(model_name: str, *, running_only: bool = False) -> list[str]:
    """Every container, running or not, that Conveyor made for the model (`docker ps -a`)."""
    every = [] if running_only else ["--all"]
    return docker("ps", *every, "--quiet", "--filter", f"label=conveyor.model={model_name}").stdout.split()


@pytest.fixture(scope="session")
def byoc_image(docker_base_image: str) -> str:
    docker("build", "--quiet", "--tag", BYOC_IMAGE, "--build-arg", f"BASE={docker_base_image}", str(BYOC))
    return BYOC_IMAGE


@pytest.fixture(scope="session")
def scripted_image(docker_base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("scripted-image")
    (context / "serve").write_text(SCRIPTED_SERVER)
    (context / "serve").chmod(0o755)
    (context / "Dockerfile").write_text(
        f"FROM {docker_base_image}\n"
        "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true\n"
        "ENV PATH=/opt/program:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin BIND_HOST=0.0.0.0 PYTHONUNBUFFERED=1\n"
        "COPY serve /opt/program/serve\n"
    )
    docker("build", "--quiet", "--tag", SCRIPTED_IMAGE, str(context))
    return SCRIPTED_IMAGE


def run_job(tmp_path: Path, name: str, request: Path, *arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return conveyor(
        "transform", "--name", name, "--model-request", str(request), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), *arguments, home=tmp_path / "home", env=env, timeout=180,
    )


# -- the bring-your-own-container example, as SageMaker runs it ---------------------------------


def test_byoc_image_built_and_run_as_sagemaker_runs_it(tmp_path: Path, byoc_image: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "iris.csv").write_text("".join(row + "\n" for row, _ in IRIS))
    (tmp_path / "in" / "broken.csv").write_text("not,a,flower,row\n")
    request = write_model_request(tmp_path / "model.json", "iris-docker", byoc_image, iris_model(tmp_path), MODEL_SERVER_WORKERS="2")
    result = run_job(
        tmp_path, "iris-docker-job", request, "--content-type", "text/csv", "--accept", "text/csv",
        "--split-type", "Line", "--assemble-with", "Line",
    )
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out" / "iris.csv.out").read_text() == "".join(species + "\n" for _, species in IRIS)
    assert "MaxConcurrentTransforms=2, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD" in result.stderr
    assert "Invoked with 6 records" in result.stderr  # the container's output reaches the job log
    assert "Could not parse record 1: 'not,a,flower,row' is not four numbers" in result.stderr
    assert containers_of("iris-docker") == []  # removed when the job ended


def test_environment_and_model_mount_reach_the_container(tmp_path: Path, scripted_image: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "prefix.txt").write_text("from-opt-ml-model:")
    request = write_model_request(
        tmp_path / "model.json", "env-docker", scripted_image, tmp_path / "model", MODE="env", MY_SHARED="model", MY_SECRET="s3cr3t value"
    )
    result = run_job(tmp_path, "env-docker-job", request, "--strategy", "SingleRecord", "--env", "MY_SHARED=job")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "a.txt.out").read_text()
    assert text.startswith("from-opt-ml-model:")
    assert json.loads(text.removeprefix("from-opt-ml-model:")) == {
        "MY_SECRET": "s3cr3t value",
        "MY_SHARED": "job",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
    }
    assert containers_of("env-docker") == []


def test_a_container_that_exits_at_start_fails_the_job_with_its_output(tmp_path: Path, scripted_image: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    request = write_model_request(tmp_path / "model.json", "broken-docker", scripted_image, EXIT_AT_START="3")
    result = run_job(tmp_path, "broken-docker-job", request)
    assert result.returncode == 1
    assert "exited with code 3" in result.stderr and "weights.bin is missing" in result.stderr
    assert containers_of("broken-docker") == []


def test_an_image_that_does_not_exist_is_a_clear_error(tmp_path: Path, docker_engine: str) -> None:
    runtime = DockerServerRuntime("conveyor-test-no-such-image:1", model_dir=None, environment={}, model_name="missing-image")
    with pytest.raises(RuntimeStartError, match=r"cannot create a container from image conveyor-test-no-such-image:1: .+"):
        runtime.start()
    assert containers_of("missing-image") == []


def test_a_never_healthy_container_fails_at_the_start_up_limit(scripted_image: str) -> None:
    runtime = DockerServerRuntime(scripted_image, model_dir=None, environment={"NEVER_HEALTHY": "1"}, model_name="unhealthy", startup_timeout=3)
    with pytest.raises(RuntimeStartError, match=r"within 3 s \(the start-up limit\); last answer: HTTP 503: model is still loading"):
        runtime.start()
    assert containers_of("unhealthy") == []


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_a_job_stopped_midway_leaves_no_container(tmp_path: Path, scripted_image: str, how: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("slow\n")
    name = f"stuck-docker-{how}"
    request = write_model_request(tmp_path / "model.json", name, scripted_image, SLEEP_ON="slow", SLEEP_SECONDS="120")
    job = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "transform", "--name", name, "--model-request", str(request),
         "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--quiet"],
        env={**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=interruptible,
    )
    try:
        assert wait_until(lambda: bool(containers_of(name, running_only=True)), timeout=60), "the container never started"
        time.sleep(2.0)  # the request is in flight
        job.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
        job.wait(timeout=60)
        assert wait_until(lambda: containers_of(name) == [], timeout=30), docker("ps", "--all").stdout
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert not (tmp_path / "out" / "a.txt.out").exists()


def test_two_container_pipeline_of_images(tmp_path: Path, scripted_image: str) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one\n")
    request = write_pipeline_request(tmp_path / "model.json", "pipeline-docker", [
        {"ContainerHostname": "shout", "Image": scripted_image, "Environment": {"MODE": "upper", "RESPONSE_TYPE": "text/x-shouted"}},
        {"ContainerHostname": "describe", "Image": scripted_image, "Environment": {"MODE": "describe"}},
    ])
    result = run_job(tmp_path, "pipeline-docker-job", request, "--split-type", "Line", "--content-type", "text/plain", "--accept", "text/csv")
    assert result.returncode == 0, result.stderr
    content_type, accept, _, body = (tmp_path / "out" / "a.txt.out").read_text().split("|")
    assert (content_type, accept, body) == ("text/x-shouted", "text/csv", "ONE\n")
    # pipeline containers listen on SAGEMAKER_BIND_TO_PORT, as in SageMaker
    assert "[shout] serving on port 8080" in result.stderr and "[describe] serving on port 8081" in result.stderr
    assert containers_of("pipeline-docker") == []


# -- without a daemon, and the command line -----------------------------------------------------


def test_no_daemon_is_a_clear_start_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    request = write_model_request(tmp_path / "model.json", "nodaemon", "some/image:1")
    result = run_job(tmp_path, "no-daemon-job", request, env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert result.returncode == 1
    assert "FailureReason: ClientError: no Docker daemon answers:" in result.stderr
    assert "no-docker.sock" in result.stderr


def test_docker_create_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = DockerServerRuntime(
        "my/image:1", model_dir=str(tmp_path), environment={"SAGEMAKER_BATCH": "true", "MY_SECRET": "hidden"},
        job_name="job", instance_type="ml.g5.xlarge",
    )
    arguments = runtime.create_arguments("conveyor-job-1-abc")
    assert arguments[-2:] == ["my/image:1", "serve"]
    assert ["--publish", "127.0.0.1::8080"] == arguments[arguments.index("--publish"):][:2]
    assert f"{tmp_path}:/opt/ml/model:ro" in arguments
    assert "MY_SECRET" in arguments and "hidden" not in " ".join(arguments)  # values travel in docker's environment
    if os.path.exists("/dev/nvidiactl"):
        assert ["--gpus", "all"] == arguments[arguments.index("--gpus"):][:2]
    else:
        assert "--gpus" not in arguments and "has GPUs but this machine has none" in capsys.readouterr().out
    assert has_gpus("ml.p3.2xlarge") and has_gpus("ml.g4dn.xlarge") and has_gpus("local_gpu")
    assert not has_gpus("ml.m5.xlarge") and not has_gpus("ml.inf2.xlarge") and not has_gpus(None)
