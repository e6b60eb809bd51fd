"""Calling the model for one payload: timeout, retries with back-off, and in-order concurrency.

Up to MaxConcurrentTransforms payloads are in flight; results come back in input order, so
the output keeps the order of the records (SageMaker's guarantee). A runtime that takes many
payloads in one call (cross-record batching) is sent them a group at a time instead, each
payload still with its own retries (`invoke_together`, `invoke_in_groups`).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

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

    def __call__(self, payload_index: int, body: bytes, *, failed: InvocationError | None = None) -> bytes:
        """The payload's response, after retries; `failed`: its first try already failed so
        (in a group sent together, `many`)."""
        attempt = self.attempts_used.get(payload_index, 0)  # spent by runs that timed out (engine.job)
        while True:
            if failed is None:
                token = self.watch.begin(payload_index, self.timeout_seconds) if self.watch else None
                try:
                    return self._invoke(body)
                except InvocationError as exc:
                    failed = exc
                finally:
                    if token is not None and self.watch is not None:
                        self.watch.end(token)
            attempt += 1
            if not failed.retryable or attempt > self.max_retries:
                tries = f"{attempt} attempt" + ("s" if attempt != 1 else "")
                raise InvocationFailed(f"{failed.message} (after {tries}; InvocationsMaxRetries={self.max_retries})", attempts=attempt) from None
            self.retries += 1
            delay = self.retry_backoff_seconds * (2 ** (attempt - 1))
            if self.log:
                # Errors that cannot go away (a handler that raises) are retried too, as in SageMaker; say once how to stop that.
                advice = " (InvocationsMaxRetries=0, or --retries 0, stops retries)" if attempt == 1 else ""
                self.log(f"payload {payload_index + 1}: {failed.message}; retry {attempt} of {self.max_retries} in {delay:g}s{advice}")
            time.sleep(delay)
            failed = None

    def many(self, first_index: int, bodies: list[bytes], alone: Callable[..., R]) -> list[R]:
        """The responses to payloads `first_index` on, sent in one call to a runtime that takes
        many at once (`invoke_together`); `alone(index, body, failed=…)` goes on with one that
        fails there: this invoker, or one that answers a failure for good with it."""
        calls = [(self, first_index + offset, body) for offset, body in enumerate(bodies)]
        return invoke_together(calls, lambda _, index, body, failed: alone(index, body, failed=failed))

    def _invoke(self, body: bytes) -> bytes:
        self.busy.begin()
        try:
            return self.runtime.invoke(body, content_type=self.content_type, accept=self.accept, timeout=self.timeout_seconds)
        finally:
            self.busy.end()


def invoke_together(
    calls: Sequence[tuple[Invoker, int, bytes]], alone: Callable[[Invoker, int, bytes, InvocationError | None], R]
) -> list[R]:
    """The responses to payloads sent in one call to the runtime their invokers share, each
    `(invoker, payload_index, body)`: the invoker of the payload's own object, with its retries,
    its tries spent and its watch. A payload that fails there goes on through
    `alone(invoker, payload_index, body, failure)`, that try counted (`Invoker.__call__`'s
    `failed`); so does one whose tries were spent by runs that timed out, with no failure."""
    together = [number for number, (invoker, index, _) in enumerate(calls) if not invoker.attempts_used.get(index)]
    answers: list[bytes | InvocationError] = []
    if together:
        answers = _invoke_group([calls[number] for number in together])
    tried = dict(zip(together, answers))
    results: list[R] = []
    for number, (invoker, index, body) in enumerate(calls):
        answer = tried.get(number)
        if answer is None or isinstance(answer, InvocationError):
            results.append(alone(invoker, index, body, answer))
        else:
            results.append(answer)  # type: ignore[arg-type]  # a response: what `alone` answers too
    return results


class _GroupWatch:
    """The watch over one call that carries several payloads: one payload's at a time, so that
    the timeout counts from when the runtime started on it and a payload past it is the one
    blamed (its next tries then go alone). It starts as the first payload's, and stays so where
    the call is one model call for them all (a batch)."""

    def __init__(self, calls: Sequence[tuple[Invoker, int, bytes]]) -> None:
        self._calls = calls
        self._watched: tuple[InvocationWatch, object] | None = None

    def __call__(self, number: int) -> None:
        """The runtime starts on payload `number` of the call."""
        self.end()
        invoker, index, _ = self._calls[number]
        if invoker.watch is not None:
            self._watched = (invoker.watch, invoker.watch.begin(index, invoker.timeout_seconds))

    def end(self) -> None:
        if self._watched is not None:
            watch, token = self._watched
            self._watched = None
            watch.end(token)


def _invoke_group(calls: Sequence[tuple[Invoker, int, bytes]]) -> list[bytes | InvocationError]:
    """One call of the runtime with the payloads of `calls`, each `(invoker, payload_index, body)`:
    each one's response, or its InvocationError."""
    first = calls[0][0]
    watch = _GroupWatch(calls)
    watch(0)
    first.busy.begin()
    try:
        return first.runtime.invoke_many(
            [body for _, _, body in calls], content_type=first.content_type, accept=first.accept, timeout=first.timeout_seconds, starting=watch
        )
    except InvocationError as exc:  # the runtime could take none of them
        return [exc] * len(calls)
    finally:
        first.busy.end()
        watch.end()


def invoke_in_groups(
    payloads: Iterable[T],
    invoke_group: Callable[[int, list[T]], list[R]],
    *,
    group_size: int,
    groups_at_once: int,
    group_bytes: int,
    size: Callable[[T], int],
) -> Iterator[tuple[T, R]]:
    """`invoke_in_order` for a runtime that takes `group_size` payloads in one call
    (`Runtime.payloads_per_call`): `invoke_group(first_index, group)` answers each payload of a
    group, and `groups_at_once` groups are in flight, so that one is decoded while the one
    before is predicted. A thread per group, not per payload: handing each payload to a thread
    of its own and back costs more than decoding a short record. With `group_bytes` (not 0), a
    group goes as soon as its payloads' `size`s reach it."""
    answered = invoke_in_order(
        _groups(payloads, group_size, group_bytes, size), lambda _, group: invoke_group(*group), max_concurrent=groups_at_once
    )
    for (_, group), answers in answered:
        yield from zip(group, answers)


def _groups(payloads: Iterable[T], most: int, most_bytes: int, size: Callable[[T], int]) -> Iterator[tuple[int, list[T]]]:
    """`(first_index, group)`: `most` payloads at a time, or fewer that hold `most_bytes`."""
    group: list[T] = []
    held = first = 0
    for payload in payloads:
        group.append(payload)
        held += size(payload)
        if len(group) == most or (most_bytes and held >= most_bytes):
            yield first, group
            first += len(group)
            group, held = [], 0
    if group:
        yield first, group


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
