"""Parallel decode (`CONVEYOR_DECODE_WORKERS`): a Python handler's input_fn and output_fn run in
worker processes of the instance, predict_fn on the loaded model in the instance itself.

Each worker is a fresh interpreter (not a fork: the instance holds threads and a loaded model)
that sets up the model's Environment and `sys.path` as the instance did and imports the handler
under the instance's own module name, so that objects of classes defined in `inference.py`
unpickle on either side. It never calls model_fn. Each worker has a thread of the instance that
feeds it over its own socket: the callers queue their requests (a payload for input_fn, a
prediction for output_fn) and wait; the feeder sends the requests waiting, as many together as
take about CHUNK_SECONDS to run, and the worker answers each with the decoded data (or the
response body), or with the InvocationError the instance would have raised, and with what the
handler printed, which the instance prints into the job log. A trip to a worker and back costs
a few context switches, more than parsing a short record: sent together, many small payloads
share one trip, while a payload that takes longer than CHUNK_SECONDS still goes alone.

Workers die with the instance: PR_SET_PDEATHSIG, a parent check, and the end of their socket.
PR_SET_PDEATHSIG follows the thread that started the child, not the process (prctl(2)), so one
long-lived thread starts them all. A worker that dies is replaced; the payload it held fails
(retryable, as a model server's crashed worker answers 500), and where it held several, each is
sent again alone, so that only the one that kills its worker fails. docs/models.md, "Parallel
decode".
"""

from __future__ import annotations

import io
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterator, Mapping

from conveyor.runtimes.base import InvocationError, RuntimeStartError
from conveyor.runtimes.parent_death import die_with_parent
from conveyor.runtimes.toolkit_defaults import ToolkitDefaults


class _PlainConnection(Connection):
    """A pipe that pickles with the standard pickler. multiprocessing's own takes reducers that
    libraries register (torch sends a tensor as a handle to shared memory, served to processes
    that share its parent's secret), which a worker started as a fresh interpreter cannot use."""

    def send(self, obj: Any) -> None:
        self.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def recv(self) -> Any:
        return pickle.loads(self.recv_bytes())


INPUT_FN = "input_fn"
OUTPUT_FN = "output_fn"
CLOSE_WAIT_SECONDS = 2.0
"""How long a closing pool waits for a worker to leave on its own before killing it."""
CHUNK_SECONDS = 0.005
"""About how long the requests a feeder sends together take: a trip to a worker and back costs
some 0.1 ms, which many short requests then share, while one that takes longer goes alone."""
CHUNK_MOST = 256
"""The most requests sent together."""
_SOURCES = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOTSTRAP = (
    "import sys\n"
    f"sys.path.append({_SOURCES!r}) if {_SOURCES!r} not in sys.path else None\n"
    "from conveyor.runtimes.decode_pool import serve\n"
    "serve(int(sys.argv[1]), int(sys.argv[2]))\n"
)


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to stand in for the instance's handler (picklable)."""

    model_dir: str
    code_dir: str
    packages_dir: str | None
    environment: dict[str, str]
    defaults: ToolkitDefaults
    module_name: str  # the instance's name for the handler module


@dataclass
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    connection: Connection


Outcome = tuple[str, Any, tuple[str, str]]
"""("ok", the stage's result, what the handler printed) or ("error", (message, retryable, status), printed)."""
_NOTHING_PRINTED = ("", "")


