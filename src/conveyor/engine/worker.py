"""The instance worker process of the local backend: one process per instance.

The process is started before the job's configuration is known (`LocalBackend.prestart`), so
that starting the interpreter and importing the pipeline overlap the caller's own preparation;
the configuration is its first message.

It loads the model once, reports the resolved execution parameters, then transforms the work
items its parent sends, in the order sent, reporting progress over its pipe. It dies with its
parent (PR_SET_PDEATHSIG, plus a parent check), so a killed server leaves no worker writing.
An invocation past its timeout that the runtime cannot stop (a Python handler stuck in a
thread) makes the process report it and exit; the parent starts a fresh one (docs/semantics.md, decision 19).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection

from conveyor.engine.figures import InstanceMeter, InstanceTotals
from conveyor.engine.instance import Instance, InstanceConfig, ResolvedParameters
from conveyor.pipeline.work_item import ItemProgress, WorkItem, WorkItemFailed
from conveyor.runtimes.base import RuntimeStartError
from conveyor.runtimes.parent_death import die_with_parent

TIMEOUT_EXIT_CODE = 75
SMALL_ITEM_BYTES = 1 << 20
"""Items this small may be transformed several at once (cross-record batching across objects)."""


@dataclass(frozen=True)
class Ready:
    resolved: ResolvedParameters
    items_at_once: int = 1  # it starts items in the order sent, at most this many unfinished at once


@dataclass(frozen=True)
class StartFailed:
    reason: str


@dataclass(frozen=True)
class Progress:
    progress: ItemProgress


@dataclass(frozen=True)
class Done:
    progress: ItemProgress


@dataclass(frozen=True)
class Failed:
    item_id: int
    reason: str
    progress: ItemProgress


@dataclass(frozen=True)
class TimedOut:
    item_id: int
    payload_index: int
    timeout: float


@dataclass(frozen=True)
class Log:
    message: str
    data_log: bool = False


@dataclass(frozen=True)
class Figures:
    totals: InstanceTotals


class _Messages:
    """A pipe shared by the main thread, the watchdog and the stdout forwarder."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._connection.send(message)


