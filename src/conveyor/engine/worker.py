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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

from conveyor.engine.figures import InstanceMeter, InstanceTotals
from conveyor.engine.instance import Instance, InstanceConfig, ResolvedParameters
from conveyor.engine.running_items import RunningItems
from conveyor.pipeline.work_item import ItemProgress, WorkItem, WorkItemFailed
from conveyor.runtimes.base import RuntimeStartError
from conveyor.runtimes.parent_death import die_with_parent

TIMEOUT_EXIT_CODE = 75
POSTED_GROUP = 128
"""Reports of finished items sent together (a group is one write and one wake-up of the parent)."""
POSTED_SECONDS = 0.02
"""The longest a report is held, and how long an item may take before its report goes alone."""
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
    seconds: float = 0.0  # how long the item took, from its start to its end here: the pool sizes the instance's queue by it


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
    """A pipe shared by the main thread, the watchdog and the stdout forwarder.

    Reports of finished items and figures are `post`ed: held, and sent together as one list (one
    write, one wake-up of the parent, for up to POSTED_GROUP of them), which many small objects
    need. Whatever is `send`t goes at once, after what is held, so the order is kept. What is
    held goes once it holds POSTED_GROUP reports; when the instance has nothing queued, starts a
    large item or ends a slow one (`_ItemLoop`); and at the latest POSTED_SECONDS after the first
    was held (a timer thread, woken only when a group starts while it sleeps without a deadline). The parent learns which items a dead instance was transforming from
    `RunningItems`, not from these reports (docs/semantics.md, "Durability of outputs")."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._held: list[object] = []
        self._held_since = 0.0
        self._timer_idle = True  # the timer thread sleeps with no deadline: a new group must wake it
        threading.Thread(target=self._send_when_due, name="report-timer", daemon=True).start()

    def send(self, message: object) -> None:
        with self._lock:
            self._send_held()
            self._connection.send(message)

    def post(self, message: object) -> None:
        with self._lock:
            if not self._held:
                self._held_since = time.monotonic()
                if self._timer_idle:
                    self._due.notify()
            self._held.append(message)
            if len(self._held) >= POSTED_GROUP:
                self._send_held()

    def flush(self) -> None:
        with self._lock:
            self._send_held()

    def _send_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._connection.send(held)

    def _send_when_due(self) -> None:
        with self._due:
            while True:
                self._timer_idle = not self._held
                if self._timer_idle:
                    self._due.wait()
                    continue
                wait = self._held_since + POSTED_SECONDS - time.monotonic()
                if wait > 0:
                    self._due.wait(wait)
                    continue
                try:
                    self._send_held()
                except OSError:  # the parent is gone; the process dies with it
                    return


def received(message: object) -> list[object]:
    """The messages in what one read of an instance's pipe gave: a group sent together, or one."""
    return message if isinstance(message, list) else [message]


