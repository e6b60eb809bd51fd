"""Cross-record batching (a Conveyor extension): a handler that declares BATCH_SIZE gets lists of
decoded inputs in predict_batch_fn, and every output goes back to its own record, in order
(docs/models.md, "Cross-record batching")."""

from __future__ import annotations

from pathlib import Path

from tests.models import write_model
from tests.test_transform_cli import conveyor

# Multiplies each record by ten; logs each batch's size, and fails a batch holding "13".
BATCHED = """
import os

BATCH_SIZE = 4
BATCH_TIMEOUT = 0.05
SIZES = {sizes!r}

def model_fn(model_dir):
    return 10

def input_fn(body, content_type):
    return int(body)

def predict_batch_fn(inputs, model):
    with open(SIZES, "a") as sizes:
        sizes.write(f"{{len(inputs)}}\\n")
    if 13 in inputs:
        raise ValueError("thirteen is unlucky")
    return [value * model for value in inputs]

def output_fn(prediction, accept):
    return str(prediction)
"""


def run_batched(tmp_path: Path, files: dict[str, list[int]], handler: str | None = None, *extra: str):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, values in files.items():
        (inputs / name).write_text("".join(f"{value}\n" for value in values))
    model = write_model(tmp_path, handler or BATCHED.format(sizes=str(tmp_path / "sizes.txt")))
    return conveyor(
        "transform", "--model", str(model), "--input", str(inputs), "--output", str(tmp_path / "out"), "--content-type", "text/csv",
        "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line", "--quiet", *extra,
        home=tmp_path / "home",
    )  # fmt: skip


def test_every_output_returns_to_its_own_record_and_object_in_order(tmp_path: Path) -> None:
    files = {"a.csv": list(range(1, 41)), "b.csv": list(range(100, 111)), "c.csv": [7]}
    result = run_batched(tmp_path, {name: [v for v in values if v != 13] for name, values in files.items()})
    assert result.returncode == 0, result.stderr
    for name, values in files.items():
        expected = "".join(f"{value * 10}\n" for value in values if value != 13)
        assert (tmp_path / "out" / f"{name}.out").read_text() == expected
    sizes = [int(line) for line in (tmp_path / "sizes.txt").read_text().split()]
    assert sum(sizes) == 39 + 11 + 1 and max(sizes) == 4, "records were gathered into batches of up to BATCH_SIZE"
    assert sum(size > 1 for size in sizes) >= 5


def test_a_failing_batch_fails_only_the_object_whose_records_were_in_it(tmp_path: Path) -> None:
    result = run_batched(tmp_path, {"a.csv": list(range(1, 21)), "b.csv": [1, 2, 3]}, None, "--retries", "1")
    assert result.returncode == 1
    assert not (tmp_path / "out" / "a.csv.out").exists()
    assert (tmp_path / "out" / "b.csv.out").read_text() == "10\n20\n30\n"
    assert "ValueError: thirteen is unlucky" in result.stderr and "(in a batch of " in result.stderr
    assert "1 of 2 input objects failed" in result.stderr


def test_a_batch_size_without_predict_batch_fn_fails_at_start_with_the_rule(tmp_path: Path) -> None:
    handler = "BATCH_SIZE = 8\ndef model_fn(model_dir):\n    return None\ndef predict_fn(data, model):\n    return data\n"
    result = run_batched(tmp_path, {"a.csv": [1]}, handler)
    assert result.returncode == 1
    assert "declares BATCH_SIZE = 8 but defines no predict_batch_fn(inputs, model)" in result.stderr


def test_a_batch_size_that_is_not_a_whole_number_is_refused(tmp_path: Path) -> None:
    handler = "BATCH_SIZE = 0\ndef model_fn(model_dir):\n    return None\ndef predict_batch_fn(inputs, model):\n    return inputs\n"
    result = run_batched(tmp_path, {"a.csv": [1]}, handler)
    assert result.returncode == 1
    assert "BATCH_SIZE in " in result.stderr and "is 0; it must be a whole number from 1 to 4096" in result.stderr


def test_a_batch_answered_with_the_wrong_number_of_predictions_fails_clearly(tmp_path: Path) -> None:
    handler = (
        "BATCH_SIZE = 3\nBATCH_TIMEOUT = 0.05\ndef model_fn(model_dir):\n    return None\n"
        "def predict_batch_fn(inputs, model):\n    return inputs[:1]\n"
    )
    result = run_batched(tmp_path, {"a.csv": [1, 2, 3]}, handler)
    assert result.returncode == 1
    assert "predict_batch_fn returned 1 prediction for a batch of 3 inputs; it must return one per input, in order" in result.stderr


def test_a_transform_fn_handler_cannot_declare_a_batch_size(tmp_path: Path) -> None:
    handler = "BATCH_SIZE = 2\ndef model_fn(model_dir):\n    return None\ndef transform_fn(model, body, content_type, accept):\n    return body\n"
    result = run_batched(tmp_path, {"a.csv": [1]}, handler)
    assert result.returncode == 1
    assert "declares BATCH_SIZE = 2 and defines transform_fn, which cannot be batched" in result.stderr
