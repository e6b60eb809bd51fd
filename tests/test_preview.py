"""`conveyor preview`: the first records' model input, model output and output line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.models import FIELD_COUNT, write_model


def preview(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_HOME": str(tmp_path / "home"), "CONVEYOR_RETRY_BACKOFF_SECONDS": "0.01", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "conveyor", "preview", *args], capture_output=True, text=True, env=env, timeout=60)


def rows(output: str) -> list[list[str]]:
    """The table's data rows as lists of cell texts."""
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines() if line.startswith("│")]


def test_preview_shows_filtered_input_model_output_and_joined_line(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text('id1,1,2,3\nid2,4,5,6\n"id,3","7",1.50,9\n')
    model = write_model(tmp_path, FIELD_COUNT)
    result = preview(
        tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--accept", "text/csv", "--assemble-with", "Line",
        "--input-filter", "$[1:]", "--join-source", "Input", "--output-filter", "$[0,-1]", "--records", "2",
    )
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout) == [["1", "1,2,3", "3", "id1,3"], ["2", "4,5,6", "3", "id2,3"]]
    assert not (tmp_path / "out").exists(), "preview writes nothing to the output path"


def test_preview_without_processing_shows_each_record(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n3,4,5\n")
    model = write_model(tmp_path, FIELD_COUNT)
    result = preview(tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--content-type", "text/csv", "--split-type", "Line")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout) == [["1", "1,2", "2", "2"], ["2", "3,4,5", "3", "3"]]


def test_preview_reports_a_bad_filter_like_a_job(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n")
    model = write_model(tmp_path, FIELD_COUNT)
    result = preview(
        tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--input-filter", "$.id",
    )
    assert result.returncode == 2
    assert "Invalid InputFilter" in result.stderr


# Notes each call in a file beside the model, and fails every payload.
FAILING_AND_COUNTING = '''
import os
def model_fn(model_dir):
    return model_dir
def transform_fn(model, body, content_type, accept):
    with open(os.path.join(model, "..", "calls"), "a") as calls:
        calls.write("call\\n")
    raise ValueError("this handler always fails")
'''


def test_preview_needs_no_output_and_counts_one_record_as_one(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n")
    model = write_model(tmp_path, FIELD_COUNT)
    result = preview(tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--content-type", "text/csv", "--split-type", "Line")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout) == [["1", "1,2", "2", "2"]]
    assert "first 1 record " in result.stdout and "first 1 records" not in result.stdout


def test_preview_does_not_retry_unless_asked(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,2\n")
    model = write_model(tmp_path, FAILING_AND_COUNTING)
    result = preview(tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--split-type", "Line")
    assert result.returncode == 1
    assert (tmp_path / "calls").read_text() == "call\n"
    (tmp_path / "calls").unlink()
    asked = preview(tmp_path, "--model", str(model), "--input", str(tmp_path / "in"), "--split-type", "Line", "--retries", "1")
    assert asked.returncode == 1
    assert (tmp_path / "calls").read_text() == "call\ncall\n"


def test_preview_help_speaks_to_a_user(tmp_path: Path) -> None:
    result = preview(tmp_path, "--help")
    assert result.returncode == 0
    assert "process_work_item" not in result.stdout and "--output may be left out" in " ".join(result.stdout.split())
