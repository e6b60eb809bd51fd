"""The trust boundary of `conveyor server` (docs/security.md), against real servers on 127.0.0.1:
CONVEYOR_HOME is never a job location, `--local-root` confines `file://` (symlinks and `..`
resolved), a server off loopback without roots refuses `file://`, `--runtimes` refuses other
kinds at CreateModel, the console previews only what the job wrote, and state files are private.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.job_requests import job_request
from tests.models import BRACKET, write_model
from tests.server import ServerProcess, start_server, wait_for_status
from tests.test_server_api import ROLE, create_model, unique, write_inputs


def refusal(call: Any, **arguments: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**arguments)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    return str(error["Message"])


# CONVEYOR_HOME is never a job location


def test_locations_inside_the_home_are_refused(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm = conveyor_server.client()
    home = os.path.realpath(conveyor_server.home)
    model = create_model(sm, tmp_path, BRACKET)
    inputs = write_inputs(tmp_path / "in", {"a.csv": "1\n"})
    cases = {
        "input": job_request(unique("home-in"), model, f"file://{home}/", str(tmp_path / "out")),
        "output": job_request(unique("home-out"), model, inputs, f"file://{home}"),
        "capture": job_request(
            unique("home-capture"), model, inputs, str(tmp_path / "out2"),
            DataCaptureConfig={"DestinationS3Uri": f"file://{home}/capture"},
        ),
    }
    for where, request in cases.items():
        message = refusal(sm.create_transform_job, **request)
        assert f"the server's state directory {home} (CONVEYOR_HOME)" in message, (where, message)
        with pytest.raises(ClientError):
            sm.describe_transform_job(TransformJobName=request["TransformJobName"])

    # A link to the home from an input folder is resolved and refused too.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "keys.csv").symlink_to(Path(home) / "credentials")
    message = refusal(sm.create_transform_job, **job_request(unique("home-link"), model, f"file://{linked}/", str(tmp_path / "out3")))
    assert "(CONVEYOR_HOME)" in message and "keys.csv" in message

    # Model data that is, or holds, the home is refused at CreateModel.
    for url in (f"file://{home}", f"file://{os.path.dirname(home)}"):
        message = refusal(
            sm.create_model, ModelName=unique("home-model"), ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": url},
        )
        assert "(CONVEYOR_HOME)" in message, message


# --local-root


@pytest.fixture(scope="module")
def rooted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    base = tmp_path_factory.mktemp("rooted")
    root = base / "root"
    root.mkdir()
    server = start_server(base / "home", "--local-root", str(root))
    yield server, root
    server.stop()


def test_local_roots_confine_file_locations_after_resolving_links(rooted: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    server, root = rooted
    sm = server.client()
    model = create_model(sm, root / "models", BRACKET)
    name = unique("inside")
    sm.create_transform_job(**job_request(name, model, write_inputs(root / "in", {"a.csv": "1\n"}), f"file://{root}/out"))
    assert wait_for_status(sm, name)["TransformJobStatus"] == "Completed"

    outside = write_inputs(tmp_path / "outside", {"b.csv": "2\n"})
    message = refusal(sm.create_transform_job, **job_request(unique("out-in"), model, outside, f"file://{root}/out2"))
    assert f"is outside this server's local roots {os.path.realpath(root)} (--local-root, CONVEYOR_LOCAL_ROOTS)" in message

    message = refusal(sm.create_transform_job, **job_request(unique("dotdot"), model, f"file://{root}/in/../../outside/", f"file://{root}/o"))
    assert "outside this server's local roots" in message

    escaping = root / "escaping"
    escaping.mkdir()
    (escaping / "c.csv").symlink_to(tmp_path / "outside" / "b.csv")
    message = refusal(sm.create_transform_job, **job_request(unique("link-in"), model, f"file://{escaping}/", f"file://{root}/o"))
    assert f"(resolved: {os.path.realpath(tmp_path / 'outside' / 'b.csv')})" in message

    (root / "out-link").symlink_to(tmp_path, target_is_directory=True)
    message = refusal(sm.create_transform_job, **job_request(unique("link-out"), model, f"file://{root}/in/", f"file://{root}/out-link/x"))
    assert "outside this server's local roots" in message

    outside_model = write_model(tmp_path, BRACKET, "outside-model")
    message = refusal(
        sm.create_model, ModelName=unique("m"), ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{outside_model}"},
    )
    assert "primaryContainer" not in message and "outside this server's local roots" in message


def test_a_server_off_loopback_without_roots_refuses_file_locations(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", "--host", "0.0.0.0")
    try:
        sm = server.client()
        model_dir = write_model(tmp_path, BRACKET)
        message = refusal(
            sm.create_model, ModelName="local", ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"},
        )
        assert "this server listens on 0.0.0.0" in message
        assert "set --local-root DIR (CONVEYOR_LOCAL_ROOTS)" in message
    finally:
        server.stop()


# --runtimes


def test_runtimes_outside_the_allowed_kinds_are_refused_at_create_model(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", "--runtimes", "docker,http,builtin")
    try:
        sm = server.client()
        model_dir = write_model(tmp_path, BRACKET)
        message = refusal(
            sm.create_model, ModelName="python", ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"},
        )
        assert message == (
            "Model 'python': Image 'conveyor:python' runs as the 'python' kind, which this server does not run "
            "('python' runs the user's Python handler code on the server's host); it runs only builtin,http,docker "
            "(--runtimes, CONVEYOR_RUNTIMES)"
        )
        message = refusal(sm.create_model, ModelName="process", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "process:sh -c true"})
        assert "runs as the 'process' kind" in message
        # A framework image whose model data cannot be looked at now may hold user code.
        message = refusal(
            sm.create_model, ModelName="framework", ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
                              "ModelDataUrl": "s3://bucket/model.tar.gz"},
        )
        assert "runs as the 'python' kind" in message
        sm.create_model(ModelName="remote", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "http://127.0.0.1:9/"})
        assert sm.describe_model(ModelName="remote")["ModelName"] == "remote"
    finally:
        server.stop()


def test_an_unknown_runtime_kind_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as caught:
        start_server(tmp_path / "home", "--runtimes", "docker,shell")
    assert "--runtimes (CONVEYOR_RUNTIMES) 'docker,shell': unknown kind 'shell'; choose from builtin,python,process,http,docker" in str(caught.value)


# The console's preview


def sign_in(server: ServerProcess) -> httpx.Client:
    client = httpx.Client(base_url=server.endpoint, timeout=10)
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    keys = server.session().get_credentials()
    signed_in = client.post(
        "/console/login",
        data={"csrf_token": token.group(1), "access_key_id": keys.access_key, "secret_access_key": keys.secret_key},
    )
    assert signed_in.status_code == 303, signed_in.text
    return client


def test_the_preview_serves_only_objects_the_job_wrote(conveyor_server: ServerProcess, tmp_path: Path) -> None:
    sm = conveyor_server.client()
    out = tmp_path / "out"
    out.mkdir()
    (out / "secret.txt").write_text("not the job's\n")
    name = unique("preview")
    model = create_model(sm, tmp_path, BRACKET)
    sm.create_transform_job(**job_request(name, model, write_inputs(tmp_path / "in", {"a.csv": "1\n"}), f"file://{out}"))
    assert wait_for_status(sm, name)["TransformJobStatus"] == "Completed"
    console = sign_in(conveyor_server)
    try:
        written = console.get(f"/console/api/jobs/{name}/preview", params={"object": "a.csv.out"})
        assert written.status_code == 200 and written.json()["text"], written.text
        other = console.get(f"/console/api/jobs/{name}/preview", params={"object": "secret.txt"})
        assert other.status_code == 404
        assert other.json() == {"error": "'secret.txt' is not an output that this job wrote"}
    finally:
        console.close()


# File modes


def test_state_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "state"  # created by the server itself
    server = start_server(tmp_path, "--home", str(home))
    try:
        deadline = time.monotonic() + 30
        while not (home / "conveyor.db-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        for name in ("conveyor.db", "conveyor.db-wal", "credentials"):
            assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600, name
    finally:
        server.stop()
