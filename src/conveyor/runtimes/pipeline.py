"""A serial inference pipeline: a model's `Containers` called in order, each one's response
being the next one's request (`InferenceExecutionConfig.Mode = Serial`, up to 15 containers).

Every container gets its own runtime (its own server, per instance). Headers along the chain:
each container receives the job's Accept; the first receives the job's ContentType, each later
one the Content-Type of the previous response, or failing that the Accept it was asked for, or
failing that the Content-Type the previous container received.
"""

from __future__ import annotations

import time
from typing import Sequence

from conveyor.runtimes.base import ExecutionParameters, InvocationError, Runtime, RuntimeStartError

MAX_CONTAINERS = 15


class SerialPipelineRuntime(Runtime):
    """Runs several runtimes as one: start in order, invoke as a chain, close in reverse."""

    def __init__(self, stages: Sequence[Runtime], names: Sequence[str]) -> None:
        if not 1 <= len(stages) <= MAX_CONTAINERS:
            raise RuntimeStartError(f"an inference pipeline has 1 to {MAX_CONTAINERS} containers, not {len(stages)}")
        self.stages = list(stages)
        self.names = list(names)
        self.enforces_timeout = all(stage.enforces_timeout for stage in self.stages)
        self._started: list[Runtime] = []

    def _label(self, index: int) -> str:
        return f"container {index + 1} of {len(self.stages)} ({self.names[index]})"

    def start(self) -> None:
        if self._started:
            return
        try:
            for index, stage in enumerate(self.stages):
                try:
                    stage.start()
                except RuntimeStartError as exc:
                    raise RuntimeStartError(f"{self._label(index)}: {exc}") from exc
                self._started.append(stage)
        except BaseException:
            self.close()
            raise

    def execution_parameters(self) -> ExecutionParameters:
        """The first container's wishes (it receives the batched records), with
        MaxConcurrentTransforms lowered to the smallest any container asks for."""
        wishes = [stage.execution_parameters() for stage in self.stages]
        concurrency = [wish.max_concurrent_transforms for wish in wishes if wish.max_concurrent_transforms is not None]
        return ExecutionParameters(
            max_concurrent_transforms=min(concurrency) if concurrency else None,
            batch_strategy=wishes[0].batch_strategy,
            max_payload_mb=wishes[0].max_payload_mb,
        )

    def payloads_in_flight(self, max_concurrent: int) -> int:
        """The most any container asks for; each keeps its own model calls to `max_concurrent`."""
        return max(stage.payloads_in_flight(max_concurrent) for stage in self.stages)

    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        """One pass through every container; the timeout covers the whole chain."""
        deadline = time.monotonic() + timeout
        body = payload
        for index, stage in enumerate(self.stages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InvocationError(
                    f"{self._label(index)} was not reached within InvocationsTimeoutInSeconds={timeout:g}", retryable=True
                )
            try:
                body, response_type = _call(stage, body, content_type=content_type, accept=accept, timeout=remaining)
            except InvocationError as exc:
                raise InvocationError(f"{self._label(index)}: {exc.message}", retryable=exc.retryable, status=exc.status) from exc
            content_type = response_type or accept or content_type
        return body

    def close(self) -> None:
        """Close every container's runtime, last first (closing one never started is harmless)."""
        self._started = []
        errors = []
        for stage in reversed(self.stages):
            try:
                stage.close()
            except Exception as exc:  # close them all; report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]


def _call(stage: Runtime, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> tuple[bytes, str | None]:
    """A stage's response and its Content-Type where the runtime knows it (HTTP servers do)."""
    with_type = getattr(stage, "invoke_with_content_type", None)
    if with_type is not None:
        return with_type(payload, content_type=content_type, accept=accept, timeout=timeout)
    return stage.invoke(payload, content_type=content_type, accept=accept, timeout=timeout), None
