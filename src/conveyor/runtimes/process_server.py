"""A model server started as a local process per instance (Image `process:<command line>`).

The command line is split as a shell splits it (no shell runs it) and started in its own process
group with the job's environment plus `SAGEMAKER_BIND_TO_PORT` (a free port on 127.0.0.1, where
it must listen) and `SM_MODEL_DIR` (the model directory: the role /opt/ml/model plays in a
container). Its output is printed line by line, which the instance worker sends to the job log.

The server never outlives its instance: `close()` stops its whole process group; if the instance
is killed instead, PR_SET_PDEATHSIG kills the server and a `Guard` (a tiny watchdog process that
notices its parent is gone) kills the rest of the group.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from typing import IO, Callable, Mapping

from conveyor.runtimes.base import DEFAULT_STARTUP_TIMEOUT_SECONDS, RuntimeStartError
from conveyor.runtimes.http_server import HttpServerRuntime

PROCESS_PREFIX = "process:"
STOP_TIMEOUT_SECONDS = 5.0
"""How long a server may take to exit after SIGTERM before it is killed."""
TAIL_LINES = 15
"""Lines of a server's last output quoted when it exits before it became healthy."""

_GUARD_PROGRAM = r"""
import os, signal, subprocess, sys, time
if sys.stdin.buffer.read() != b"released":  # end of file without the word: our parent died
    if sys.argv[1] == "killpg":
        group = int(sys.argv[2])
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                time.sleep(0.05)
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    sys.exit(0)
    else:
        subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""


class Guard:
    """A watchdog process that cleans up after this process if it dies without doing so.

    It waits for end of file on a pipe only this process holds; the kernel closes that pipe
    however this process ends (SIGKILL included). Unless `release()` was called first, it then
    kills a process group (`["killpg", PGID]`) or runs a command (`["run", "docker", "rm", …]`).
    It sits in its own session, so a Ctrl-C aimed at the job does not stop it early."""

    def __init__(self, action: list[str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _GUARD_PROGRAM, *action],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def release(self) -> None:
        """The cleanup was done here: let the guard exit without acting."""
        self._finish(b"released")

    def trigger(self) -> None:
        """Let the guard act now, and wait for it."""
        self._finish(b"")

    def _finish(self, word: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(word)
            stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class OutputForwarder:
    """Prints a server's output line by line (the worker sends it to the job log) and keeps
    the last lines for a failure reason."""

    _print_lock = threading.Lock()  # print() writes a line and its "\n" separately

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._threads: list[threading.Thread] = []

    def follow(self, stream: IO[bytes], *, to_stderr: bool) -> None:
        thread = threading.Thread(target=self._run, args=(stream, to_stderr), name="model-output", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self, stream: IO[bytes], to_stderr: bool) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self.tail.append(line)
                with self._print_lock:
                    print(self.prefix + line, file=sys.stderr if to_stderr else sys.stdout, flush=True)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def last_output(self) -> str:
        lines = [line for line in self.tail if line.strip()]
        return "; its last output:\n" + "\n".join(lines) if lines else "; it printed nothing"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn making the child receive SIGKILL when this process dies (PR_SET_PDEATHSIG).

    Only from the main thread: the signal follows the death of the *thread* that started the
    child, and the main thread lives as long as the process. Elsewhere the Guard suffices."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call above
            os._exit(1)

    return setup


class ProcessServerRuntime(HttpServerRuntime):
    """Starts `command` as a model server on a free port and calls it over HTTP."""

    def __init__(
        self,
        command: str,
        *,
        model_dir: str | None,
        environment: Mapping[str, str],
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
        name: str = "model server",
        port: int | None = None,
        output_prefix: str = "",
    ) -> None:
        super().__init__(None, startup_timeout=startup_timeout, name=name)
        self.command = command
        self.model_dir = model_dir
        self.environment = dict(environment)
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._guard: Guard | None = None
        self._output = OutputForwarder(output_prefix)

    def _launch(self) -> None:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise RuntimeStartError(f"Image '{PROCESS_PREFIX}{self.command}': the command line cannot be split: {exc}") from None
        if not argv:
            raise RuntimeStartError(f"Image '{PROCESS_PREFIX}{self.command}' names no command; write {PROCESS_PREFIX}<command line>")
        port = self.port or free_port()
        environment = {**os.environ, **self.environment, "SAGEMAKER_BIND_TO_PORT": str(port)}
        if self.model_dir is not None:
            environment["SM_MODEL_DIR"] = self.model_dir
        try:
            self.process = subprocess.Popen(
                argv,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, stopped as a whole
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            raise RuntimeStartError(f"cannot start the {self.name} `{self.command}`: {exc.strerror or exc}: {exc.filename or argv[0]}") from None
        self._guard = Guard(["killpg", str(self.process.pid)])
        assert self.process.stdout is not None and self.process.stderr is not None
        self._output.follow(self.process.stdout, to_stderr=False)
        self._output.follow(self.process.stderr, to_stderr=True)
        self.base_url = f"http://127.0.0.1:{port}"

    def _exit_reason(self) -> str | None:
        process = self.process
        if process is None or process.poll() is None:
            return None
        self._output.join(timeout=1.0)
        return f"the process `{self.command}` {describe_exit(process.returncode)}{self._output.last_output()}"

    def _shutdown(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            _stop_group(process)
            self._output.join(timeout=2.0)
        if self._guard is not None:
            self._guard.release()
            self._guard = None


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, SIGKILL after STOP_TIMEOUT_SECONDS, then SIGKILL to any straggler."""
    group = process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
