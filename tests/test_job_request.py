"""`conveyor transform` flags as a user types them: errors name the flag (and the field it
sets), output locations a rerun would read back or that cannot hold outputs are refused before
the model runs, and a local folder is taken as that folder only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.models import BRACKET, write_model

# Notes each call in a file beside the model, so a test can tell whether the model ran.
NOTING = '''
import os
def model_fn(model_dir):
    return model_dir
def transform_fn(model, body, content_type, accept):
    with open(os.path.join(model, "..", "calls"), "a") as calls:
        calls.write("call\\n")
    return b"[" + body + b"]"
'''


def transform(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "conveyor", "transform", *args], capture_output=True, text=True, env=env, timeout=120)


def inputs(tmp_path: Path, folder: str = "in", **files: str) -> Path:
    directory = tmp_path / folder
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"a.csv": "1\n2\n"}).items():
        (directory / name).write_text(text)
    return directory


def test_a_missing_output_names_the_flag_and_the_field(tmp_path: Path) -> None:
    model = write_model(tmp_path, BRACKET)
    result = transform(tmp_path, "--model", str(model), "--input", str(inputs(tmp_path)))
    assert result.returncode == 2
    assert "--output (TransformOutput.S3OutputPath) is required" in result.stderr
    assert "transformOutput.s3OutputPath" not in result.stderr


def test_a_bad_flag_value_names_the_flag_the_field_the_value_and_the_rule(tmp_path: Path) -> None:
    model = write_model(tmp_path, BRACKET)
    result = transform(tmp_path, "--model", str(model), "--input", str(inputs(tmp_path)), "--output", str(tmp_path / "out"), "--timeout", "0")
    assert result.returncode == 2
    assert "--timeout (ModelClientConfig.InvocationsTimeoutInSeconds) '0' failed to satisfy constraint: Member must have value greater than or equal to 1" in result.stderr
    assert "modelClientConfig" not in result.stderr


def test_output_equal_to_input_is_refused_before_the_model_runs(tmp_path: Path) -> None:
    model = write_model(tmp_path, NOTING)
    source = inputs(tmp_path)
    result = transform(tmp_path, "--model", str(model), "--input", str(source), "--output", str(source) + "/")
    assert result.returncode == 2
    assert f"--output (TransformOutput.S3OutputPath) 'file://{source}/' failed to satisfy constraint: Member must not be the input location" in result.stderr
    assert not (tmp_path / "calls").exists() and sorted(os.listdir(source)) == ["a.csv"]


def test_output_inside_the_input_is_refused(tmp_path: Path) -> None:
    model = write_model(tmp_path, NOTING)
    source = inputs(tmp_path)
    result = transform(tmp_path, "--model", str(model), "--input", str(source), "--output", str(source / "out"))
    assert result.returncode == 2
    assert f"Member must not lie inside the input location 'file://{source}'" in result.stderr
    assert not (tmp_path / "calls").exists()


def test_output_naming_an_existing_file_is_refused_before_the_model_runs(tmp_path: Path) -> None:
    model = write_model(tmp_path, NOTING)
    (tmp_path / "results.csv").write_text("not a folder\n")
    result = transform(tmp_path, "--model", str(model), "--input", str(inputs(tmp_path)), "--output", str(tmp_path / "results.csv"))
    assert result.returncode == 2
    assert "--output (TransformOutput.S3OutputPath)" in result.stderr and "names an existing file" in result.stderr
    assert not (tmp_path / "calls").exists()


def test_a_local_folder_is_that_folder_only(tmp_path: Path) -> None:
    model = write_model(tmp_path, BRACKET)
    source = inputs(tmp_path, "data/csv", **{"a.csv": "1\n"})
    inputs(tmp_path, "data/csv-old", **{"old.csv": "2\n"})
    (tmp_path / "data" / "csv.bak").write_text("3\n")
    result = transform(
        tmp_path, "--model", str(model), "--input", str(source), "--output", str(tmp_path / "out"),
        "--split-type", "Line", "--assemble-with", "Line",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.csv.out"]
    prefix = transform(
        tmp_path, "--model", str(model), "--input", str(tmp_path / "data" / "cs"), "--output", str(tmp_path / "by-prefix"),
        "--split-type", "Line", "--assemble-with", "Line",
    )
    assert prefix.returncode == 0, prefix.stderr  # a path that is no folder is still a key prefix, as on S3
    assert sorted(p.name for p in (tmp_path / "by-prefix").rglob("*.out")) == ["a.csv.out", "csv.bak.out", "old.csv.out"]


def test_a_failed_object_leaves_no_empty_output_sub_folder(tmp_path: Path) -> None:
    model = write_model(tmp_path, "def model_fn(model_dir):\n    return None\n\ndef transform_fn(model, body, content_type, accept):\n    raise ValueError('no')\n")
    source = inputs(tmp_path, "in/deep/er", **{"a.csv": "1\n"})
    result = transform(tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--retries", "0")
    assert result.returncode == 1 and source.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
