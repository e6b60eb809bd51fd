"""The in-process Python runtime: runs a SageMaker inference handler (`code/inference.py`).

The handler contract is that of the SageMaker inference toolkit (sagemaker-inference 1.10), as
the scikit-learn and PyTorch serving containers use it (docs/semantics.md, decision 19):
`model_fn(model_dir[, context])`, then per request either
`transform_fn(model, input_data, content_type, accept[, context])` or
`input_fn(input_data, content_type[, context])` -> `predict_fn(data, model[, context])` ->
`output_fn(prediction, accept[, context])`, each missing one replaced by a default.

One instance is one process that imports one model's handler; `invoke()` runs on up to
MaxConcurrentTransforms threads sharing the one loaded model, so nothing here mutates shared
state per call. `invoke()` cannot stop a handler at its timeout (`enforces_timeout = False`):
the instance's watchdog restarts the process instead. With CONVEYOR_DECODE_WORKERS, input_fn
and output_fn run in worker processes (`runtimes.decode_pool`; docs/models.md, "Parallel decode").
A handler that declares BATCH_SIZE has its decoded inputs gathered across invocations into
calls of its predict_batch_fn (`runtimes.batcher`; docs/models.md, "Cross-record batching").
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import json
import os
import re
import sys
import threading
import traceback
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any, Callable

from conveyor.runtimes import codecs
from conveyor.runtimes.base import ExecutionParameters, InvocationError, Runtime, RuntimeStartError
from conveyor.runtimes.batcher import DEFAULT_TIMEOUT_SECONDS as DEFAULT_BATCH_TIMEOUT
from conveyor.runtimes.batcher import Batcher
from conveyor.runtimes.decode_pool import INPUT_FN, OUTPUT_FN, DecodePool, WorkerSetup
from conveyor.runtimes.handler_code import PROGRAM_VARIABLE, program
from conveyor.runtimes.toolkit_defaults import CONVEYOR, ToolkitDefaults, model_predict

DEFAULT_ACCEPT_VARIABLE = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
"""The Accept used when a request has none or `*/*` (the toolkit's variable)."""
MAX_BATCH_SIZE = 4096
DECODE_GROUP = 64
"""Payloads handed to the decode workers together, without BATCH_SIZE (an object's short
records, or small objects of one payload each): they share the workers' trips, and a thread is
not woken for each payload's two stages (docs/models.md, "Parallel decode")."""
DECODE_GROUP_BYTES = 1 << 20
"""A group of an object's payloads is handed over once it holds this much, so that long
payloads (MultiRecord's) still go one by one."""

_module_numbers = itertools.count(1)
Stage = Callable[[Any, str | None, str], Any]
"""One handler step bound to its function: (value, content type, accept) → its result."""


class RequestProcessor:
    """One request's headers, as the model server shows them in `context.request_processor[0]`."""

    __slots__ = ("_headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers

    def get_request_property(self, key: str) -> str | None:
        return self._headers.get(key)


class Context:
    """The `context` a handler function receives when its signature asks for one.

    A small subset of the model server's: `system_properties` (model_dir, gpu_id, batch_size,
    server_name) and the request's Content-Type and Accept headers; nothing to set responses."""

    __slots__ = ("system_properties", "request_processor")

    def __init__(self, system_properties: dict[str, Any], headers: dict[str, str]) -> None:
        self.system_properties = system_properties
        self.request_processor = [RequestProcessor(headers)]

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_request_properties()


GZIP_MAGIC = b"\x1f\x8b"


def _not_text(content_type: str, payload: bytes, error: UnicodeDecodeError) -> str:
    """Why a JSON or CSV payload is no text; gzip data sent as-is is named, with the fix."""
    if bytes(payload[:2]) == GZIP_MAGIC:
        return (
            f"the {content_type} payload is gzip-compressed (it starts with gzip's magic bytes 1f 8b): "
            "set CompressionType Gzip (--compression Gzip) so that Conveyor decompresses the input"
        )
    return f"the {content_type} payload is not valid UTF-8: {error}"


# -- the runtime ---------------------------------------------------------------------------


class PythonHandlerRuntime(Runtime):
    """Loads `code/inference.py` of a model directory and calls it in this process."""

    enforces_timeout = False

    def __init__(
        self,
        model_dir: str,
        environment: dict[str, str],
        *,
        code_dir: str | None = None,
        packages_dir: str | None = None,
        defaults: ToolkitDefaults = CONVEYOR,
        decode_workers: int | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.code_dir = code_dir if code_dir is not None else os.path.join(model_dir, "code")
        self.packages_dir = packages_dir  # the handler's requirements.txt, installed; ahead on sys.path
        self.defaults = defaults
        self.decode_workers = decode_workers  # CONVEYOR_DECODE_WORKERS, consumed before the environment
        self.handler_path: str | None = None
        self.module: ModuleType | None = None
        self.model: Any = None
        self._handle: Stage | None = None
        self._decode: Stage | None = None
        self._predict: Stage | None = None
        self._encode: Stage | None = None
        self._pool: DecodePool | None = None
        self._batcher: Batcher | None = None  # the handler declares BATCH_SIZE and predict_batch_fn
        self._predicting: AbstractContextManager[Any] = nullcontext()  # at most MaxConcurrentTransforms predict_fn at once
        self._default_accept = codecs.JSON
        self._system_properties: dict[str, Any] = {}
        self._path_entries: list[str] = []
        self._replaced_environment: dict[str, str | None] = {}
        self._answering = "output_fn"  # the handler function whose result is the response

    # start -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._handle is not None:
            return
        path = self._set_up()
        name = f"conveyor_handler_{next(_module_numbers)}_{_stem(path)}"  # never shared by two models
        try:
            if self.decode_workers:  # they start while the model loads
                setup = WorkerSetup(self.model_dir, self.code_dir, self.packages_dir, self.environment, self.defaults, name)
                self._pool = DecodePool(self.decode_workers, setup)
                self._pool.launch()
            self.module = self._import(path, name)
            self.model = self._load_model()
            self._handle = self._resolve_chain()
            self._batcher = self._resolve_batcher()
            if self._pool is not None:
                self._join_pool()
        except BaseException:
            self.close()
            raise

    def start_codec(self, module_name: str) -> None:
        """What a decode worker runs (`runtimes.decode_pool`): the handler imported as the
        instance did, under the instance's `module_name`, with input_fn and output_fn bound; no
        model is loaded."""
        path = self._set_up()
        try:
            self.module = self._import(path, module_name)
            self._resolve_stages()
        except BaseException:
            self.close()
            raise

    def _set_up(self) -> str:
        """Find the handler and set the model's Environment (before the import: the handler may
        read it); the handler's path."""
        path = os.path.join(self.code_dir, program(self.environment if PROGRAM_VARIABLE in self.environment else os.environ))
        if not os.path.isfile(path):
            raise RuntimeStartError(
                f"model directory {self.model_dir} has no {self._shown(path)}: the Python runtime expects a "
                "SageMaker inference handler there, a module defining model_fn(model_dir) and optionally "
                "input_fn/predict_fn/output_fn or transform_fn"
            )
        self.handler_path = os.path.realpath(path)
        for key, value in self.environment.items():
            self._replaced_environment.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self._default_accept = os.environ.get(DEFAULT_ACCEPT_VARIABLE) or codecs.JSON
        self._system_properties = {
            "model_dir": self.model_dir,
            "gpu_id": 0 if self.environment.get("CUDA_VISIBLE_DEVICES") else None,  # devices number from 0 under it
            "batch_size": 1,
            "server_name": "conveyor",
        }
        return path

    def _join_pool(self) -> None:
        """Wait for the decode workers; a transform_fn cannot be split, so there the setting is
        ignored, with one line in the job log."""
        assert self._pool is not None
        if self._decode is None:
            from conveyor.sagemaker.extensions import DECODE_WORKERS  # here: a decode worker needs no botocore

            self._pool.close()
            self._pool = None
            print(
                f"{DECODE_WORKERS}={self.decode_workers} is ignored: {self._shown(self.handler_path or '')} defines "
                "transform_fn, which cannot be split into input_fn, predict_fn and output_fn; it runs whole in the instance"
            )
            return
        self._pool.wait_ready()

    def _import(self, path: str, name: str) -> ModuleType:
        # The model's installed requirements go ahead of Conveyor's packages, so its pins win for
        # its imports; helper modules beside the handler import as in SageMaker.
        for entry in (self.packages_dir, os.path.dirname(path)):
            if entry is not None and entry not in sys.path:
                sys.path.insert(0, entry)
                self._path_entries.append(entry)
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise RuntimeStartError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # pickle and dataclasses look classes up by module name
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(name, None)
            raise RuntimeStartError(f"importing {path} failed: {self._describe(exc)}") from exc
        return module

    def _function(self, name: str) -> Callable[..., Any] | None:
        function = getattr(self.module, name, None)
        if function is not None and not callable(function):
            raise RuntimeStartError(f"{name} in {self.handler_path} is a {type(function).__name__}, not a function")
        return function

    def _takes_context(self, function: Callable[..., Any], name: str, parameters: tuple[str, ...]) -> bool:
        """Whether `function` wants a trailing `context`, judged by its signature (as the toolkit)."""
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature: call it plainly
            return False
        positional = [
            p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        has_var_positional = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
        if len(positional) == len(parameters) + 1:
            return True
        if len(positional) == len(parameters) or (has_var_positional and len(positional) < len(parameters)):
            return False
        expected = ", ".join(parameters)
        raise RuntimeStartError(
            f"{name} in {self.handler_path} takes {len(positional)} positional parameters; "
            f"expected {name}({expected}) or {name}({expected}, context)"
        )

    def _load_model(self) -> Any:
        """pre_model_fn, model_fn, model_warmup_fn: the toolkit's loading sequence."""
        self._run_loader("pre_model_fn", self.model_dir)
        if self._function("model_fn") is not None:
            model = self._run_loader("model_fn", self.model_dir)
        elif self.defaults.model_fn is not None:
            try:
                model = self.defaults.model_fn(self.model_dir)
            except Exception as exc:
                raise RuntimeStartError(f"the {self.defaults.name} default model_fn failed: {self._describe(exc)}") from exc
        elif self.defaults is CONVEYOR:
            raise RuntimeStartError(f"{self.handler_path} {self.defaults.missing_model_fn}")
        else:
            raise RuntimeStartError(
                f"{self.handler_path} defines no model_fn and the {self.defaults.name} container has no default: "
                f"{self.defaults.missing_model_fn}"
            )
        self._run_loader("model_warmup_fn", self.model_dir, model)
        return model

    def _run_loader(self, name: str, *arguments: Any) -> Any:
        function = self._function(name)
        if function is None:
            return None
        parameters = ("model_dir", "model")[: len(arguments)]
        takes_context = self._takes_context(function, name, parameters)
        try:
            if takes_context:
                return function(*arguments, Context(self._system_properties, {}))
            return function(*arguments)
        except (Exception, SystemExit) as exc:
            raise RuntimeStartError(f"{name} in {self.handler_path} failed: {self._describe(exc)}") from exc

    def _resolve_chain(self) -> Stage:
        """Bind the request path once, so a call does no look-ups and no signature checks."""
        model = self.model
        transform_fn = self._function("transform_fn")
        input_fn, predict_fn, output_fn = (self._function(n) for n in ("input_fn", "predict_fn", "output_fn"))
        if transform_fn is not None:
            self._answering = "transform_fn"
            if input_fn or predict_fn or output_fn:
                raise RuntimeStartError(
                    f"{self.handler_path} defines transform_fn together with input_fn, predict_fn or output_fn; "
                    "define either transform_fn or those (as the SageMaker inference toolkit requires)"
                )
            if self._takes_context(transform_fn, "transform_fn", ("model", "input_data", "content_type", "accept")):
                context = self._request_context
                return lambda data, content_type, accept: transform_fn(
                    model, data, content_type, accept, context(content_type, accept)
                )
            return lambda data, content_type, accept: transform_fn(model, data, content_type, accept)

        batching = getattr(self.module, "BATCH_SIZE", None) is not None  # predict_batch_fn predicts (_resolve_batcher)
        if predict_fn is None and not batching and self.defaults.predict_fn is model_predict and not callable(getattr(model, "predict", None)):
            raise RuntimeStartError(
                f"{self.handler_path} defines no predict_fn and model_fn returned a {type(model).__name__} "
                "without a predict method; define predict_fn(data, model) or transform_fn"
            )
        decode, encode = self._resolve_stages()
        predict = self._predict = self._bind(predict_fn or self.defaults.predict_fn, "predict_fn", ("data", "model"), model)
        return lambda data, content_type, accept: encode(predict(decode(data, content_type, accept), content_type, accept), content_type, accept)

    def _resolve_batcher(self) -> Batcher | None:
        """Cross-record batching, when the handler declares BATCH_SIZE (docs/models.md)."""
        size = getattr(self.module, "BATCH_SIZE", None)
        if size is None:
            return None
        where = self.handler_path
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise RuntimeStartError(f"BATCH_SIZE in {where} is {size!r}; it must be a whole number from 1 to {MAX_BATCH_SIZE}")
        timeout = getattr(self.module, "BATCH_TIMEOUT", DEFAULT_BATCH_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 60:
            raise RuntimeStartError(f"BATCH_TIMEOUT in {where} is {timeout!r}; it must be a number of seconds from 0 to 60")
        if self._function("transform_fn") is not None:
            raise RuntimeStartError(
                f"{where} declares BATCH_SIZE = {size} and defines transform_fn, which cannot be batched: define "
                "input_fn, predict_batch_fn and output_fn instead, or remove BATCH_SIZE"
            )
        predict_batch_fn = self._function("predict_batch_fn")
        if predict_batch_fn is None:
            raise RuntimeStartError(
                f"{where} declares BATCH_SIZE = {size} but defines no predict_batch_fn(inputs, model); define it (it takes "
                "a list of what input_fn returned and returns one prediction per input), or remove BATCH_SIZE"
            )
        model = self.model
        self._system_properties["batch_size"] = size
        return Batcher(lambda inputs: predict_batch_fn(inputs, model), size, float(timeout), self._describe)

    def _resolve_stages(self) -> tuple[Stage, Stage]:
        """input_fn and output_fn (or the toolkit's defaults), bound: what a decode worker runs."""
        decode = self._decode = self._bind(self._function("input_fn") or self.defaults.input_fn, "input_fn", ("input_data", "content_type"))
        encode = self._encode = self._bind(self._function("output_fn") or self.defaults.output_fn, "output_fn", ("prediction", "accept"))
        return decode, encode

    def _bind(self, function: Callable[..., Any], name: str, parameters: tuple[str, ...], model: Any = None) -> Stage:
        """`function` as a Stage: its second argument the content type (input_fn), the model
        (predict_fn) or the accept type (output_fn), and a context when its signature asks."""
        context = self._request_context if self._takes_context(function, name, parameters) else None
        if name == "input_fn":
            if context is None:
                return lambda value, content_type, accept: function(value, content_type)
            return lambda value, content_type, accept: function(value, content_type, context(content_type, accept))
        if name == "predict_fn":
            if context is None:
                return lambda value, content_type, accept: function(value, model)
            return lambda value, content_type, accept: function(value, model, context(content_type, accept))
        if context is None:
            return lambda value, content_type, accept: function(value, accept)
        return lambda value, content_type, accept: function(value, accept, context(content_type, accept))

    def _request_context(self, content_type: str | None, accept: str) -> Context:
        headers = {"Accept": accept}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return Context(self._system_properties, headers)

    # invoke ------------------------------------------------------------------------------

    def payloads_in_flight(self, max_concurrent: int) -> int:
        """With decode workers, enough payloads in flight that every worker has one to decode
        while MaxConcurrentTransforms of them are predicted; predict_fn itself still runs at most
        `max_concurrent` at once, as without workers."""
        workers = self._pool.size if self._pool is not None else 0
        if self._batcher is not None:  # one batch decoding while the one before is predicted
            return max(max_concurrent, 2 * self._batcher.size) + workers
        if self._pool is None:
            return max_concurrent
        self._predicting = threading.BoundedSemaphore(max_concurrent)
        return max_concurrent + workers

    def items_at_once(self, max_concurrent: int) -> int:
        """A batching handler gathers across objects as well: twice BATCH_SIZE of them at once,
        so that one batch is decoded while the one before is predicted. With decode workers, two
        groups of DECODE_GROUP, for the same reason, and at least one object per worker besides
        the MaxConcurrentTransforms predicted, as with one object's payloads."""
        if self._batcher is not None:
            return 2 * self._batcher.size
        return max(max_concurrent + self._pool.size, 2 * DECODE_GROUP) if self._pool is not None else 1

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        handle = self._handle
        if handle is None:
            raise RuntimeError("PythonHandlerRuntime.invoke() before start()")
        if not accept or accept == codecs.ANY:
            accept = self._default_accept
        if self._pool is None and self._batcher is None:
            return self._answer(self._step(handle, self._text(payload, content_type), content_type, accept), accept)
        if self._pool is None:
            assert self._batcher is not None
            prediction = self._batcher.predict(self.decode_payload(payload, content_type, accept))
            return self.encode_prediction(prediction, content_type, accept)
        assert self._predict is not None
        parsed = self._pool.call(INPUT_FN, payload if type(payload) is bytes else bytes(payload), content_type, accept)
        if self._batcher is not None:
            prediction = self._batcher.predict(parsed)
        else:
            with self._predicting:
                prediction = self._step(self._predict, parsed, content_type, accept)
        body: bytes = self._pool.call(OUTPUT_FN, prediction, content_type, accept)  # encode_prediction's bytes
        return body

    def payloads_per_call(self) -> int:
        """A batching handler takes BATCH_SIZE payloads at a time: decoded, predicted and
        encoded together, one batch's worth from one thread. With decode workers and no
        BATCH_SIZE, up to DECODE_GROUP payloads (short records, or small objects) at a time:
        decoded together, predicted one by one, encoded together."""
        if self._batcher is not None:
            return self._batcher.size
        return DECODE_GROUP if self._pool is not None else 1

    def payload_group_bytes(self) -> int:
        """With decode workers and no BATCH_SIZE, a group ends at DECODE_GROUP_BYTES, so that
        long payloads (MultiRecord's) still go one by one, as many in flight as
        `payloads_in_flight` says."""
        return DECODE_GROUP_BYTES if self._batcher is None and self._pool is not None else 0

    def invoke_many(
        self, payloads: list[bytes], *, content_type: str | None, accept: str | None, timeout: float, starting: Callable[[int], None] = lambda _: None
    ) -> list[bytes | InvocationError]:
        """A batching handler's group is one call to the model, with one timeout (docs/models.md,
        "Cross-record batching"). Without BATCH_SIZE, each payload is predicted as soon as it is
        decoded, and the encodings are waited for one by one; each payload's decoding and
        prediction, and then its encoding, are `starting` its own timeout."""
        if self._batcher is None and self._pool is None:
            return super().invoke_many(payloads, content_type=content_type, accept=accept, timeout=timeout, starting=starting)
        if not accept or accept == codecs.ANY:
            accept = self._default_accept
        bodies = [payload if type(payload) is bytes else bytes(payload) for payload in payloads]
        if self._batcher is None:  # each payload predicted as soon as it is decoded, the workers going on with the next
            assert self._pool is not None
            answers = self._pool.call_many(
                INPUT_FN, bodies, content_type, accept, waiting_for=starting, then=lambda parsed: self._predicted(parsed, content_type, accept)
            )
        else:
            starting = lambda _: None  # noqa: E731  # a batch has one timeout
            if self._pool is not None:
                answers = self._pool.call_many(INPUT_FN, bodies, content_type, accept)
            else:
                answers = [_caught(self.decode_payload, body, content_type, accept) for body in bodies]
            decoded = [index for index, answer in enumerate(answers) if not isinstance(answer, InvocationError)]
            for index, prediction in zip(decoded, self._batcher.predict_many([answers[index] for index in decoded])):
                answers[index] = prediction
        predicted = [index for index, answer in enumerate(answers) if not isinstance(answer, InvocationError)]
        if self._pool is not None:
            bodies_out = self._pool.call_many(
                OUTPUT_FN, [answers[index] for index in predicted], content_type, accept, waiting_for=lambda number: starting(predicted[number])
            )
        else:
            bodies_out = [_caught(self.encode_prediction, answers[index], content_type, accept) for index in predicted]
        for index, body in zip(predicted, bodies_out):
            answers[index] = body
        return answers

    def _predicted(self, parsed: Any, content_type: str | None, accept: str) -> Any:
        """predict_fn on one decoded payload, at most MaxConcurrentTransforms at once; its
        InvocationError rather than raised."""
        assert self._predict is not None
        with self._predicting:
            return _caught(functools.partial(self._step, self._predict), parsed, content_type, accept)

    def decode_payload(self, payload: bytes, content_type: str | None, accept: str) -> Any:
        """input_fn on a payload, with the errors invoke() raises: a decode worker's first step."""
        assert self._decode is not None
        return self._step(self._decode, self._text(payload, content_type), content_type, accept)

    def encode_prediction(self, prediction: Any, content_type: str | None, accept: str) -> bytes:
        """output_fn on a prediction, as response bytes: a decode worker's second step."""
        assert self._encode is not None
        return self._answer(self._step(self._encode, prediction, content_type, accept), accept)

    def _text(self, payload: bytes, content_type: str | None) -> bytes | str:
        """The payload as the handler receives it: JSON and CSV bodies as str, as the toolkit hands them over."""
        data: bytes | str = payload if type(payload) is bytes else bytes(payload)
        if content_type in codecs.UTF8_TYPES:
            try:
                data = data.decode("utf-8")  # type: ignore[union-attr]
            except UnicodeDecodeError as exc:
                raise InvocationError(_not_text(content_type, payload, exc), retryable=False, status=400) from None
        return data

    def _step(self, stage: Stage, value: Any, content_type: str | None, accept: str) -> Any:
        """Run one bound step; a handler's error becomes the InvocationError SageMaker's server would answer."""
        try:
            return stage(value, content_type, accept)
        except codecs.UnsupportedFormatError as exc:
            raise InvocationError(str(exc), retryable=False, status=415) from exc
        except Exception as exc:
            raise InvocationError(self._describe(exc), retryable=True, status=500) from exc

    def _answer(self, result: Any, accept: str) -> bytes:
        return result if type(result) is bytes else self._body(result, accept)

    def _body(self, result: Any, accept: str) -> bytes:
        """A handler's result as response bytes, by the toolkit's contract: bytes or str (alone or
        first in a (body, content type) tuple) as they are; any other value through the default
        encoder for `accept`. What that encoder cannot take fails the payload, naming the function
        that returned it, rather than being written as Python's repr."""
        if isinstance(result, tuple) and result:
            result = result[0]
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result)
        if isinstance(result, str):
            return result.encode("utf-8")
        try:
            if result is None:
                raise TypeError("there is nothing to encode")
            return codecs.encode(result, accept)[0]
        except (codecs.UnsupportedFormatError, TypeError, ValueError) as exc:
            status = 415 if isinstance(exc, codecs.UnsupportedFormatError) else 500
            reason = "there is no default encoder for it" if status == 415 else str(exc)
            raise InvocationError(
                f"{self._answering} returned a {type(result).__name__}, which cannot be encoded as {accept} ({reason}); "
                f"return bytes or str, or a value the {accept} encoder takes",
                retryable=False,
                status=status,
            ) from None

    def _describe(self, exc: BaseException) -> str:
        """`ValueError: message (code/inference.py, line 12, in predict_fn)`: the error and the
        deepest line of the model's own code it passed through."""
        text = f"{type(exc).__name__}: {exc}"
        code_dir = os.path.realpath(self.code_dir) + os.sep
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if os.path.realpath(frame.filename).startswith(code_dir):
                return f"{text} ({self._shown(frame.filename)}, line {frame.lineno}, in {frame.name})"
        return text

    def _shown(self, path: str) -> str:
        """A path as a person reads it: relative to the model directory when inside it."""
        relative = os.path.relpath(os.path.realpath(path), os.path.realpath(self.model_dir))
        return path if relative.startswith("..") else relative

    # execution parameters and close -------------------------------------------------------

    def execution_parameters(self) -> ExecutionParameters:
        """What the handler's `execution_parameters_fn()` asks for (the scikit-learn container's
        hook; it returns the `/execution-parameters` JSON body, as a dict, str or bytes)."""
        function = self._function("execution_parameters_fn") if self.module is not None else None
        if function is None:
            return ExecutionParameters()
        try:
            answer = function()
            if isinstance(answer, tuple):
                answer = answer[0]
            if isinstance(answer, (bytes, bytearray, str)):
                answer = json.loads(answer)
            if not isinstance(answer, dict):
                raise TypeError(f"returned a {type(answer).__name__}, not a JSON object")
            return ExecutionParameters.from_answer(answer)
        except (Exception, SystemExit) as exc:
            raise RuntimeStartError(f"execution_parameters_fn in {self.handler_path} failed: {self._describe(exc)}") from exc

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._handle = self._decode = self._predict = self._encode = None
        self.model = None
        if self.module is not None:
            sys.modules.pop(self.module.__name__, None)
            self.module = None
        for entry in self._path_entries:
            if entry in sys.path:
                sys.path.remove(entry)
        self._path_entries = []
        for key, previous in self._replaced_environment.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._replaced_environment = {}


def _stem(path: str) -> str:
    return re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])


def _caught(stage: Callable[[Any, str | None, str], Any], value: Any, content_type: str | None, accept: str) -> Any:
    """What `stage` returned, or the InvocationError it raised."""
    try:
        return stage(value, content_type, accept)
    except InvocationError as exc:
        return exc
