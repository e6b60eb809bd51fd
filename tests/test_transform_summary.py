"""What `conveyor transform` prints around a job: one settings line, sizes and rates that mean
something for small jobs, the same figures as the console, and which folders a prefix took."""

from __future__ import annotations

from pathlib import Path

from tests.models import BRACKET, FAIL_ON_BAD, write_model
from tests.test_transform_cli import conveyor


def transform(tmp_path: Path, handler: str, inputs: dict[str, str], input_arg: str | None = None):
    model = write_model(tmp_path, handler)
    for name, text in inputs.items():
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_text(text)
    return conveyor(
        "transform", "--model", str(model), "--input", input_arg or str(tmp_path / "data"), "--output", str(tmp_path / "out"),
        "--content-type", "text/csv", "--split-type", "Line", "--retries", "0", home=tmp_path / "home",
    )  # fmt: skip


def test_a_completed_job_prints_its_settings_once_and_small_sizes_in_bytes(tmp_path: Path) -> None:
    result = transform(tmp_path, BRACKET, {"a.csv": "1\n2\n"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD") == 1
    summary = next(line for line in result.stderr.splitlines() if line.startswith("Completed "))
    assert ": 1 of 1 objects, 2 records, 4 B in " in summary and "0.0 MB" not in summary
    assert result.stdout == f"Output: file://{tmp_path / 'out'}\n"


def test_a_job_whose_every_object_failed_names_no_output_and_counts_the_failures(tmp_path: Path) -> None:
    result = transform(tmp_path, FAIL_ON_BAD, {"a.csv": "bad\n", "b.csv": "bad\n"})
    assert result.returncode == 1
    summary = next(line for line in result.stderr.splitlines() if line.startswith("Failed "))
    assert ": 0 of 2 objects, 2 failed, 0 records" in summary
    assert result.stdout == ""


def test_a_local_prefix_that_takes_several_folders_says_which(tmp_path: Path) -> None:
    result = transform(tmp_path, BRACKET, {"csv/a.csv": "1\n", "csv-old/b.csv": "2\n"}, input_arg=str(tmp_path / "data" / "cs"))
    assert result.returncode == 0, result.stderr
    assert f"it matched 2 folders: {tmp_path / 'data' / 'csv'}/, {tmp_path / 'data' / 'csv-old'}/" in result.stderr
