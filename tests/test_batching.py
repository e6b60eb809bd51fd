"""Cross-record batching (a Conveyor extension): a handler that declares BATCH_SIZE gets lists of
decoded inputs in predict_batch_fn, and every output goes back to its own record, in order
(docs/models.md, "Cross-record batching")."""

from __future__ import annotations

import json
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


def test_a_failing_batch_fails_only_the_object_whose_record_raised(tmp_path: Path) -> None:
    result = run_batched(tmp_path, {"a.csv": list(range(1, 21)), "b.csv": [1, 2, 3]}, None, "--retries", "1")
    assert result.returncode == 1
    assert not (tmp_path / "out" / "a.csv.out").exists()
    assert (tmp_path / "out" / "b.csv.out").read_text() == "10\n20\n30\n"
    assert "ValueError: thirteen is unlucky (code/inference.py, line 18, in predict_batch_fn)" in result.stderr
    assert "1 of 2 input objects failed" in result.stderr
    sizes = [int(line) for line in (tmp_path / "sizes.txt").read_text().split()]
    assert sizes.count(1) >= 4, "the failing batch was tried again input by input"


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


def run_objects(tmp_path: Path, objects: dict[str, str], handler: str, *extra: str):
    """One record per object (SplitType None), the shape of image inference."""
    inputs = tmp_path / "in"
    for name, body in objects.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_text(body)
    model = write_model(tmp_path, handler)
    return conveyor(
        "transform", "--model", str(model), "--input", str(inputs), "--output", str(tmp_path / "out"), "--content-type", "text/csv",
        "--quiet", *extra, home=tmp_path / "home",
    )  # fmt: skip


def test_small_objects_are_batched_across_objects_and_each_output_goes_to_its_object(tmp_path: Path) -> None:
    objects = {f"folder-{n % 3}/object-{n:03d}.csv": f"{n}\n" for n in range(60)}
    result = run_objects(tmp_path, objects, BATCHED.format(sizes=str(tmp_path / "sizes.txt")), "--retries", "0")
    assert result.returncode == 1, result.stderr  # 13 is refused by the model: its object alone fails
    assert "1 of 60 input objects failed. First: " in result.stderr and "object-013.csv: ValueError: thirteen is unlucky" in result.stderr
    for name, body in objects.items():
        output = tmp_path / "out" / f"{name}.out"
        assert output.read_text() == str(int(body) * 10) if body != "13\n" else not output.exists(), name
    sizes = [int(line) for line in (tmp_path / "sizes.txt").read_text().split()]
    assert max(sizes) == 4 and sum(size > 1 for size in sizes) >= 5, sizes


# Batches across objects; an object holding "die" kills the instance process every time.
DIES_IN_A_BATCH = """
import os

BATCH_SIZE = 4
BATCH_TIMEOUT = 0.05

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body.strip()

def predict_batch_fn(inputs, model):
    if "die" in inputs:
        os._exit(9)
    return [value.upper() for value in inputs]

def output_fn(prediction, accept):
    return prediction
"""


def test_a_crash_in_a_batch_is_pinned_on_the_object_that_caused_it(tmp_path: Path) -> None:
    objects = {f"object-{n:02d}.csv": ("die" if n == 5 else f"row{n}") for n in range(16)}
    result = run_objects(tmp_path, objects, DIES_IN_A_BATCH, "--retries", "0")
    assert result.returncode == 1
    assert "1 of 16 input objects failed" in result.stderr
    assert "object-05.csv: Unable to get response from the model: its instance exited with code 9 3 times" in result.stderr
    for name, body in objects.items():
        output = tmp_path / "out" / f"{name}.out"
        assert output.read_text() == body.upper() if body != "die" else not output.exists(), name


def test_a_record_that_fails_in_a_group_is_tried_again_alone_as_often_as_the_retries_allow(tmp_path: Path) -> None:
    """The records of an object go to the model BATCH_SIZE at a time (Runtime.invoke_many); one
    that fails there has that try counted and InvocationsMaxRetries more, alone."""
    values = [value for value in range(1, 21)]
    result = run_batched(tmp_path, {"a.csv": values}, None, "--retries", "2", "--max-failed-records", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.csv.out").read_text() == "".join(f"{value * 10}\n" if value != 13 else "\n" for value in values)
    failed = [json.loads(line) for line in next((tmp_path / "out").glob("*.errors.jsonl")).read_text().splitlines()]
    assert [(entry["record"], entry["attempts"]) for entry in failed] == [(13, 3)]
    assert "thirteen is unlucky (code/inference.py, line 18, in predict_batch_fn) (after 3 attempts; InvocationsMaxRetries=2)" in failed[0]["error"]
    sizes = [int(line) for line in (tmp_path / "sizes.txt").read_text().split()]
    assert sizes.count(4) >= 4 and sizes.count(1) == 4 + 2, "its batch, that batch input by input, then two tries alone"


def test_a_batch_that_hangs_restarts_the_instance_and_the_job_completes(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck"
    handler = BATCHED.format(sizes=str(tmp_path / "sizes.txt")).replace(
        "    if 13 in inputs:\n        raise ValueError(\"thirteen is unlucky\")\n",
        f"    if 13 in inputs and not os.path.exists({str(stuck)!r}):\n        open({str(stuck)!r}, 'w').close()\n        time.sleep(600)\n",  # past the command's own 120 s in the tests: only a restart ends it
    )
    result = run_batched(tmp_path, {"a.csv": list(range(1, 21))}, "import time\n" + handler, "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.csv.out").read_text() == "".join(f"{value * 10}\n" for value in range(1, 21))
    assert stuck.exists()


def test_small_objects_sent_together_keep_their_own_outcomes(tmp_path: Path) -> None:
    """Objects of one payload each go to the handler a group at a time (pipeline.item_groups):
    each keeps its own output, an empty object its empty output, and one whose input fails has
    that try counted and its retries alone, failing only itself."""
    objects = {f"object-{n:02d}.csv": f"{n}\n" for n in range(40)} | {"empty.csv": ""}
    result = run_objects(tmp_path, objects, BATCHED.format(sizes=str(tmp_path / "sizes.txt")), "--retries", "1")
    assert result.returncode == 1
    assert "1 of 41 input objects failed. First: " in result.stderr
    assert "object-13.csv: ValueError: thirteen is unlucky (code/inference.py, line 18, in predict_batch_fn) (after 2 attempts; InvocationsMaxRetries=1)" in result.stderr
    for name, body in objects.items():
        output = tmp_path / "out" / f"{name}.out"
        assert output.read_text() == (str(int(body) * 10) if body else "") if body != "13\n" else not output.exists(), name
    sizes = [int(line) for line in (tmp_path / "sizes.txt").read_text().split()]
    assert sizes.count(4) >= 8, sizes
