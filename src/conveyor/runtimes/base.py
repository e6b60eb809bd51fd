"""How a model is called: the small interface every runtime implements.

A runtime lives inside one instance (a worker process or a Ray actor): `start()` loads the
model or starts its server, `invoke()` sends one payload and returns the response body, and is
called from up to MaxConcurrentTransforms threads at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal


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


class Runtime(ABC):
    enforces_timeout: bool = True
    """False when `invoke` cannot stop itself at the timeout (in-process Python handlers): the
    instance's watchdog then restarts the whole instance, as docs/semantics.md, decision 19, says."""

    @abstractmethod
    def start(self) -> None: ...

    def execution_parameters(self) -> ExecutionParameters:
        return ExecutionParameters()

    @abstractmethod
    def invoke(self, payload: bytes, *, content_type: str | None, accept: str | None, timeout: float) -> bytes:
        """Send one payload; return the response body or raise `InvocationError`."""

    @abstractmethod
    def close(self) -> None: ...
