"""How a model is called: the small interface every runtime implements.

A runtime lives inside one instance (a worker process or a Ray actor): `start()` loads the
model or starts its server, `invoke()` sends one payload and returns the response body, and is
called from up to MaxConcurrentTransforms threads at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

DEFAULT_STARTUP_TIMEOUT_SECONDS = 600.0
"""How long a model server may take to answer /ping with 200 (SageMaker waits about 30 minutes)."""


class InvocationError(Exception):
    """One invocation failed. `retryable` follows docs/semantics.md, decision 8 (connection errors,
    timeouts, 5xx, 429 and handler exceptions are retried; other 4xx are not)."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status


class RuntimeStartError(Exception):
    """The model could not be loaded or its server never became healthy."""


@dataclass(frozen=True)
class ExecutionParameters:
    """What a runtime says it wants (`/execution-parameters`); None = no opinion."""

    max_concurrent_transforms: int | None = None
    batch_strategy: Literal["MultiRecord", "SingleRecord"] | None = None
    max_payload_mb: int | None = None

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> "ExecutionParameters":
        """`{"MaxConcurrentTransforms": 8, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}`,
        each key optional, as a container's `/execution-parameters` or a handler's
        `execution_parameters_fn` answers; ValueError names every value out of SageMaker's range."""
        from conveyor.sagemaker.transform_job import MAX_PAYLOAD_MB  # here: a decode worker imports this module, not botocore

        problems = []
        concurrency = answer.get("MaxConcurrentTransforms")
        if concurrency is not None and not (type(concurrency) is int and concurrency >= 1):
            problems.append(f"MaxConcurrentTransforms must be a positive integer, got {concurrency!r}")
        payload = answer.get("MaxPayloadInMB")
        if payload is not None and not (type(payload) is int and 0 <= payload <= MAX_PAYLOAD_MB):
            problems.append(f"MaxPayloadInMB must be an integer from 0 to {MAX_PAYLOAD_MB}, got {payload!r}")
        strategy = answer.get("BatchStrategy")
        if strategy is not None and strategy not in _STRATEGIES:
            problems.append(f"BatchStrategy must be MULTI_RECORD or SINGLE_RECORD, got {strategy!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(
            max_concurrent_transforms=concurrency,
            batch_strategy=_STRATEGIES[strategy] if strategy is not None else None,
            max_payload_mb=payload,
        )


_STRATEGIES: dict[str, Literal["MultiRecord", "SingleRecord"]] = {
    "MULTI_RECORD": "MultiRecord",
    "SINGLE_RECORD": "SingleRecord",
    "MultiRecord": "MultiRecord",
    "SingleRecord": "SingleRecord",
}


class Runtime(ABC):
    enforces_timeout: bool = True
    """False when `invoke` cannot stop itself at the timeout (in-process Python handlers): the
    instance's watchdog then restarts the whole instance, as docs/semantics.md, decision 19, says."""

    @abstractmethod
    def start(self) -> None: ...

    def execution_parameters(self) -> ExecutionParameters:
        return ExecutionParameters()

    def payloads_in_flight(self, max_concurrent: int) -> int:
        """How many payloads the pipeline keeps in flight, told the resolved MaxConcurrentTransforms.
        A runtime that works on payloads in stages (parallel decode) asks for more, and itself
        keeps the model's own calls to `max_concurrent` at once."""
        return max_concurrent

    def items_at_once(self, max_concurrent: int) -> int:
        """How many small objects an instance transforms at once, told the resolved
        MaxConcurrentTransforms: more than one where the runtime gathers inputs across
        invocations (cross-record batching), so that it gathers them across objects too, or
        works on payloads in stages (parallel decode), so that objects of one payload each keep
        every stage busy."""
        return 1

    def payloads_per_call(self) -> int:
        """How many payloads `invoke_many` takes at once: more than one where the runtime
        gathers them into one model call anyway (cross-record batching), or where handing
        several over saves trips of their own (parallel decode), so that the pipeline hands
        them over together rather than each from a thread of its own."""
        return 1

    def payload_group_bytes(self) -> int:
        """Where `payloads_per_call` is more than one, the bytes after which a group is handed
        over short of that many payloads; 0 where groups are always that many (a batch)."""
        return 0

    @abstractmethod
    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        """Send one payload; return the response body or raise `InvocationError`."""

    def invoke_many(
        self, payloads: list[bytes], *, content_type: str | None, accept: str | None, timeout: float, starting: Callable[[int], None] = lambda _: None
    ) -> list[bytes | InvocationError]:
        """Each payload's response body, or the `InvocationError` that `invoke` would have raised
        for it. Where the payloads are handled one by one (here, each in turn), `starting(number)`
        says which one the runtime starts on: its InvocationsTimeoutInSeconds counts from there."""
        answers: list[bytes | InvocationError] = []
        for number, payload in enumerate(payloads):
            starting(number)
            try:
                answers.append(self.invoke(payload, content_type=content_type, accept=accept, timeout=timeout))
            except InvocationError as exc:
                answers.append(exc)
        return answers

    @abstractmethod
    def close(self) -> None: ...
