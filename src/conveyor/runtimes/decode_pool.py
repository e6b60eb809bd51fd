"""Parallel decode (`CONVEYOR_DECODE_WORKERS`): a Python handler's input_fn and output_fn run in
worker processes of the instance, predict_fn on the loaded model in the instance itself.

Each worker is a fresh interpreter (not a fork: the instance holds threads and a loaded model)
that sets up the model's Environment and `sys.path` as the instance did and imports the handler
under the instance's own module name, so that objects of classes defined in `inference.py`
unpickle on either side. It never calls model_fn. A worker serves one request at a time over its
own socket: the instance sends the payload (or the prediction), the worker answers with the
decoded data (or the response body), or with the InvocationError the instance would have raised,
and with what the handler printed, which the instance prints into the job log.

Workers die with the instance: PR_SET_PDEATHSIG, a parent check, and the end of their socket.
PR_SET_PDEATHSIG follows the thread that started the child, not the process (prctl(2)), so one
long-lived thread starts them all. A worker that dies fails the payload it held (retryable, as
a model server's crashed worker answers 500) and is replaced. docs/models.md, "Parallel decode".
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
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

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


class DecodePool:
    """`size` workers that run input_fn and output_fn; `call` is safe from many threads."""

    def __init__(self, size: int, setup: WorkerSetup) -> None:
        self.size = size
        self.setup = setup
        self._idle: list[_Worker] = []
        # Callers waiting for a worker sleep on one of two conditions, and a freed worker wakes
        # one caller, not all: with cross-record batching some 500 payloads are in flight, and
        # waking every one of them for each worker freed cost more than the decoding itself.
        self._turn = threading.Lock()
        self._finisher_turn = threading.Condition(self._turn)  # output_fn callers: they go first, finishing the oldest payloads
        self._starter_turn = threading.Condition(self._turn)  # input_fn callers
        self._finishing = 0  # output_fn callers waiting
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()
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
        """Wait until each worker has imported the handler; RuntimeStartError with the first
        that could not."""
        failures = []
        for worker in self._workers.values():
            problem = self._ready(worker)
            if problem is None:
                self._give(worker)
            else:
                failures.append(problem)
        if failures:
            self.close()
            raise RuntimeStartError(failures[0])

    def call(self, function: str, value: Any, content_type: str | None, accept: str) -> Any:
        """Run `function` (INPUT_FN on a payload, OUTPUT_FN on a prediction) in a free worker;
        its result, or the InvocationError the instance would have raised."""
        worker = self._take(function)
        try:
            worker.connection.send((function, value, content_type, accept))
            status, answer, printed = worker.connection.recv()
        except (EOFError, OSError):
            self._replace(worker)
            raise InvocationError(self._death(worker, function), retryable=True, status=500) from None
        except Exception as exc:  # the answer cannot be pickled here, or unpickled there
            self._give(worker)
            raise InvocationError(_crossing(INPUT_FN if function == INPUT_FN else "predict_fn", exc), retryable=False, status=500) from None
        self._give(worker)
        _print(printed)
        if status == "error":
            message, retryable, code = answer
            raise InvocationError(message, retryable=retryable, status=code)
        return answer

    def _take(self, function: str) -> _Worker:
        with self._turn:
            if function == OUTPUT_FN:
                self._finishing += 1
                try:
                    while not self._idle:
                        self._finisher_turn.wait()
                finally:
                    self._finishing -= 1
            else:
                while not self._idle or self._finishing:
                    self._starter_turn.wait()
            worker = self._idle.pop()
            self._wake_next()
            return worker

    def _give(self, worker: _Worker) -> None:
        with self._turn:
            self._idle.append(worker)
            self._wake_next()

    def _wake_next(self) -> None:
        """While a worker is idle, wake one caller for it: an output_fn caller if one waits."""
        if self._idle:
            (self._finisher_turn if self._finishing else self._starter_turn).notify()

    def close(self) -> None:
        """End every worker: the end of its socket, then SIGKILL after CLOSE_WAIT_SECONDS."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers.values())
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

    def _replace(self, dead: _Worker) -> None:
        """Start a worker in place of `dead`; while it cannot start, the pool is one short."""
        dead.connection.close()
        with self._lock:
            if self._closed:
                return
        try:
            worker = self._starter.launch(self._spawn, dead.number).result()
        except OSError as exc:
            print(f"decode worker {dead.number} could not be restarted: {exc}", file=sys.stderr)
            return
        with self._lock:
            self._workers[worker.number] = worker
        try:
            worker.connection.send(self.setup)
        except OSError:
            pass  # it exited already: _ready says how
        problem = self._ready(worker)
        if problem is not None:
            print(f"decode worker {dead.number} could not be restarted: {problem}", file=sys.stderr)
            return
        self._give(worker)

    def _death(self, worker: _Worker, function: str) -> str:
        return f"the decode worker running {function} exited ({_exit(worker)}); it was restarted"


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
            function, value, content_type, accept = connection.recv()
        except EOFError:
            return
        try:
            reply: tuple[str, Any, tuple[str, str]] = ("ok", stages[function](value, content_type, accept), printed())
        except InvocationError as exc:
            reply = ("error", (exc.message, exc.retryable, exc.status), printed())
        try:
            connection.send(reply)
        except Exception as exc:  # the value does not pickle: nothing was sent yet
            connection.send(("error", (_crossing(function, exc), False, 500), printed()))