class _Watch:
    """Tracks in-flight invocations; one past its timeout ends the process (docs/semantics.md,
    decision 19). Its thread sleeps until the earliest deadline, not on a polling tick, and is
    woken only for a deadline earlier than the one it sleeps to: invocations of one job share
    one timeout, so an idle watch sleeps that long and a new invocation never needs to wake it.
    A wake per invocation would hand the interpreter back and forth with the model's thread."""

    def __init__(self, messages: _Messages) -> None:
        self._messages = messages
        self._in_flight: dict[int, tuple[int, int, float, float]] = {}
        self._changed = threading.Condition()
        self._next_token = 0
        self._wakes_at = float("inf")  # when the thread next looks, unless woken
        threading.Thread(target=self._run, name="invocation-watch", daemon=True).start()

    def for_item(self, item_id: int) -> _ItemWatch:
        return _ItemWatch(self, item_id)

    def begin(self, item_id: int, payload_index: int, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        with self._changed:
            self._next_token += 1
            self._in_flight[self._next_token] = (item_id, payload_index, deadline, timeout)
            if deadline < self._wakes_at:
                self._changed.notify()
            return self._next_token

    def end(self, token: object) -> None:
        with self._changed:
            self._in_flight.pop(token, None)  # type: ignore[call-overload]  # tokens are the ints begin() gave

    def _run(self) -> None:
        idle_wait: float | None = None  # the timeout last seen: no new invocation can be due sooner
        with self._changed:
            while True:
                now = time.monotonic()
                earliest = min(self._in_flight.values(), key=lambda entry: entry[2], default=None)
                if earliest is not None and earliest[2] <= now:
                    break
                if earliest is not None:
                    idle_wait = earliest[3]
                wait = earliest[2] - now if earliest is not None else idle_wait
                self._wakes_at = now + wait if wait is not None else float("inf")
                self._changed.wait(wait)
        item_id, payload_index, _, timeout = earliest
        self._messages.send(TimedOut(item_id, payload_index, timeout))
        os._exit(TIMEOUT_EXIT_CODE)


class _ItemWatch:
    """One item's view of the instance's watch (an InvocationWatch): its invocations are
    reported with its id, whichever other items the instance transforms at the same time."""

    def __init__(self, watch: _Watch, item_id: int) -> None:
        self._watch = watch
        self._item_id = item_id

    def begin(self, payload_index: int, timeout: float) -> object:
        return self._watch.begin(self._item_id, payload_index, timeout)

    def end(self, token: object) -> None:
        self._watch.end(token)


class _LineForwarder(io.TextIOBase):
    """Sends what the model prints to the job log, line by line."""

    def __init__(self, messages: _Messages, stream_name: str) -> None:
        self._messages = messages
        self._stream_name = stream_name
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._messages.send(Log(f"[model {self._stream_name}] {line}"))
        return len(text)


def worker_main(argv: list[str]) -> None:
    """Entry point of an instance process, `FD PARENT_PID INSTANCE`: FD is its end of the pipe to
    the parent, whose first message is the InstanceConfig (None: the instance is not needed)."""
    descriptor, parent_pid, instance = (int(value) for value in argv)
    connection = Connection(descriptor)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        config = connection.recv()
    except EOFError:
        return
    if config is not None:
        _serve(config, connection, instance)
    connection.close()
    os._exit(0)  # the model is closed and every message sent: the interpreter's teardown would only add time


def _serve(config: InstanceConfig, connection: Connection, instance: int) -> None:
    messages = _Messages(connection)
    sys.stdout = _LineForwarder(messages, "stdout")
    sys.stderr = _LineForwarder(messages, "stderr")
    try:
        started = config.start(instance)
    except RuntimeStartError as exc:
        messages.send(StartFailed(str(exc)))
        return
    except Exception as exc:  # any failure to load the model fails the job with its reason
        messages.send(StartFailed(_describe(exc)))
        return
    loop = _ItemLoop(started, connection, messages)
    messages.send(Ready(started.resolved, loop.at_once))
    try:
        loop.run()
    finally:
        started.close()


class _ItemLoop:
    """Transforms the items the parent sends, in the order sent: one at a time, or, where the
    runtime gathers inputs across objects, up to `at_once` small ones at a time. An item that
    is large, or that was held by an instance that died (a suspect), runs alone, so that a crash
    is charged to the item that caused it (docs/models.md, "Cross-record batching")."""

    def __init__(self, started: Instance, connection: Connection, messages: _Messages) -> None:
        self.started = started
        self.connection = connection
        self.messages = messages
        self.at_once = started.items_at_once
        self.watch = _Watch(messages)
        self.meter = InstanceMeter(started.busy)
        self.running: set[Future[None]] = set()

    def run(self) -> None:
        pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="item") if self.at_once > 1 else None
        try:
            while (item := self._next()) is not None:
                alone = pool is None or item.size >= SMALL_ITEM_BYTES or item.instance_losses > 0 or bool(item.attempts_used)
                self._wait_for(0 if alone else self.at_once - 1)
                if alone:
                    self._transform(item)
                else:
                    assert pool is not None
                    self.running.add(pool.submit(self._transform, item))
            self._wait_for(0)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _next(self) -> WorkItem | None:
        try:
            item = self.connection.recv()
        except EOFError:
            return None
        assert item is None or isinstance(item, WorkItem)
        return item

    def _wait_for(self, most: int) -> None:
        """Until at most `most` items are still running."""
        while len(self.running) > most:
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            self.running -= done

    def _transform(self, item: WorkItem) -> None:
        messages = self.messages
        try:
            progress = self.started.process(
                item,
                self._report_progress,
                watch=self.watch.for_item(item.item_id),
                log=lambda message: messages.send(Log(message, data_log=True)),
            )
            ended: Done | Failed = Done(progress)
        except WorkItemFailed as exc:
            ended = Failed(item.item_id, str(exc), ItemProgress(item.item_id, failed_records=exc.failed_records))
        except Exception as exc:  # a bug or an unexpected store error fails the object, not the instance
            ended = Failed(item.item_id, f"{item.input_uri}: {_describe(exc)}", ItemProgress(item.item_id))
        idle = len(self.running) <= 1 and not self.connection.poll()
        totals = self.meter.item_ended(item.item_id, idle=idle)
        if totals is not None:  # before the item's end, after which the job may end without reading further
            messages.send(Figures(totals))
        messages.send(ended)

    def _report_progress(self, progress: ItemProgress) -> None:
        if not progress.done:  # Done carries the last
            self.messages.send(Progress(progress))
        totals = self.meter.seen(progress)
        if totals is not None:
            self.messages.send(Figures(totals))


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}" if not str(exc).startswith(type(exc).__name__) else f"{exc}{where}"
