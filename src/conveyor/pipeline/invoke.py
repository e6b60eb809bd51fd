"""Calling the model for one payload: timeout, retries with back-off, and in-order concurrency.

Up to MaxConcurrentTransforms payloads are in flight; results come back in input order, so
the output keeps the order of the records (SageMaker's guarantee).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from conveyor.pipeline.busy import BusyMeter
from conveyor.runtimes.base import InvocationError, Runtime

T = TypeVar("T")
R = TypeVar("R")


class InvocationFailed(Exception):
    """A payload failed for good (retries spent, or an error that is not retried)."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class InvocationWatch(Protocol):
    """Watches in-flight invocations a runtime cannot time out itself (in-process handlers).

    The engine's implementation restarts the instance when one runs past its timeout."""

    def begin(self, payload_index: int, timeout: float) -> object: ...

    def end(self, token: object) -> None: ...


class Invoker:
    """Sends payloads to a runtime with the job's timeout and retry policy (docs/semantics.md, decision 8),
    measuring how long the model was busy (`busy`: the instance's meter, shared by the items it
    transforms at once, so that their overlapping calls count once)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        content_type: str | None,
        accept: str | None,
        timeout_seconds: float,
        max_retries: int,
        retry_backoff_seconds: float = 1.0,
        watch: InvocationWatch | None = None,
        attempts_used: dict[int, int] | None = None,
        log: Callable[[str], None] | None = None,
        busy: BusyMeter | None = None,
    ) -> None:
        self.runtime = runtime
        self.content_type = content_type
        self.accept = accept
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.watch = watch if not runtime.enforces_timeout else None
        self.attempts_used = attempts_used or {}
        self.log = log
        self.retries = 0
        self.busy = busy or BusyMeter()

    def once(self, payload_index: int, body: bytes) -> bytes:
        """One try, no retry and no back-off: a sub-payload of a failed payload being bisected."""
        token = self.watch.begin(payload_index, self.timeout_seconds) if self.watch else None
        try:
            return self._invoke(body)
        except InvocationError as exc:
            raise InvocationFailed(exc.message) from None
        finally:
            if token is not None and self.watch is not None:
                self.watch.end(token)

    def __call__(self, payload_index: int, body: bytes) -> bytes:
        attempt = self.attempts_used.get(payload_index, 0)  # spent by runs that timed out (engine.job)
        while True:
            token = self.watch.begin(payload_index, self.timeout_seconds) if self.watch else None
            try:
                return self._invoke(body)
            except InvocationError as exc:
                attempt += 1
                if not exc.retryable or attempt > self.max_retries:
                    tries = f"{attempt} attempt" + ("s" if attempt != 1 else "")
                    raise InvocationFailed(f"{exc.message} (after {tries}; InvocationsMaxRetries={self.max_retries})", attempts=attempt) from None
                self.retries += 1
                delay = self.retry_backoff_seconds * (2 ** (attempt - 1))
                if self.log:
                    # Errors that cannot go away (a handler that raises) are retried too, as in SageMaker; say once how to stop that.
                    advice = " (InvocationsMaxRetries=0, or --retries 0, stops retries)" if attempt == 1 else ""
                    self.log(f"payload {payload_index + 1}: {exc.message}; retry {attempt} of {self.max_retries} in {delay:g}s{advice}")
                time.sleep(delay)
            finally:
                if token is not None and self.watch is not None:
                    self.watch.end(token)

    def _invoke(self, body: bytes) -> bytes:
        self.busy.begin()
        try:
            return self.runtime.invoke(body, content_type=self.content_type, accept=self.accept, timeout=self.timeout_seconds)
        finally:
            self.busy.end()


def invoke_in_order(
    payloads: Iterable[T], invoke: Callable[[int, T], R], *, max_concurrent: int, overlap: bool = False
) -> Iterator[tuple[T, R]]:
    """Yield `(payload, response)` in payload order with up to `max_concurrent` in flight.

    With `overlap` (or `max_concurrent` > 1) the calls run on threads, so that cutting the next
    payload and writing the last answer happen while the model works, not between its calls:
    the oldest answer is taken, the next payload sent, and only then is the answer yielded to be
    written. Each payload held waiting is one more in memory. Without, a call runs in the
    caller's thread, which costs nothing per call (SingleRecord's many small payloads)."""
    if max_concurrent <= 1 and not overlap:
        for index, payload in enumerate(payloads):
            yield payload, invoke(index, payload)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(max_concurrent, 1), thread_name_prefix="invoke")
    try:
        for index, payload in enumerate(payloads):
            answered = None
            if len(pending) >= max_concurrent:
                first, future = pending.popleft()
                answered = (first, future.result())
            pending.append((payload, pool.submit(invoke, index, payload)))
            if answered is not None:
                yield answered
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
