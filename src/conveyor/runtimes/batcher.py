"""Cross-record batching: decoded inputs of concurrent invocations gathered into one model call.

A handler opts in by declaring `BATCH_SIZE` and defining `predict_batch_fn(inputs, model)`,
which takes a list of what `input_fn` returned and returns one prediction per input, in order
(docs/models.md, "Cross-record batching"). Each invocation decodes its payload (or a group of
payloads, `predict_many`), hands the decoded values to the `Batcher` and waits; one thread calls
`predict_batch_fn` with up to `BATCH_SIZE` values, waiting at most `BATCH_TIMEOUT` seconds after
the first for the batch to fill, and hands every caller its own prediction back, so that
outputs return to their own records and objects. A batch whose call raises is tried again input
by input, so that a bad input fails only its own invocation (which is then retried as any
failed invocation is).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from conveyor.runtimes.base import InvocationError

DEFAULT_TIMEOUT_SECONDS = 0.01
"""How long a batch waits for more inputs after its first, unless the handler sets BATCH_TIMEOUT."""


class Batcher:
    """Calls `predict_batch` on lists of up to `size` values submitted from many threads.
    `describe` turns a handler's exception into the message an invocation fails with."""

    def __init__(
        self, predict_batch: Callable[[list[Any]], Any], size: int, timeout_seconds: float, describe: Callable[[BaseException], str]
    ) -> None:
        self.size = size
        self._predict_batch = predict_batch
        self._timeout = timeout_seconds
        self._describe = describe
        self._waiting: deque[tuple[Any, Future[Any]]] = deque()
        self._arrived = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="predict-batch", daemon=True)
        self._thread.start()

    def predict(self, value: Any) -> Any:
        """`value`'s prediction, computed in a batch with whatever else arrives meanwhile."""
        (prediction,) = self.predict_many([value])
        if isinstance(prediction, InvocationError):
            raise prediction
        return prediction

    def predict_many(self, values: list[Any]) -> list[Any]:
        """Each value's prediction, or the InvocationError its batch failed it with; the values
        go into batches together, with whatever else arrives meanwhile."""
        futures: list[Future[Any]] = [Future() for _ in values]
        with self._arrived:
            if self._closed:
                raise InvocationError("the model is closed", retryable=False, status=500)
            first = not self._waiting
            self._waiting.extend(zip(values, futures))
            if first or len(self._waiting) >= self.size:
                self._arrived.notify()
        return [_outcome(future) for future in futures]

    def close(self) -> None:
        with self._arrived:
            self._closed = True
            self._arrived.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._call(batch)

    def _next_batch(self) -> list[tuple[Any, Future[Any]]] | None:
        """Up to `size` waiting values: as soon as there are that many, or `timeout` after the
        first one arrived; None once closed."""
        with self._arrived:
            while not self._waiting and not self._closed:
                self._arrived.wait()
            if self._closed:
                for _, future in self._waiting:
                    future.set_exception(InvocationError("the model is closed", retryable=False, status=500))
                return None
            self._arrived.wait_for(lambda: len(self._waiting) >= self.size or self._closed, timeout=self._timeout)
            return [self._waiting.popleft() for _ in range(min(self.size, len(self._waiting)))]

    def _call(self, batch: list[tuple[Any, Future[Any]]]) -> None:
        try:
            predictions = list(self._predict_batch([value for value, _ in batch]))
        except Exception as exc:
            if len(batch) > 1:  # one bad input fails only its own invocation: each is tried alone
                for single in batch:
                    self._call([single])
                return
            error = InvocationError(self._describe(exc), retryable=True, status=500)
            batch[0][1].set_exception(error)
            return
        if len(predictions) != len(batch):
            error = InvocationError(
                f"predict_batch_fn returned {_count(len(predictions), 'prediction')} for a batch of {len(batch)} inputs; "
                "it must return one per input, in order",
                retryable=False,
                status=500,
            )
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), prediction in zip(batch, predictions):
            future.set_result(prediction)


def _outcome(future: Future[Any]) -> Any:
    try:
        return future.result()
    except InvocationError as exc:
        return exc


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