class _Watch:
    """Tracks in-flight invocations; one past its timeout ends the process (docs/semantics.md,
    decision 19). Its thread sleeps until the earliest deadline, not on a polling tick, and is
    woken only for a deadline earlier than the one it sleeps to: invocations of one job share
    one timeout, so an idle watch sleeps that long and a new invocation never needs to wake it.
    A wake per invocation would hand the interpreter back and forth with the model's thread."""

    def __init__(self, messages: _Messages) -> None:
        self._messages = messages
        self._in_flight: dict[int, tuple[int, int, float, float]] = {}
        self._lock = threading.Lock()  # taken as it is where nothing waits: a Condition's own `with` costs two calls in Python
        self._changed = threading.Condition(self._lock)
        self._next_token = 0
        self._wakes_at = float("inf")  # when the thread next looks, unless woken
        self._last_timeout: float | None = None  # of the invocation begun last
        threading.Thread(target=self._run, name="invocation-watch", daemon=True).start()

    def for_item(self, item_id: int) -> _ItemWatch:
        return _ItemWatch(self, item_id)

    def begin(self, item_id: int, payload_index: int, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        with self._lock:
            self._next_token += 1
            self._in_flight[self._next_token] = (item_id, payload_index, deadline, timeout)
            self._last_timeout = timeout
            if deadline < self._wakes_at:
                self._changed.notify()
            return self._next_token

    def end(self, token: object) -> None:
        with self._lock:
            self._in_flight.pop(token, None)  # type: ignore[call-overload]  # tokens are the ints begin() gave

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                earliest = min(self._in_flight.values(), key=lambda entry: entry[2], default=None)
                if earliest is not None and earliest[2] <= now:
                    break
                # Idle, it sleeps for the timeout last begun: no new invocation can be due sooner.
                # (The invocation that woke it may have ended before it looked: a fast model.)
                wait = earliest[2] - now if earliest is not None else self._last_timeout
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
    """Entry point of an instance process, `FD PARENT_PID INSTANCE RUNNING_FD`: FD is its end of
    the pipe to the parent, whose first message is the InstanceConfig (None: the instance is not
    needed); RUNNING_FD the table of the items it transforms (engine.running_items)."""
    descriptor, parent_pid, instance, running_descriptor = (int(value) for value in argv)
    connection = Connection(descriptor)
    running = RunningItems(running_descriptor)
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        config = connection.recv()
    except EOFError:
        return
    if config is not None:
        _serve(config, connection, instance, running)
    connection.close()
    os._exit(0)  # the model is closed and every message sent: the interpreter's teardown would only add time


def _serve(config: InstanceConfig, connection: Connection, instance: int, running: RunningItems) -> None:
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
    loop = _ItemLoop(started, connection, messages, running)
    messages.send(Ready(started.resolved, loop.at_once))
    try:
        loop.run()
    finally:
        started.close()


class _ItemLoop:
    """Transforms the items the parent sends (in lists, in the order sent): one at a time, or,
    where the runtime gathers inputs across objects, up to `at_once` small ones at a time, those
    that are one payload each handed over in groups (pipeline.item_groups). An item that is
    large, or that was held by an instance that died (a suspect), runs alone, so that a crash is
    charged to the item that caused it (docs/models.md, "Cross-record batching")."""

    def __init__(self, started: Instance, connection: Connection, messages: _Messages, running: RunningItems) -> None:
        self.started = started
        self.connection = connection
        self.messages = messages
        self.running_items = running
        self.at_once = started.items_at_once
        self.objects_per_call = started.objects_per_call
        self.watch = _Watch(messages)
        self.meter = InstanceMeter(started.busy)
        self.running = 0  # items transforming on the pool's threads
        self.finished = threading.Condition()  # some of them ended
        self.queued: deque[WorkItem] = deque()  # received, not started
        self.closing = False  # the parent said there are no more items

    def run(self) -> None:
        pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="item") if self.at_once > 1 else None
        try:
            while (item := self._next()) is not None:
                if pool is None or self._suspect(item):
                    self._wait_for(0)
                    if item.size >= SMALL_ITEM_BYTES:  # a large item may take long: what is held goes first
                        self.messages.flush()
                    self._transform(item)
                    continue
                items = self._group(item)
                self._wait_for(self.at_once - len(items))
                with self.finished:
                    self.running += len(items)
                pool.submit(self._transform_on_pool, items)
            self._wait_for(0)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            self.messages.flush()

    def _suspect(self, item: WorkItem) -> bool:
        """Whether it runs alone: large, or held by an instance that died or timed out."""
        return item.size >= SMALL_ITEM_BYTES or item.instance_losses > 0 or bool(item.attempts_used)

    def _group(self, item: WorkItem) -> list[WorkItem]:
        """`item`, and the items queued after it that go to the runtime with it: whole-object
        payloads, up to as many as it takes in one call."""
        items = [item]
        most = self.objects_per_call
        if most > 1 and self.started.sends_whole(item):
            while len(items) < most and self.queued:
                following = self.queued[0]
                if self._suspect(following) or not self.started.sends_whole(following):
                    break
                items.append(self.queued.popleft())
        return items

    def _next(self) -> WorkItem | None:
        while not self.queued and not self.closing:
            if not self.connection.poll():
                self.messages.flush()  # nothing to do until the parent answers: it hears all first
            try:
                sent = self.connection.recv()
            except EOFError:
                sent = None
            if sent is None:
                self.closing = True
            else:
                assert isinstance(sent, list)
                self.queued.extend(sent)
        return self.queued.popleft() if self.queued else None

    def _wait_for(self, most: int) -> None:
        """Until at most `most` items are still running. A count, not `concurrent.futures.wait`
        on the running items' futures, which visits every one of them on each call: with
        BATCH_SIZE 64, 127 of them for each small object started."""
        with self.finished:
            while self.running > most:
                self.finished.wait()

    def _transform_on_pool(self, items: list[WorkItem]) -> None:
        try:
            if len(items) == 1:
                self._transform(items[0])
            else:
                self._transform_together(items)
        finally:
            with self.finished:
                self.running -= len(items)
                self.finished.notify()

    def _transform(self, item: WorkItem) -> None:
        slot = self.running_items.begin(item.item_id)
        began = time.monotonic()
        try:
            progress = self.started.process(item, self._report_progress, watch=self.watch.for_item(item.item_id), log=self._log)
            ended: Done | Failed = Done(progress, time.monotonic() - began)
        except WorkItemFailed as exc:
            ended = Failed(item.item_id, str(exc), ItemProgress(item.item_id, failed_records=exc.failed_records))
        except Exception as exc:  # a bug or an unexpected store error fails the object, not the instance
            ended = Failed(item.item_id, f"{item.input_uri}: {_describe(exc)}", ItemProgress(item.item_id))
        self.running_items.end(slot)  # dying before its report is sent, it goes back untouched: never charged for what it did not do
        self._report_end(item, ended, began)

    def _transform_together(self, items: list[WorkItem]) -> None:
        """Whole-object payloads sent to the runtime together; each object's own report."""
        slots = [self.running_items.begin(item.item_id) for item in items]
        began = time.monotonic()
        try:
            outcomes = self.started.process_together(items, watch_for=lambda item: self.watch.for_item(item.item_id), log=self._log)
        except Exception as exc:  # a bug fails the objects, not the instance
            outcomes = [WorkItemFailed(f"{item.input_uri}: {_describe(exc)}") for item in items]
        seconds = time.monotonic() - began
        for number, (item, slot, outcome) in enumerate(zip(items, slots, outcomes)):
            if isinstance(outcome, WorkItemFailed):
                ended: Done | Failed = Failed(item.item_id, str(outcome), ItemProgress(item.item_id, failed_records=outcome.failed_records))
            else:
                ended = Done(outcome, seconds)
            self.running_items.end(slot)
            self._report_end(item, ended, began, unreported=len(items) - number - 1)

    def _report_end(self, item: WorkItem, ended: Done | Failed, began: float, *, unreported: int = 0) -> None:
        """Post an item's end (`unreported`: the items of its group still to be reported, which
        are running no longer)."""
        messages = self.messages
        idle = self.running - unreported <= 1 and not self.queued and not self.connection.poll()
        totals = self.meter.item_ended(item.item_id, records=ended.progress.records if isinstance(ended, Done) else None, idle=idle)
        if totals is not None:  # before the item's end, after which the job may end without reading further
            messages.post(Figures(totals))
        messages.post(ended)
        # With nothing queued, the main thread may be waiting for the parent, which waits for this;
        # a slow item's report has nothing to gain from waiting for others.
        if not self.queued or time.monotonic() - began >= POSTED_SECONDS:
            messages.flush()

    def _log(self, message: str) -> None:
        self.messages.send(Log(message, data_log=True))

    def _report_progress(self, progress: ItemProgress) -> None:
        if progress.done:  # Done carries the last, and `item_ended` counts it
            return
        self.messages.send(Progress(progress))
        totals = self.meter.seen(progress)
        if totals is not None:
            self.messages.post(Figures(totals))


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}" if not str(exc).startswith(type(exc).__name__) else f"{exc}{where}"
