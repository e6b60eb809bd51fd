"""The runtime registry: which kind runs a container, in a documented order, and the hook that
adds a kind without editing the chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.runtimes import registry
from conveyor.runtimes.base import Runtime, RuntimeStartError
from conveyor.runtimes.pipeline import SerialPipelineRuntime
from conveyor.runtimes.registry import RuntimeTarget, create_runtime, kind_for, register_runtime, runtime_kinds
from conveyor.sagemaker import ModelSpec, parse_model

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


class EchoRuntime(Runtime):
    """A kind of runtime a plug-in might add: answers each payload with its model file's bytes."""

    def __init__(self, target: RuntimeTarget) -> None:
        assert target.model_dir is not None
        self.prefix = (Path(target.model_dir) / "model_algo-1").read_bytes()

    def start(self) -> None: ...

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        return self.prefix + payload

    def close(self) -> None: ...


@pytest.fixture(autouse=True)
def restored_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test registers what it likes; the process's registry is put back after it."""
    monkeypatch.setattr(registry, "_KINDS", list(registry._KINDS))
    yield


def model(*images: str, with_data: bool = True, mode: str | None = None) -> ModelSpec:
    containers = [{"Image": image, **({"ModelDataUrl": "/models/m.tar.gz"} if with_data else {})} for image in images]
    request: dict[str, Any] = {"ModelName": "m", "PrimaryContainer": containers[0]}
    if len(containers) > 1:
        request = {"ModelName": "m", "Containers": containers}
    if mode:
        request["InferenceExecutionConfig"] = {"Mode": mode}
    return parse_model(request)


def model_dir(tmp_path: Path, *files: str) -> str:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    return str(tmp_path)


def kind(definition: ModelSpec, model_dirs: list[str]) -> str:
    return kind_for(RuntimeTarget.for_model(definition, model_dirs, {})).name


def test_conveyors_own_kinds_are_tried_in_the_documented_order() -> None:
    assert runtime_kinds() == ["pipeline", "python", "xgboost", "kmeans", "http", "process", "docker"]


@pytest.mark.parametrize(
    "image, files, expected",
    [
        ("", [], "python"),
        ("conveyor:python", [], "python"),
        (SKLEARN_IMAGE, ["code/inference.py"], "python"),  # a framework image with the user's handler
        (SKLEARN_IMAGE, ["model.joblib"], "docker"),  # no handler in the model data: the image itself
        ("my-registry.example/models/iris:3", ["code/inference.py"], "docker"),  # not a framework image
        ("http://127.0.0.1:8080", [], "http"),
        ("process:python serve.py", [], "process"),
    ],
)
def test_the_first_matching_kind_runs_a_container(tmp_path: Path, image: str, files: list[str], expected: str) -> None:
    assert kind(model(image), [model_dir(tmp_path, *files)]) == expected


def test_a_serial_pipeline_matches_each_stage_against_the_kinds(tmp_path: Path) -> None:
    definition = model("process:python a.py", "http://127.0.0.1:9000", with_data=False)
    target = RuntimeTarget.for_model(definition, [], {"SAGEMAKER_BATCH": "true"})
    assert kind_for(target).name == "pipeline"
    assert [(kind_for(stage).name, stage.stage) for stage in target.stages()] == [("process", 0), ("http", 1)]
    runtime = create_runtime(definition, [], {"SAGEMAKER_BATCH": "true"})
    assert isinstance(runtime, SerialPipelineRuntime)
    assert runtime.names == ["process:python a.py", "http://127.0.0.1:9000"]


def test_a_multi_container_model_in_direct_mode_is_refused() -> None:
    definition = model("http://127.0.0.1:9000", "http://127.0.0.1:9001", with_data=False, mode="Direct")
    with pytest.raises(RuntimeStartError, match="Mode=Direct.*use Mode=Serial"):
        create_runtime(definition, [], {})


def test_a_registered_kind_looks_inside_the_prepared_model_data(tmp_path: Path) -> None:
    register_runtime("echo", lambda target: target.model_dir is not None and (Path(target.model_dir) / "model_algo-1").is_file(), EchoRuntime)
    assert runtime_kinds() == ["pipeline", "python", "xgboost", "kmeans", "http", "process", "echo", "docker"]
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-algorithm:1"
    runtime = create_runtime(model(image), [model_dir(tmp_path / "algo", "model_algo-1")], {})
    assert isinstance(runtime, EchoRuntime)
    assert runtime.invoke(b"1,2\n", content_type="text/csv", accept=None, timeout=1) == b"x1,2\n"
    assert kind(model(image), [model_dir(tmp_path / "other", "model.tar.gz")]) == "docker"


def test_a_kind_registered_before_another_wins_over_it(tmp_path: Path) -> None:
    register_runtime("echo", lambda target: target.image == "conveyor:python", EchoRuntime, before="python")
    assert runtime_kinds()[:3] == ["pipeline", "echo", "python"]
    assert kind(model("conveyor:python"), [model_dir(tmp_path, "model_algo-1")]) == "echo"
    assert kind(model(""), [model_dir(tmp_path)]) == "python"


def test_registering_a_known_name_replaces_that_kind_in_place(tmp_path: Path) -> None:
    register_runtime("http", lambda target: target.image.startswith("echo://"), EchoRuntime)
    assert runtime_kinds() == ["pipeline", "python", "xgboost", "kmeans", "http", "process", "docker"]
    assert kind(model("echo://x"), [model_dir(tmp_path, "model_algo-1")]) == "http"
    assert kind(model("http://127.0.0.1:8080"), []) == "docker"


def test_registering_before_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no runtime kind 'tpu'.*known: pipeline, python, xgboost, kmeans, http, process, docker"):
        register_runtime("echo", lambda target: True, EchoRuntime, before="tpu")