class _Request:
    """One input_fn or output_fn call, queued for a feeder; its caller waits for its outcome."""

    __slots__ = ("function", "value", "content_type", "accept", "alone", "_outcome", "_settled")

    def __init__(self, function: str, value: Any, content_type: str | None, accept: str) -> None:
        self.function, self.value, self.content_type, self.accept = function, value, content_type, accept
        self.alone = False  # it was sent with others to a worker that died: it goes alone now
        self._outcome: Outcome | None = None
        self._settled = threading.Lock()  # held until the outcome is in: the cheapest wait there is
        self._settled.acquire()

    def settle(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._settled.release()

    def outcome(self) -> Outcome:
        self._settled.acquire()
        assert self._outcome is not None
        return self._outcome


class DecodePool:
    """`size` workers that run input_fn and output_fn; `call` is safe from many threads."""

    def __init__(self, size: int, setup: WorkerSetup) -> None:
        self.size = size
        self.setup = setup
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a request was queued, or the pool closed
        self._finishing: deque[_Request] = deque()  # output_fn requests: sent first, finishing the oldest payloads
        self._starting: deque[_Request] = deque()  # input_fn requests
        self._seconds_each = 0.0  # a request's time in a worker and its share of the trip, averaged; 0 until measured
        self._workers: dict[int, _Worker] = {}
        self._feeders = 0
        self._gone: str | None = None  # why no worker is left, when none could be restarted
        self._starter = _Starter()
        self._closed = False

    def launch(self) -> None:
        """Start every worker and send it the setup; `wait_ready` waits for their imports."""
        for future in [self._starter.launch(self._spawn, number) for number in range(1, self.size + 1)]:
            worker = future.result()
            self._workers[worker.number] = worker
            try:
                worker.connection.send(self.setup)
            except OSError:
                pass  # it exited already: wait_ready says how

    def wait_ready(self) -> None:
        """Wait until each worker has imported the handler, then start feeding them;
        RuntimeStartError with the first that could not."""
        failures = [problem for worker in self._workers.values() if (problem := self._ready(worker)) is not None]
        if failures:
            self.close()
            raise RuntimeStartError(failures[0])
        for worker in self._workers.values():
            self._feeders += 1
            threading.Thread(target=self._feed, args=(worker,), name=f"decode-feeder-{worker.number}", daemon=True).start()

    def call(self, function: str, value: Any, content_type: str | None, accept: str) -> Any:
        """Run `function` (INPUT_FN on a payload, OUTPUT_FN on a prediction) in a worker; its
        result, or the InvocationError the instance would have raised."""
        (answer,) = self.call_many(function, [value], content_type, accept)
        if isinstance(answer, InvocationError):
            raise answer
        return answer

    def call_many(
        self,
        function: str,
        values: list[Any],
        content_type: str | None,
        accept: str,
        *,
        waiting_for: Callable[[int], None] = lambda _: None,
        then: Callable[[Any], Any] | None = None,
    ) -> list[Any]:
        """Run `function` on each of `values` in the workers; each one's result, or the
        InvocationError the instance would have raised for it. The answers are waited for in
        order, each told first to `waiting_for` (its number); `then`, where given, takes each
        result as soon as it is in, while the workers go on with the later ones, and its
        answer is the one returned."""
        requests = [_Request(function, value, content_type, accept) for value in values]
        with self._lock:
            if self._closed or self._gone is not None:
                raise InvocationError(self._gone or "the model is closed", retryable=False, status=500)
            (self._finishing if function == OUTPUT_FN else self._starting).extend(requests)
            self._arrived.notify(len(requests))
        results = []
        for number, request in enumerate(requests):
            waiting_for(number)
            result = _result(request.outcome())
            results.append(then(result) if then is not None and not isinstance(result, InvocationError) else result)
        return results

    def close(self) -> None:
        """End every worker: the end of its socket, then SIGKILL after CLOSE_WAIT_SECONDS."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = self._take_waiting()
            workers = list(self._workers.values())
            self._arrived.notify_all()
        for request in waiting:
            request.settle(_failure("the model is closed", retryable=False))
        for worker in workers:
            worker.connection.close()
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self._starter.close()

    # feeders -----------------------------------------------------------------------------

    def _feed(self, worker: _Worker) -> None:
        """A feeder's life: send the waiting requests to `worker` a chunk at a time and settle
        each with its answer; when the worker dies, go on with its replacement."""
        seconds_each = 0.0
        while (chunk := self._next_chunk(seconds_each)) is not None:
            began = time.perf_counter()
            try:
                outcomes = _exchange(worker.connection, chunk)
            except (EOFError, OSError):
                replacement = self._after_death(worker, chunk)
                if replacement is None:
                    return
                worker, seconds_each = replacement, 0.0
                continue
            seconds_each = (time.perf_counter() - began) / len(chunk)
            for request, outcome in zip(chunk, outcomes):
                request.settle(outcome)

    def _next_chunk(self, seconds_each: float) -> list[_Request] | None:
        """The next requests to send together (the oldest payloads' output_fn first), after
        counting how long the last chunk's took each; None once the pool is closed."""
        with self._lock:
            if seconds_each:
                self._seconds_each = 0.75 * self._seconds_each + 0.25 * seconds_each if self._seconds_each else seconds_each
            while not (self._finishing or self._starting or self._closed):
                self._arrived.wait()
            if self._closed:
                return None
            most = max(min(int(CHUNK_SECONDS / self._seconds_each), CHUNK_MOST), 1) if self._seconds_each else 1
            most = min(most, -(-(len(self._finishing) + len(self._starting)) // self.size))  # a share for every worker
            chunk: list[_Request] = []
            for waiting in (self._finishing, self._starting):
                while waiting and len(chunk) < most:
                    if waiting[0].alone and chunk:
                        return chunk
                    chunk.append(waiting.popleft())
                    if chunk[-1].alone:
                        return chunk
            return chunk

    def _after_death(self, worker: _Worker, chunk: list[_Request]) -> _Worker | None:
        """`worker` died holding `chunk`: replace it. A request it held alone fails (retryable);
        several are queued again, each to go alone, so that only one that kills its worker
        fails. The replacement, or None when there is none."""
        if self._closed:
            for request in chunk:
                request.settle(_failure("the model is closed", retryable=False))
            return None
        how = _exit(worker)
        replacement = self._replace(worker)
        if len(chunk) == 1:
            request = chunk[0]
            request.settle(_failure(f"the decode worker running {request.function} exited ({how}); it was restarted", retryable=True))
        else:
            functions = " and ".join(sorted({request.function for request in chunk}))
            print(
                f"the decode worker running {functions} exited ({how}); it was restarted, and the {len(chunk)} payloads "
                "it held go to a worker again one at a time",
                file=sys.stderr,
            )
            with self._lock:
                for request in reversed(chunk):
                    request.alone = True
                    (self._finishing if request.function == OUTPUT_FN else self._starting).appendleft(request)
                self._arrived.notify()
        if replacement is None:
            self._feeder_gone(f"decode worker {worker.number} of {self.size} exited ({how}) and could not be restarted")
        return replacement

    def _feeder_gone(self, why: str) -> None:
        """A feeder ended without its worker: once none is left, every request fails with why."""
        with self._lock:
            self._feeders -= 1
            if self._feeders or self._closed:
                return
            self._gone = f"no decode worker is left: {why}"
            waiting = self._take_waiting()
        for request in waiting:
            request.settle(_failure(self._gone, retryable=False))

    def _take_waiting(self) -> list[_Request]:
        waiting = [*self._finishing, *self._starting]
        self._finishing.clear()
        self._starting.clear()
        return waiting

    # workers -----------------------------------------------------------------------------

    def _spawn(self, number: int) -> _Worker:
        """Start worker `number`; runs on the starter thread."""
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOTSTRAP, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Worker(number, process, _PlainConnection(ours.detach()))

    def _ready(self, worker: _Worker) -> str | None:
        """Wait for the worker's import of the handler; what went wrong, or None."""
        try:
            status, answer, printed = worker.connection.recv()
        except (EOFError, OSError):
            return f"decode worker {worker.number} of {self.size} exited while importing the handler ({_exit(worker)})"
        _print(printed)
        return None if status == "ready" else f"decode worker {worker.number} of {self.size}: {answer}"

    def _replace(self, dead: _Worker) -> _Worker | None:
        """A worker started in place of `dead`, or None when none could be (said in the job log)."""
        dead.connection.close()
        with self._lock:
            if self._closed:
                return None
        try:
            worker = self._starter.launch(self._spawn, dead.number).result()
        except OSError as exc:
            print(f"decode worker {dead.number} could not be restarted: {exc}", file=sys.stderr)
            return None
        with self._lock:
            self._workers[worker.number] = worker
        try:
            worker.connection.send(self.setup)
        except OSError:
            pass  # it exited already: _ready says how
        problem = self._ready(worker)
        if problem is not None:
            print(f"decode worker {dead.number} could not be restarted: {problem}", file=sys.stderr)
            return None
        return worker


def _exchange(connection: Connection, chunk: list[_Request]) -> list[Outcome]:
    """Send `chunk` over `connection` and read each request's outcome. Each request and each
    answer is pickled on its own, so that one that cannot cross fails alone, and is answered
    here."""
    outcomes: list[Outcome | None] = []
    parts: list[tuple[str, bytes]] = []
    for request in chunk:
        try:
            parts.append((request.function, pickle.dumps((request.value, request.content_type, request.accept), protocol=pickle.HIGHEST_PROTOCOL)))
            outcomes.append(None)
        except Exception as exc:
            outcomes.append(_failure(_crossing(_returned_by(request.function), exc), retryable=False))
    answers: Iterator[bytes] = iter(())
    if parts:
        connection.send(parts)
        answers = iter(connection.recv())
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            try:
                outcomes[index] = pickle.loads(next(answers))
            except Exception as exc:  # what the worker answered does not unpickle here
                outcomes[index] = _failure(_crossing(_returned_by(chunk[index].function), exc), retryable=False)
    return outcomes  # type: ignore[return-value]  # every None was replaced


def _result(outcome: Outcome) -> Any:
    """What a caller gets of an outcome: the stage's result, or its InvocationError; what the
    handler printed goes to the instance's streams (the job log)."""
    status, answer, printed = outcome
    _print(printed)
    if status == "error":
        message, retryable, code = answer
        return InvocationError(message, retryable=retryable, status=code)
    return answer


def _failure(message: str, *, retryable: bool) -> Outcome:
    return ("error", (message, retryable, 500), _NOTHING_PRINTED)


def _returned_by(function: str) -> str:
    """The handler function whose result crosses for a call of `function`: input_fn's result
    comes back from a worker, predict_fn's goes to one for output_fn."""
    return INPUT_FN if function == INPUT_FN else "predict_fn"


def _exit(worker: _Worker) -> str:
    try:
        code = worker.process.wait(timeout=CLOSE_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
    return f"exit status {code}"


def _crossing(function: str, exc: Exception) -> str:
    """Why what `function` returned could not go between the instance and a worker."""
    return (
        f"what {function} returned could not cross between the instance and its decode worker ({type(exc).__name__}: {exc}): "
        "with CONVEYOR_DECODE_WORKERS, what input_fn and predict_fn return must pickle"
    )


def _print(printed: tuple[str, str]) -> None:
    """What the handler printed in a worker, into the instance's streams (the job log)."""
    out, err = printed
    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)


class _Starter:
    """One long-lived thread that starts every worker, so PR_SET_PDEATHSIG ties them to a
    thread that lives as long as the pool (the thread that starts a child is its "parent")."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[int], _Worker], int, Future[_Worker]] | None] = queue.Queue()
        threading.Thread(target=self._run, name="decode-pool-starter", daemon=True).start()

    def launch(self, spawn: Callable[[int], _Worker], number: int) -> Future[_Worker]:
        future: Future[_Worker] = Future()
        self._requests.put((spawn, number, future))
        return future

    def close(self) -> None:
        self._requests.put(None)

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            spawn, number, future = request
            try:
                future.set_result(spawn(number))
            except BaseException as exc:  # handed to the caller, which raises it
                future.set_exception(exc)


# -- the worker side ---------------------------------------------------------------------


class _Captured(io.StringIO):
    """A stream that keeps what is printed until it is taken."""

    def take(self) -> str:
        text = self.getvalue()
        self.seek(0)
        self.truncate()
        return text


def serve(fd: int, parent_pid: int) -> None:
    """A worker's life: set up as the instance did, then answer requests until the socket ends."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the instance decides when workers stop
    connection = _PlainConnection(fd)
    out, err = _Captured(), _Captured()
    sys.stdout, sys.stderr = out, err

    def printed() -> tuple[str, str]:
        return out.take(), err.take()

    from conveyor.runtimes.python_handler import PythonHandlerRuntime  # the handler's own rules, in this process

    setup: WorkerSetup = connection.recv()
    handler = PythonHandlerRuntime(
        setup.model_dir, setup.environment, code_dir=setup.code_dir, packages_dir=setup.packages_dir, defaults=setup.defaults
    )
    try:
        handler.start_codec(setup.module_name)
    except RuntimeStartError as exc:
        connection.send(("failed", str(exc), printed()))
        return
    connection.send(("ready", None, printed()))
    stages = {INPUT_FN: handler.decode_payload, OUTPUT_FN: handler.encode_prediction}
    while True:
        try:
            parts = connection.recv()
        except EOFError:
            return
        connection.send([_answer(stages, function, part, printed) for function, part in parts])


def _answer(stages: Mapping[str, Callable[[Any, str | None, str], Any]], function: str, part: bytes, printed: Callable[[], tuple[str, str]]) -> bytes:
    """One request's outcome, pickled on its own: what its stage returned, the InvocationError
    the instance would have raised, or why its value or result cannot cross."""
    try:
        value, content_type, accept = pickle.loads(part)
    except Exception as exc:  # a prediction that does not unpickle in a worker
        return pickle.dumps(_failure(_crossing(_returned_by(function), exc), retryable=False))
    try:
        outcome: Outcome = ("ok", stages[function](value, content_type, accept), printed())
    except InvocationError as exc:
        outcome = ("error", (exc.message, exc.retryable, exc.status), printed())
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # what input_fn returned does not pickle
        return pickle.dumps(("error", (_crossing(_returned_by(function), exc), False, 500), outcome[2]))
