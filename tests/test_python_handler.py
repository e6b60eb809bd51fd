"""The in-process Python runtime, driven through real handler modules written to tmp_path."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import sys
import textwrap
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from conveyor.runtimes.base import ExecutionParameters, InvocationError, RuntimeStartError
from conveyor.runtimes.python_handler import PythonHandlerRuntime

MakeModel = Callable[..., str]


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    counter = iter(range(1000))

    def make(source: str, *, files: dict[str, str] | None = None, program: str = "inference.py") -> str:
        model_dir = tmp_path / f"model{next(counter)}"
        code = model_dir / "code"
        code.mkdir(parents=True)
        (code / program).write_text(textwrap.dedent(source))
        for name, text in (files or {}).items():
            (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (model_dir / name).write_text(textwrap.dedent(text))
        return str(model_dir)

    return make


@pytest.fixture
def started() -> Iterator[Callable[..., PythonHandlerRuntime]]:
    runtimes: list[PythonHandlerRuntime] = []

    def start(model_dir: str, environment: dict[str, str] | None = None) -> PythonHandlerRuntime:
        runtime = PythonHandlerRuntime(model_dir, environment or {})
        runtimes.append(runtime)
        runtime.start()
        return runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def call(runtime: PythonHandlerRuntime, payload: bytes, content_type: str | None = "text/csv", accept: str | None = None) -> bytes:
    return runtime.invoke(payload, content_type=content_type, accept=accept, timeout=60)


# -- loading -------------------------------------------------------------------------------


def test_model_fn_without_context_and_transform_fn(make_model, started):
    model_dir = make_model(
        """
        def model_fn(model_dir):
            return {"dir": model_dir}

        def transform_fn(model, input_data, content_type, accept):
            return f"{type(input_data).__name__}|{input_data!s}|{content_type}|{accept}|{model['dir']}"
        """
    )
    runtime = started(model_dir)
    assert call(runtime, b"1,2\n", "text/csv", "text/csv") == f"str|1,2\n|text/csv|text/csv|{model_dir}".encode()
    # JSON and CSV arrive as str (the toolkit decodes them); other types as bytes
    assert call(runtime, b"\x00\x01", "application/x-npy", "application/json").startswith(b"bytes|b'\\x00\\x01'|application/x-npy")


def test_model_fn_with_context_and_context_everywhere(make_model, started):
    model_dir = make_model(
        """
        def model_fn(model_dir, context):
            return dict(context.system_properties)

        def input_fn(input_data, content_type, context):
            return [input_data, context.request_processor[0].get_request_properties()]

        def predict_fn(data, model, context):
            return data + [model["model_dir"], model["gpu_id"], context.get_request_header(0, "Accept")]

        def output_fn(prediction, accept, context):
            return repr(prediction)
        """
    )
    runtime = started(model_dir)
    body = call(runtime, b"[1]", "application/json", "text/csv").decode()
    assert body == repr(["[1]", {"Accept": "text/csv", "Content-Type": "application/json"}, model_dir, None, "text/csv"])


def test_optional_context_parameter_and_keyword_only_parameters(make_model, started):
    model_dir = make_model(
        """
        def model_fn(model_dir, context=None):
            return context is not None

        def transform_fn(model, input_data, content_type, accept, *, extra="x"):
            return f"{model}-{extra}"
        """
    )
    assert call(started(model_dir), b"x", "text/plain") == b"True-x"


def test_loading_sequence_pre_model_fn_and_warmup(make_model, started):
    model_dir = make_model(
        """
        EVENTS = []

        def pre_model_fn(model_dir):
            EVENTS.append("pre")

        def model_fn(model_dir):
            EVENTS.append("model")
            return EVENTS

        def model_warmup_fn(model_dir, model):
            model.append("warmup")

        def transform_fn(model, input_data, content_type, accept):
            return ",".join(model)
        """
    )
    assert call(started(model_dir), b"") == b"pre,model,warmup"


def test_helper_module_beside_inference_py_is_importable(make_model, started):
    model_dir = make_model(
        """
        from helper_for_handler_test import double

        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return str(double(int(input_data)))
        """,
        files={"code/helper_for_handler_test.py": "def double(x):\n    return 2 * x\n"},
    )
    runtime = started(model_dir)
    assert call(runtime, b"21") == b"42"
    runtime.close()
    assert os.path.join(model_dir, "code") not in sys.path
    sys.modules.pop("helper_for_handler_test", None)


def test_sagemaker_program_names_the_handler_file(make_model, started):
    model_dir = make_model(
        """
        def model_fn(model_dir):
            return "serve.py"

        def transform_fn(model, input_data, content_type, accept):
            return model
        """,
        program="serve.py",
    )
    assert call(started(model_dir, {"SAGEMAKER_PROGRAM": "serve.py"}), b"") == b"serve.py"


def test_code_dir_outside_the_model_directory(tmp_path):
    code = tmp_path / "elsewhere"
    code.mkdir()
    (code / "inference.py").write_text("def model_fn(d):\n    return d\ndef transform_fn(m, d, c, a):\n    return m\n")
    (tmp_path / "model").mkdir()
    runtime = PythonHandlerRuntime(str(tmp_path / "model"), {}, code_dir=str(code))
    runtime.start()
    try:
        assert call(runtime, b"") == str(tmp_path / "model").encode()
    finally:
        runtime.close()


def test_environment_is_visible_when_inference_py_is_imported(make_model, started, monkeypatch):
    monkeypatch.delenv("CONVEYOR_TEST_IMPORT_VAR", raising=False)
    model_dir = make_model(
        """
        import os
        AT_IMPORT = os.environ["CONVEYOR_TEST_IMPORT_VAR"] + "/" + os.environ["SAGEMAKER_BATCH"]

        def model_fn(model_dir):
            return AT_IMPORT

        def transform_fn(model, input_data, content_type, accept):
            return model
        """
    )
    runtime = started(model_dir, {"CONVEYOR_TEST_IMPORT_VAR": "seen", "SAGEMAKER_BATCH": "true"})
    assert call(runtime, b"") == b"seen/true"
    runtime.close()
    assert "CONVEYOR_TEST_IMPORT_VAR" not in os.environ  # close() restores what it replaced


def test_two_models_in_one_process_do_not_share_module_state(make_model, started):
    source = """
        NAME = {name!r}
        CALLS = []

        def model_fn(model_dir):
            return NAME

        def transform_fn(model, input_data, content_type, accept):
            CALLS.append(input_data)
            return f"{{model}}:{{NAME}}:{{len(CALLS)}}"
        """
    first = started(make_model(source.format(name="first")))
    second = started(make_model(source.format(name="second")))
    assert call(first, b"a") == b"first:first:1"
    assert call(first, b"b") == b"first:first:2"
    assert call(second, b"c") == b"second:second:1"
    assert first.module is not second.module
    assert first.module.__name__ != second.module.__name__
    assert first.module.__name__ in sys.modules


def test_classes_defined_in_the_handler_pickle(make_model, started):
    model_dir = make_model(
        """
        import pickle
        from dataclasses import dataclass

        @dataclass
        class Scaler:
            factor: float

        def model_fn(model_dir):
            return pickle.loads(pickle.dumps(Scaler(3.0)))

        def transform_fn(model, input_data, content_type, accept):
            return str(model.factor * float(input_data))
        """
    )
    assert call(started(model_dir), b"2") == b"6.0"


# -- start failures ------------------------------------------------------------------------


def test_model_directory_without_inference_py(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"")
    with pytest.raises(RuntimeStartError, match=r"has no code/inference\.py.*model_fn\(model_dir\)"):
        PythonHandlerRuntime(str(tmp_path), {}).start()


def test_module_that_fails_to_import(make_model):
    model_dir = make_model(
        """
        import os

        raise ImportError("no module named 'torchvision_missing'")
        """
    )
    runtime = PythonHandlerRuntime(model_dir, {})
    with pytest.raises(RuntimeStartError) as caught:
        runtime.start()
    message = str(caught.value)
    assert "inference.py failed" in message and model_dir in message
    assert "ImportError: no module named 'torchvision_missing' (code/inference.py, line 4, in <module>)" in message
    assert not any(name.startswith("conveyor_handler_") and getattr(module, "__file__", "") == runtime.handler_path for name, module in sys.modules.items())


def test_module_with_a_syntax_error(make_model):
    with pytest.raises(RuntimeStartError, match=r"inference\.py failed: SyntaxError: .*\(inference\.py, line 2\)"):
        PythonHandlerRuntime(make_model("def model_fn(model_dir):\n    return (1\n"), {}).start()


def test_model_fn_that_raises(make_model):
    model_dir = make_model(
        """
        def model_fn(model_dir):
            raise FileNotFoundError("model.pkl")
        """
    )
    with pytest.raises(RuntimeStartError, match=r"model_fn in .*inference\.py failed: FileNotFoundError: model\.pkl \(code/inference\.py, line 3, in model_fn\)"):
        PythonHandlerRuntime(model_dir, {}).start()


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("x = 1\n", r"defines no model_fn"),
        (
            "def model_fn(d):\n    return 1\ndef transform_fn(m, d, c, a):\n    return b''\ndef input_fn(d, c):\n    return d\n",
            r"transform_fn together with input_fn",
        ),
        ("def model_fn(d):\n    return 1\ndef predict_fn(a, b, c, d):\n    return a\n", r"predict_fn in .* takes 4 positional parameters; expected predict_fn\(data, model\) or predict_fn\(data, model, context\)"),
        ("def model_fn(d):\n    return object()\n", r"no predict_fn and model_fn returned a object without a predict method"),
        ("def model_fn(d):\n    return 1\ninput_fn = 5\n", r"input_fn in .* is a int, not a function"),
    ],
)
def test_handler_module_contract_violations(make_model, source, match):
    with pytest.raises(RuntimeStartError, match=match):
        PythonHandlerRuntime(make_model(source), {}).start()


# -- invocation: the chain and the defaults --------------------------------------------------

SKLEARN_LIKE = """
    import numpy as np

    class Model:
        def predict(self, data):
            assert data.ndim == 2, data.shape
            return data.sum(axis=1)

    def model_fn(model_dir):
        return Model()
    """


def test_defaults_csv_in_json_out(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    assert json.loads(call(runtime, b"1,2\n3,4.5\n", "text/csv", "application/json")) == [3.0, 7.5]
    # no Accept, or */*: the toolkit's default accept, application/json
    assert json.loads(call(runtime, b"1,2,3", "text/csv", None)) == [6.0]
    assert json.loads(call(runtime, b"1,2,3", "text/csv", "*/*")) == [6.0]


def test_defaults_csv_out_one_row_per_line(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return None

            def predict_fn(data, model):
                return data * 2
            """
        )
    )
    assert call(runtime, b"1,2\n3,4\n", "text/csv", "text/csv") == b"2.0,4.0\n6.0,8.0\n"
    assert call(runtime, b"[[1, 2], [3, 4]]", "application/json", "text/csv") == b"2,4\n6,8\n"  # JSON keeps its ints
    # an Accept list: the first type with an encoder is used
    assert call(runtime, b"5", "text/csv", "image/png, text/csv") == b"10.0\n"


