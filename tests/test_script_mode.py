"""SageMaker's framework models as users have them, through `conveyor transform`: script mode
(SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY), the toolkits' defaults for missing handler
functions, and a handler's requirements.txt installed only where allowed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.wheels import make_wheel

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"

HELPED = """
from helpers import shout

def model_fn(model_dir):
    return open(model_dir + "/weights.txt").read().strip()

def transform_fn(model, body, content_type, accept):
    return shout(model, body)
"""
HELPERS = """
def shout(prefix, body):
    body = body if isinstance(body, str) else body.decode()
    return "".join(f"{prefix}:{line.upper()}\\n" for line in body.splitlines())
"""


def conveyor(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CONVEYOR_HOME": str(home), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01", **(env or {})}
    return subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True, text=True, env=environment, timeout=180)


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def run_model(tmp_path: Path, image: str, model_dir: Path, environment: dict[str, str], *args: str, inputs: str = "a\nb\n",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    request = tmp_path / "model.json"
    container = {"Image": image, "ModelDataUrl": f"file://{model_dir}", "Environment": environment}
    request.write_text(json.dumps({"ModelName": "framework-model", "PrimaryContainer": container}))
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "rows.csv").write_text(inputs)
    return conveyor(
        "transform", "--model-request", str(request), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--assemble-with", "Line", "--retries", "0", *args,
        home=tmp_path / "home", env=env,
    )  # fmt: skip


def output(tmp_path: Path) -> str:
    return (tmp_path / "out" / "rows.csv.out").read_text()


# -- script mode -------------------------------------------------------------------------------


def test_a_submit_directory_archive_is_the_handler_and_its_folder_is_on_the_path(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w1"})
    sources = tarball(tmp_path / "sourcedir.tar.gz", {"serve.py": HELPED, "helpers.py": HELPERS})
    environment = {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"file://{sources}"}
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, environment)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == "w1:A\nw1:B\n"


def test_a_submit_directory_wins_over_code_in_the_model_data(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w2", "code/inference.py": "raise RuntimeError('code/ must not be imported')\n"})
    sources = write(tmp_path / "src", {"inference.py": HELPED, "helpers.py": HELPERS})
    result = run_model(tmp_path, XGBOOST_IMAGE, model_dir, {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": str(sources)})
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == "w2:A\nw2:B\n"


def test_opt_ml_model_code_means_code_in_the_model_data(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w3", "code/inference.py": HELPED, "code/helpers.py": HELPERS})
    environment = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    result = run_model(tmp_path, PYTORCH_IMAGE, model_dir, environment)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == "w3:A\nw3:B\n"


def test_a_submit_directory_that_cannot_be_read_fails_the_job_naming_it(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w"})
    missing = tmp_path / "nowhere" / "sourcedir.tar.gz"
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"file://{missing}"})
    assert result.returncode == 1
    assert f"Could not read SAGEMAKER_SUBMIT_DIRECTORY file://{missing}" in result.stderr


# -- the toolkits' defaults --------------------------------------------------------------------


def test_scikit_learn_refuses_a_handler_without_model_fn_in_its_own_words(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"code/inference.py": "def predict_fn(data, model):\n    return data\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {})
    assert result.returncode == 1
    assert "defines no model_fn and the scikit-learn container has no default: Please provide a model_fn implementation. " in result.stderr
    assert "See documentation for model_fn at https://github.com/aws/sagemaker-python-sdk" in result.stderr


def test_scikit_learn_default_input_is_float32_rows(tmp_path: Path) -> None:
    handler = """
    def model_fn(model_dir):
        return None

    def predict_fn(data, model):
        return [f"{data.dtype}:{data.shape}"]
    """
    model_dir = write(tmp_path / "model", {"code/inference.py": handler})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {}, "--strategy", "SingleRecord", "--accept", "application/json", inputs="1,2,3\n")
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == '["float32:(1, 3)"]\n'


def test_xgboost_framework_mode_decodes_into_a_dmatrix_and_predicts_with_the_booster(tmp_path: Path) -> None:
    import numpy as np
    import xgboost

    features = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]] * 8)
    booster = xgboost.train({"objective": "reg:squarederror", "max_depth": 2}, xgboost.DMatrix(features, label=features.sum(axis=1)), 5)
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    booster.save_model(str(model_dir / "model.json"))
    handler = """
    import os
    import xgboost

    def model_fn(model_dir):
        booster = xgboost.Booster()
        booster.load_model(os.path.join(model_dir, "model.json"))
        return booster
    """
    write(model_dir, {"code/inference.py": handler})
    result = run_model(tmp_path, XGBOOST_IMAGE, model_dir, {}, "--accept", "text/csv", inputs="0,1\n1,1\n")
    assert result.returncode == 0, result.stderr
    expected = booster.predict(xgboost.DMatrix(np.array([[0.0, 1.0], [1.0, 1.0]])))
    assert [float(value) for value in output(tmp_path).split()] == pytest.approx(expected.tolist(), rel=1e-6)


# -- requirements.txt --------------------------------------------------------------------------


PROBE_HANDLER = """
import conveyor_probe

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return conveyor_probe.VERSION + "\\n"
"""


@pytest.fixture
def probe(tmp_path: Path) -> dict[str, str]:
    """Two versions of a package: 1.0 on an offline index, 2.0 already in the environment that
    runs Conveyor (on its PYTHONPATH); the environment for `conveyor transform`."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "conveyor-probe", "1.0", "conveyor_probe", 'VERSION = "1.0"\n')
    newer = make_wheel(tmp_path / "newer", "conveyor-probe", "2.0", "conveyor_probe", 'VERSION = "2.0"\n')
    environment_packages = tmp_path / "environment-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--target", str(environment_packages), str(newer)], check=True
    )
    return {"PYTHONPATH": str(environment_packages), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def test_requirements_are_installed_when_allowed_and_their_pins_win(tmp_path: Path, probe: dict[str, str]) -> None:
    model_dir = write(tmp_path / "model", {"code/inference.py": PROBE_HANDLER, "code/requirements.txt": "conveyor-probe==1.0\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {}, "--install-requirements", inputs="x\n", env=probe)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == "1.0\n"
    assert "Installed the requirements.txt of the model's code" in result.stderr
    [installed] = (tmp_path / "home" / "cache" / "environments").iterdir()
    assert (installed / "conveyor_probe.py").read_text() == 'VERSION = "1.0"\n'


def test_requirements_are_reported_not_installed_by_default(tmp_path: Path, probe: dict[str, str]) -> None:
    model_dir = write(tmp_path / "model", {"code/inference.py": PROBE_HANDLER, "code/requirements.txt": "conveyor-probe==1.0\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {}, inputs="x\n", env=probe)
    assert result.returncode == 0, result.stderr
    assert output(tmp_path) == "2.0\n"
    assert "The requirements.txt of the model's code was not installed" in result.stderr
    assert "--install-requirements (or CONVEYOR_INSTALL_REQUIREMENTS=true)" in result.stderr
    assert not (tmp_path / "home" / "cache" / "environments").exists()


def test_a_pin_that_cannot_run_beside_conveyor_fails_the_job_naming_both(tmp_path: Path, probe: dict[str, str]) -> None:
    make_wheel(Path(probe["PIP_FIND_LINKS"]), "orjson", "0.0.1", "orjson_impostor", "")
    model_dir = write(tmp_path / "model", {"code/inference.py": PROBE_HANDLER, "code/requirements.txt": "orjson==0.0.1\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {}, "--install-requirements", inputs="x\n", env=probe)
    assert result.returncode == 1
    assert "installs orjson 0.0.1, but Conveyor's runtime needs orjson>=3.9" in result.stderr
    assert "run this model in a container model (its own image) instead" in result.stderr


def test_an_install_that_fails_fails_the_job_with_the_installers_message(tmp_path: Path, probe: dict[str, str]) -> None:
    model_dir = write(tmp_path / "model", {"code/inference.py": PROBE_HANDLER, "code/requirements.txt": "no-such-package==9.9\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {}, "--install-requirements", inputs="x\n", env=probe)
    assert result.returncode == 1
    assert "FailureReason: ClientError: installing " in result.stderr
    assert "No matching distribution found for no-such-package==9.9" in result.stderr
    assert not (tmp_path / "out" / "rows.csv.out").exists()


def test_pytorch_defaults_that_need_torch_say_so_where_it_is_missing(tmp_path: Path) -> None:
    handler = "def model_fn(model_dir):\n    return None\n\ndef predict_fn(data, model):\n    return data\n"
    model_dir = write(tmp_path / "model", {"code/inference.py": handler})
    # The test environment has torch (for the GPU benchmarks); a shadow package makes it missing.
    write(tmp_path / "without-torch", {"torch/__init__.py": "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"})
    path = os.pathsep.join(filter(None, [str(tmp_path / "without-torch"), os.environ.get("PYTHONPATH")]))
    result = run_model(tmp_path, PYTORCH_IMAGE, model_dir, {}, env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert "the PyTorch toolkit's default input_fn needs torch, which is not installed here: define input_fn in the handler, or install torch" in result.stderr


def test_a_framework_models_broken_local_handler_is_refused_before_running(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w", "code/inference.py": "def model_fn(model_dir)\n"})
    result = run_model(tmp_path, SKLEARN_IMAGE, model_dir, {})
    assert result.returncode == 2
    assert "does not compile: expected ':' (line 1)" in result.stderr


def test_a_local_submit_directory_without_its_program_is_refused_before_running(tmp_path: Path) -> None:
    model_dir = write(tmp_path / "model", {"weights.txt": "w"})
    sources = write(tmp_path / "src", {"helpers.py": HELPERS})
    result = run_model(tmp_path, XGBOOST_IMAGE, model_dir, {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": str(sources)})
    assert result.returncode == 2
    assert f"the submit directory {sources} has no serve.py" in result.stderr
