"""Built-in XGBoost in-process: the algorithm mode of aws/sagemaker-xgboost-container (v1.7-1-1).

The models in tests/fixtures/xgboost were written by XGBoost 1.7.6, the version inside the 1.7-1
image, in every form the image loads; `expected.json` holds 1.7.6's own predictions. Response
bytes are pinned for every Accept; the end-to-end tests run `conveyor transform`.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.runtimes.base import InvocationError, RuntimeStartError
from conveyor.runtimes.registry import RuntimeTarget, kind_for
from conveyor.sagemaker import parse_model
from tests.test_transform_cli import conveyor

xgboost = pytest.importorskip("xgboost")
from conveyor.runtimes.builtin_xgboost import BuiltinXGBoostRuntime  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "xgboost"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ROWS = "\n".join(",".join(f"{value:.3f}" for value in row) for row in EXPECTED["rows"]).encode() + b"\n"
LOGISTIC = (
    b"0.16976827383041382\n0.10699343681335449\n0.8893377184867859\n0.828675389289856\n0.11329483985900879\n"
)
ACCEPTS = ["text/csv", "application/json", "application/jsonlines", "application/x-recordio-protobuf", None, "*/*"]


def runtime(folder: str, **environment: str) -> BuiltinXGBoostRuntime:
    model = BuiltinXGBoostRuntime(str(FIXTURES / folder), {"SAGEMAKER_BATCH": "true", **environment}, IMAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xgboost warns when it unpickles a 1.7 booster
        model.start()
    return model


def invoke(model: BuiltinXGBoostRuntime, body: bytes = ROWS, content_type: str | None = "text/csv", accept: str | None = None) -> bytes:
    return model.invoke(body, content_type=content_type, accept=accept, timeout=60)


def refusal(model: BuiltinXGBoostRuntime, body: bytes = ROWS, content_type: str | None = "text/csv", accept: str | None = None) -> InvocationError:
    with pytest.raises(InvocationError) as caught:
        invoke(model, body, content_type, accept)
    return caught.value


# -- model files -----------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["binary", "pickle", "json", "ubj"])
def test_every_model_form_gives_the_images_predictions(folder: str) -> None:
    assert invoke(runtime(folder)) == LOGISTIC
    assert [float(line) for line in LOGISTIC.split()] == EXPECTED["logistic"]


def test_an_ensemble_averages_its_models_unless_turned_off() -> None:
    assert [float(line) for line in invoke(runtime("ensemble")).split()] == pytest.approx(EXPECTED["ensemble"], abs=1e-7)
    assert invoke(runtime("ensemble", SAGEMAKER_INFERENCE_ENSEMBLE="false")) == LOGISTIC


def test_dotfiles_are_ignored_and_an_unreadable_model_is_named(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "binary" / "xgboost-model", tmp_path / "xgboost-model")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    assert invoke(runtime(str(tmp_path))) == LOGISTIC
    (tmp_path / "xgboost-model").write_bytes(b"not a model")
    with pytest.raises(RuntimeStartError, match=r"Unable to load model: Model .*xgboost-model cannot be loaded:\nPickle load error=.*\nXGB load model error="):
        runtime(str(tmp_path))
    (tmp_path / "xgboost-model").unlink()
    with pytest.raises(RuntimeStartError, match="holds no model file"):
        runtime(str(tmp_path))


# -- the batch response, byte for byte ---------------------------------------------------------


@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_batch_response_is_one_prediction_a_line_whatever_the_accept(accept: str | None) -> None:
    assert invoke(runtime("binary"), accept=accept) == LOGISTIC


def test_multiclass_and_regression_lines() -> None:
    softprob = invoke(runtime("softprob"), accept="application/json").decode().splitlines()
    assert softprob[0] == "[0.7779361605644226, 0.11196433752775192, 0.11009951680898666]"
    assert [json.loads(line) for line in softprob] == EXPECTED["softprob"]
    assert invoke(runtime("regression")) == (
        b"-1.8281941413879395\n0.033510129898786545\n1.6032365560531616\n0.9679669141769409\n2.1558644771575928\n"
    )


def test_libsvm_and_recordio_protobuf_bodies() -> None:
    libsvm = "\n".join("0 " + " ".join(f"{index}:{value:.3f}" for index, value in enumerate(row)) for row in EXPECTED["rows"])
    model = runtime("binary")
    assert invoke(model, libsvm.encode(), "text/libsvm") == LOGISTIC
    assert invoke(model, libsvm.encode(), "text/x-libsvm") == LOGISTIC
    assert invoke(model, libsvm.encode(), None) == LOGISTIC  # no Content-Type: libsvm, as in the image
    from sagemaker.amazon.common import write_numpy_to_dense_tensor

    buffer = io.BytesIO()
    write_numpy_to_dense_tensor(buffer, np.array([[float(f"{v:.3f}") for v in row] for row in EXPECTED["rows"]], np.float32))
    assert invoke(model, buffer.getvalue(), "application/x-recordio-protobuf") == LOGISTIC


def test_csv_fields_as_the_image_reads_them() -> None:
    model = runtime("binary")
    first = ",".join(f"{value:.3f}" for value in EXPECTED["rows"][0])
    assert invoke(model, (first + "\r\n").encode()) == LOGISTIC.split(b"\n")[0] + b"\n"
    assert invoke(model, b"0.5,,1,2\n") == invoke(model, b"0.5,nan,1,2\n")  # an empty field is missing
    assert invoke(model, b"0.5\t0.1\t1\t2\n") == invoke(model, b"0.5,0.1,1,2\n")  # the delimiter is sniffed


def test_an_empty_body_gets_an_empty_answer() -> None:
    assert invoke(runtime("binary"), b"") == b""


# -- selectable inference output ---------------------------------------------------------------


def test_selectable_output_in_every_accept_binary() -> None:
    model = runtime("binary", SAGEMAKER_INFERENCE_OUTPUT="predicted_label, probability,probabilities,raw_scores,labels")
    body = ROWS.split(b"\n")[0]
    assert invoke(model, body, accept="text/csv") == (
        b'0,0.16976827383041382,"[0.8302317261695862, 0.16976827383041382]","[0.8302317261695862, 0.16976827383041382]","[0, 1]"\n'
    )
    document = {
        "predictions": [
            {
                "predicted_label": 0,
                "labels": [0, 1],
                "probability": 0.16976827383041382,
                "probabilities": [0.8302317261695862, 0.16976827383041382],
                "raw_scores": [0.8302317261695862, 0.16976827383041382],
            }
        ]
    }
    assert invoke(model, body, accept="application/json") == json.dumps(document).encode()
    assert invoke(model, body, accept="application/jsonlines") == json.dumps(document["predictions"][0]).encode() + b"\n"
    from sagemaker.amazon.common import read_records

    records = read_records(io.BytesIO(invoke(model, ROWS, accept="application/x-recordio-protobuf")))
    assert len(records) == 5
    assert list(records[0].label["predicted_label"].float32_tensor.values) == [0.0]
    assert list(records[2].label["predicted_label"].float32_tensor.values) == [1.0]
    assert list(records[2].label["labels"].float32_tensor.values) == [0.0, 1.0]
    assert records[4].label["probability"].float32_tensor.values[0] == pytest.approx(EXPECTED["logistic"][4])


def test_recordio_selectable_output_repeats_earlier_records_as_the_image_does() -> None:
    model = runtime("binary", SAGEMAKER_INFERENCE_OUTPUT="predicted_label")
    two = b"\n".join(ROWS.split(b"\n")[:3:2])  # rows 0 and 2: labels 0 and 1
    answer = invoke(model, two, accept="application/x-recordio-protobuf")
    label_0 = b"\x12\x1b\n\x0fpredicted_label\x12\x08\x12\x06\n\x04\x00\x00\x00\x00"
    label_1 = b"\x12\x1b\n\x0fpredicted_label\x12\x08\x12\x06\n\x04\x00\x00\x80?"
    frame_0 = b"\x0a\x23\xd7\xce" + len(label_0).to_bytes(4, "little") + label_0 + b"\0" * (-len(label_0) % 4)
    both = label_0 + label_1
    frame_1 = b"\x0a\x23\xd7\xce" + len(both).to_bytes(4, "little") + both + b"\0" * (-len(both) % 4)
    assert answer == frame_0 + frame_1


def test_selectable_output_multiclass_and_keys_the_objective_lacks() -> None:
    model = runtime("softprob", SAGEMAKER_INFERENCE_OUTPUT="predicted_label,probability,predicted_score,raw_score")
    assert invoke(model, ROWS.split(b"\n")[1], accept="text/csv") == b"1,0.7812404632568359,nan,0.7812404632568359\n"
    assert invoke(model, ROWS.split(b"\n")[1], accept="application/json") == (
        b'{"predictions": [{"predicted_label": 1, "probability": 0.7812404632568359, "raw_score": 0.7812404632568359, '
        b'"predicted_score": NaN}]}'
    )
    regression = runtime("regression", SAGEMAKER_INFERENCE_OUTPUT="predicted_score")
    assert invoke(regression, ROWS.split(b"\n")[0], accept="application/jsonlines") == b'{"predicted_score": -1.8281941413879395}\n'


# -- errors, in the image's words --------------------------------------------------------------


def test_unsupported_content_type_is_415_with_the_images_words() -> None:
    error = refusal(runtime("binary"), b'{"a": 1}', "application/json")
    assert (error.status, error.retryable) == (415, False)
    assert error.message == (
        "application/json is not an accepted ContentType: csv, libsvm, parquet, recordio-protobuf, text/csv, "
        "text/libsvm, text/x-libsvm, application/x-parquet, application/x-recordio-protobuf."
    )
    assert refusal(runtime("binary"), b"1,2", "application/x-parquet").message == "Content-type application/x-parquet is not supported."
    assert "Optional parameter label_size must be equal to 1" in refusal(runtime("binary"), ROWS, "text/csv;label_size=2").message


def test_a_malformed_row_is_415_with_the_images_words() -> None:
    error = refusal(runtime("binary"), b"1,2,3,4\n5,abc,7,8\n")
    assert error.status == 415
    assert error.message.startswith("Loading csv data failed with Exception, please ensure data is in csv format:\n <class 'ValueError'>\n")
    assert "abc" in error.message


def test_a_wrong_feature_count_is_400_for_a_pickled_model() -> None:
    error = refusal(runtime("pickle"), b"1,2\n")
    assert (error.status, error.retryable) == (400, False)
    assert error.message == (
        "Unable to evaluate payload provided: Feature size of csv inference data 2 is not consistent with feature size of trained model 4."
    )
    assert invoke(runtime("pickle"), b"0.5,0.1,1\n")  # one fewer feature is allowed, as in the image


def test_an_unsupported_accept_is_406() -> None:
    error = refusal(runtime("binary"), accept="application/x-npy")
    assert (error.status, error.retryable) == (406, False)
    assert error.message == (
        "Accept type application/x-npy is not supported. Please use supported accept types: "
        "['application/json', 'application/jsonlines', 'application/x-recordio-protobuf', 'text/csv']."
    )


def test_execution_parameters_are_the_images() -> None:
    parameters = runtime("binary").execution_parameters()
    assert (parameters.batch_strategy, parameters.max_payload_mb) == ("MultiRecord", 6)
    assert parameters.max_concurrent_transforms >= 1


# -- which kind runs it --------------------------------------------------------------------------


def target(image: str, model_dir: str | None, **environment: str) -> RuntimeTarget:
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": image, "ModelDataUrl": "s3://b/model.tar.gz"}})
    return RuntimeTarget.for_model(model, [model_dir] if model_dir else [], environment)


def test_the_registry_picks_built_in_xgboost_only_without_user_code(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "binary" / "xgboost-model", tmp_path / "xgboost-model")
    assert kind_for(target(IMAGE, str(tmp_path))).name == "xgboost"
    assert kind_for(target("sagemaker-xgboost:3.0-5", str(tmp_path))).name == "xgboost"
    assert kind_for(target("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1", str(tmp_path))).name == "xgboost"
    assert kind_for(target(IMAGE, str(tmp_path), SAGEMAKER_PROGRAM="inference.py")).name != "xgboost"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    assert kind_for(target(IMAGE, str(tmp_path))).name == "python"


# -- end to end: conveyor transform ---------------------------------------------------------------


def write_model_request(tmp_path: Path, folder: str = "binary", **environment: str) -> Path:
    model_dir = tmp_path / "model"
    shutil.copytree(FIXTURES / folder, model_dir)
    container: dict[str, Any] = {"Image": IMAGE, "ModelDataUrl": str(model_dir)}
    if environment:
        container["Environment"] = environment
    request = tmp_path / "model.json"
    request.write_text(json.dumps({"ModelName": "xgboost-builtin", "PrimaryContainer": container}))
    return request


def test_conveyor_transform_runs_built_in_xgboost(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_bytes(ROWS)
    result = conveyor(
        "transform", "--model-request", str(write_model_request(tmp_path)), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--content-type", "text/csv", "--split-type", "Line",
        "--assemble-with", "Line", "--quiet", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "rows.csv.out").read_bytes() == LOGISTIC


def test_the_developer_guides_data_processing_example(tmp_path: Path) -> None:
    """InputFilter `$[1:]` drops the id column, JoinSource Input appends the prediction to the
    input row, OutputFilter `$[0,-1]` keeps the id and the prediction."""
    (tmp_path / "in").mkdir()
    lines = [f"id{index}," + ",".join(f"{value:.3f}" for value in row) for index, row in enumerate(EXPECTED["rows"])]
    (tmp_path / "in" / "rows.csv").write_text("\n".join(lines) + "\n")
    result = conveyor(
        "transform", "--model-request", str(write_model_request(tmp_path)), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--content-type", "text/csv", "--split-type", "Line",
        "--accept", "text/csv", "--assemble-with", "Line", "--input-filter", "$[1:]", "--join-source", "Input",
        "--output-filter", "$[0,-1]", "--quiet", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = [f"id{index},{line.decode()}" for index, line in enumerate(LOGISTIC.split())]
    assert (tmp_path / "out" / "rows.csv.out").read_text().splitlines() == expected


def test_a_failed_payload_fails_the_job_with_the_images_words(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.json").write_text('{"a": 1}\n')
    result = conveyor(
        "transform", "--model-request", str(write_model_request(tmp_path)), "--input", str(tmp_path / "in"),
        "--output", str(tmp_path / "out"), "--content-type", "application/json", "--quiet", home=tmp_path / "home",
    )  # fmt: skip
    assert result.returncode != 0
    assert "application/json is not an accepted ContentType" in result.stdout + result.stderr