def test_default_accept_comes_from_the_environment(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE), {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    assert call(runtime, b"1,2\n3,4\n", "text/csv", None) == b"3.0\n7.0\n"


def test_defaults_npy_round_trip(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return None

            def predict_fn(data, model):
                return data.T
            """
        )
    )
    array = np.arange(6, dtype=np.int16).reshape(2, 3)
    buffer = io.BytesIO()
    np.save(buffer, array)
    body = call(runtime, buffer.getvalue(), "application/x-npy", "application/x-npy")
    result = np.load(io.BytesIO(body))
    assert result.dtype == np.int16  # npy input keeps its dtype
    np.testing.assert_array_equal(result, array.T)


def test_defaults_jsonlines_both_ways(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return None

            def predict_fn(data, model):
                return data
            """
        )
    )
    assert call(runtime, b"[1, 2]\n\n[3, 4]\n", "application/jsonlines", "application/jsonlines") == b"[1, 2]\n[3, 4]\n"
    assert call(runtime, b'{"a": 1}\n{"a": 2}\n', "application/jsonlines", "application/jsonlines") == b'{"a": 1}\n{"a": 2}\n'


def test_media_type_parameters_are_ignored_by_the_default_codecs(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    assert json.loads(call(runtime, b"1,2", "text/csv; charset=utf-8", "application/json; charset=utf-8")) == [3.0]


def test_missing_content_type_with_default_input_fn_is_not_retried(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    with pytest.raises(InvocationError) as caught:
        call(runtime, b"1,2", None, "application/json")
    assert caught.value.retryable is False and caught.value.status == 415
    assert "Content type None is not supported" in caught.value.message and "input_fn" in caught.value.message


def test_missing_content_type_reaches_the_handler_as_none_with_bytes(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return None

            def input_fn(input_data, content_type):
                return (type(input_data).__name__, content_type)

            def predict_fn(data, model):
                return data

            def output_fn(prediction, accept):
                return f"{prediction} {accept}"
            """
        )
    )
    assert call(runtime, b"x", None, None) == b"('bytes', None) application/json"


def test_unsupported_accept_is_not_retried(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    with pytest.raises(InvocationError) as caught:
        call(runtime, b"1,2", "text/csv", "image/png")
    assert caught.value.retryable is False and caught.value.status == 415


def test_invalid_utf8_text_payload_is_not_retried(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    with pytest.raises(InvocationError, match="not valid UTF-8") as caught:
        call(runtime, b"\xff\xfe1,2", "text/csv", "application/json")
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("returned", "accept", "expected"),
    [
        ("'text'", "text/csv", b"text"),
        ("b'raw'", "text/csv", b"raw"),
        ("bytearray(b'raw')", "text/csv", b"raw"),
        ("('body', 'text/plain')", "text/csv", b"body"),
        ("np.array([1, 2])", "application/json", b"[1, 2]"),
        ("np.array([1, 2])", "text/csv", b"1\n2\n"),
        ("{'k': np.float32(0.5)}", "application/json", b'{"k": 0.5}'),
        ("np.float64(2.5)", "text/csv", b"2.5\n"),
    ],
)
def test_what_output_fn_may_return(make_model, started, returned, accept, expected):
    runtime = started(
        make_model(
            f"""
            import numpy as np

            def model_fn(model_dir):
                return None

            def input_fn(input_data, content_type):
                return input_data

            def predict_fn(data, model):
                return data

            def output_fn(prediction, accept):
                return {returned}
            """
        )
    )
    assert call(runtime, b"", "text/csv", accept) == expected


def test_handler_exception_becomes_a_retryable_invocation_error(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return None

            def input_fn(input_data, content_type):
                return input_data

            def predict_fn(data, model):
                values = data.split(",")
                return int(values[5])
            """
        )
    )
    with pytest.raises(InvocationError) as caught:
        call(runtime, b"1,2", "text/csv", "application/json")
    assert caught.value.retryable is True and caught.value.status == 500
    assert caught.value.message == "IndexError: list index out of range (code/inference.py, line 10, in predict_fn)"
    assert isinstance(caught.value.__cause__, IndexError)


def test_exception_inside_a_helper_module_points_at_the_helper(make_model, started):
    runtime = started(
        make_model(
            """
            import helper_raising_for_test

            def model_fn(model_dir):
                return None

            def transform_fn(model, input_data, content_type, accept):
                return helper_raising_for_test.fail()
            """,
            files={"code/helper_raising_for_test.py": "def fail():\n    raise KeyError('column')\n"},
        )
    )
    with pytest.raises(InvocationError, match=r"^KeyError: 'column' \(code/helper_raising_for_test\.py, line 2, in fail\)$"):
        call(runtime, b"")
    sys.modules.pop("helper_raising_for_test", None)


def test_execution_parameters_fn(make_model, started):
    runtime = started(
        make_model(
            """
            import json

            def model_fn(model_dir):
                return None

            def transform_fn(model, input_data, content_type, accept):
                return input_data

            def execution_parameters_fn():
                return json.dumps({"MaxConcurrentTransforms": 4, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 2})
            """
        )
    )
    assert runtime.execution_parameters() == ExecutionParameters(4, "SingleRecord", 2)
    assert started(make_model(SKLEARN_LIKE)).execution_parameters() == ExecutionParameters()


def test_concurrent_invocations_share_one_model(make_model, started):
    runtime = started(
        make_model(
            """
            def model_fn(model_dir):
                return 1000

            def input_fn(input_data, content_type, context):
                return int(input_data), context.get_request_header(0, "Accept")

            def predict_fn(data, model):
                return data[0] + model, data[1]

            def output_fn(prediction, accept):
                assert prediction[1] == accept
                return f"{prediction[0]}|{accept}"
            """
        )
    )
    failures: list[str] = []

    def worker(offset: int) -> None:
        for number in range(offset, offset + 300):
            accept = f"application/x-{number}"
            body = call(runtime, str(number).encode(), "text/plain", accept)
            if body != f"{number + 1000}|{accept}".encode():
                failures.append(body.decode())

    threads = [threading.Thread(target=worker, args=(offset * 1000,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_real_scikit_learn_model_with_the_default_chain(make_model, started):
    from sklearn.cluster import KMeans

    points = np.array([[0.0, 0.0], [0.1, 0.2], [10.0, 10.0], [10.2, 9.9]])
    model = KMeans(n_clusters=2, n_init=1, random_state=0).fit(points)
    model_dir = make_model(
        """
        import os
        import pickle

        def model_fn(model_dir):
            with open(os.path.join(model_dir, "model.pkl"), "rb") as file:
                return pickle.load(file)
        """
    )
    Path(model_dir, "model.pkl").write_bytes(pickle.dumps(model))
    runtime = started(model_dir)
    near_zero, near_ten = model.predict(np.array([[0.0, 0.1], [9.9, 10.0]]))
    assert call(runtime, b"0,0.1\n9.9,10\n", "text/csv", "text/csv") == f"{near_zero}\n{near_ten}\n".encode()
    # SingleRecord: one CSV line is one row
    assert call(runtime, b"9.9,10", "text/csv", "application/json") == f"[{near_ten}]".encode()


def test_invoke_before_start_is_a_programming_error(tmp_path):
    with pytest.raises(RuntimeError, match="before start"):
        PythonHandlerRuntime(str(tmp_path), {}).invoke(b"", content_type=None, accept=None, timeout=1)


@pytest.mark.parametrize("payload", [101, -1, "6"])
def test_execution_parameters_fn_is_held_to_sagemakers_range(make_model, started, payload):
    model = make_model(
        f"""
        def model_fn(model_dir):
            return None

        def transform_fn(model, input_data, content_type, accept):
            return input_data

        def execution_parameters_fn():
            return {{"MaxPayloadInMB": {payload!r}}}
        """
    )
    with pytest.raises(RuntimeStartError, match=rf"MaxPayloadInMB must be an integer from 0 to 100, got {re.escape(repr(payload))}"):
        started(model).execution_parameters()


RETURNS_WHAT_IT_IS_TOLD = """
import json

def model_fn(model_dir):
    return None

def input_fn(input_data, content_type):
    return input_data

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    return {"42": 42, "dict": {"a": 1}, "None": None, "text": "plain", "bytes": b"raw"}[prediction.decode().strip()]
"""


@pytest.mark.parametrize(
    ("returned", "accept", "body"),
    [("text", "text/csv", b"plain"), ("bytes", "text/csv", b"raw"), ("dict", "application/json", b'{"a": 1}'), ("42", "text/csv", b"42\n")],
)
def test_output_fn_results_follow_the_toolkits_contract(make_model, started, returned, accept, body):
    runtime = started(make_model(RETURNS_WHAT_IT_IS_TOLD))
    assert call(runtime, returned.encode(), content_type="text/plain", accept=accept) == body


@pytest.mark.parametrize(
    ("returned", "accept", "message"),
    [
        ("dict", "text/csv", "output_fn returned a dict, which cannot be encoded as text/csv"),
        ("None", "application/json", "output_fn returned a NoneType, which cannot be encoded as application/json"),
        ("42", "text/plain", "output_fn returned a int, which cannot be encoded as text/plain (there is no default encoder for it)"),
    ],
)
def test_an_output_fn_result_that_cannot_be_encoded_fails_the_payload(make_model, started, returned, accept, message):
    runtime = started(make_model(RETURNS_WHAT_IT_IS_TOLD))
    with pytest.raises(InvocationError) as failure:
        call(runtime, returned.encode(), content_type="text/plain", accept=accept)
    assert failure.value.message.startswith(message) and not failure.value.retryable


def test_a_transform_fn_returning_nothing_is_named(make_model, started):
    runtime = started(make_model("def model_fn(model_dir):\n    return None\n\ndef transform_fn(model, data, content_type, accept):\n    pass\n"))
    with pytest.raises(InvocationError, match=r"^transform_fn returned a NoneType, which cannot be encoded as text/csv"):
        call(runtime, b"1", accept="text/csv")


def test_gzip_data_sent_as_text_says_to_set_the_compression_type(make_model, started):
    runtime = started(make_model(SKLEARN_LIKE))
    with pytest.raises(InvocationError) as failure:
        call(runtime, gzip.compress(b"1,2\n"), content_type="text/csv")
    assert "gzip-compressed" in failure.value.message and "set CompressionType Gzip (--compression Gzip)" in failure.value.message
    assert not failure.value.retryable
