"""kill -9 the server in the middle of a job, start it again: the job carries on where it was.

What a crash must not do: leave instance processes writing, process again an object whose output
was already written, leave temporaries behind, or make the outputs differ from a run that was
never interrupted.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from conveyor.store import Store
from conveyor.store.work_items import DONE
from tests.job_requests import job_request
from tests.models import write_model
from tests.server import ServerProcess, start_server, wait_for_status

TEMP_MARKER = ".conveyor-tmp-"
OBJECTS = [f"part-{index}.csv" for index in range(8)]
SECONDS_PER_PAYLOAD = 0.5
DURABLE_SETTLE_SECONDS = 0.2  # well past the 50 ms in which finished outputs are gathered to be made durable, well short of a payload

# Takes half a second per payload, and notes "<pid> <object>" in a marks file once it has
# answered, so the test can count how many times each object was transformed, and by whom.
MARKING_HANDLER = '''
import os
import time

MARKS = {marks!r}

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    time.sleep({seconds})
    with open(MARKS, "a") as marks:
        marks.write(f"{{os.getpid()}} {{body.decode().split(',')[0]}}\\n")
    return b"scored " + body
'''


def outputs(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory` (temporaries included) with its size and mtime."""
    if not directory.exists():
        return {}
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in directory.iterdir() if path.is_file()}


def temporaries(directory: Path) -> list[str]:
    return [name for name in outputs(directory) if TEMP_MARKER in name]


def finished(directory: Path) -> list[str]:
    return [name for name in outputs(directory) if name.endswith(".out")]


def settled(directory: Path) -> bool:
    """Whether the newest output was written at least DURABLE_SETTLE_SECONDS ago."""
    newest = max((mtime for name, (_, mtime) in outputs(directory).items() if name.endswith(".out")), default=0)
    return time.time_ns() - newest >= DURABLE_SETTLE_SECONDS * 1e9


def recorded_done(server: ServerProcess, job_name: str) -> list[str]:
    """The outputs of the objects that the (stopped) server's store holds done."""
    with Store(server.home / "conveyor.db") as store:
        return sorted(Path(item.output_uri.removeprefix("file://")).name for item in store.work_items.list(job_name, state=DONE))


def marks(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    return [(int(pid), obj) for pid, obj in (line.split(" ", 1) for line in path.read_text().splitlines())]


class Servers:
    """The server a test started, then each one it restarted as; all are stopped at the end."""

    def __init__(self, first: ServerProcess) -> None:
        self.started = [first]

    def restart(self) -> ServerProcess:
        """A new server on the same home, once the last one was killed or stopped."""
        self.started.append(self.started[-1].restart())
        return self.started[-1]


@contextmanager
def marking_server(tmp_path: Path, marks_file: Path, seconds: float) -> Iterator[Servers]:
    """A server (its home in `tmp_path`) holding the "marking" model, which notes into `marks_file`
    and takes `seconds` per payload."""
    model_dir = write_model(tmp_path, textwrap.dedent(MARKING_HANDLER.format(marks=str(marks_file), seconds=seconds)))
    servers = Servers(start_server(tmp_path / "home"))
    try:
        servers.started[0].client().create_model(
            ModelName="marking", PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": f"file://{model_dir}"}
        )
        yield servers
    finally:
        for process in servers.started:
            process.stop()


def write_inputs(directory: Path, texts: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in texts.items():
        (directory / name).write_text(text)
    return directory


def test_kill_9_mid_job_then_resume(tmp_path: Path) -> None:
    inputs = write_inputs(tmp_path / "in", {name: f"{name},{index}\n{name},{index * 10}\n" for index, name in enumerate(OBJECTS)})
    marks_file = tmp_path / "marks.txt"
    crashed_out, clean_out = tmp_path / "out-crashed", tmp_path / "out-clean"

    with marking_server(tmp_path, marks_file, SECONDS_PER_PAYLOAD) as servers:
        server = servers.started[0]
        sm = server.client()
        sm.create_transform_job(**job_request("crashes", "marking", f"file://{inputs}/", f"file://{crashed_out}", instance_count=2, AssembleWith="Line"))

        # Wait until some objects are written and others are half done, then kill -9; not within
        # DURABLE_SETTLE_SECONDS of an output's rename, which may not be recorded done yet (the
        # local backend makes finished outputs durable in groups before recording them,
        # docs/semantics.md "Durability of outputs"), and so may rightly be transformed again.
        deadline = time.monotonic() + 60
        while not (len(finished(crashed_out)) >= 3 and temporaries(crashed_out) and settled(crashed_out)):
            assert time.monotonic() < deadline, f"the job never got going: {outputs(crashed_out)}"
            assert sm.describe_transform_job(TransformJobName="crashes")["TransformJobStatus"] == "InProgress"
            time.sleep(0.02)
        workers = psutil.Process(server.process.pid).children(recursive=True)
        started = sm.describe_transform_job(TransformJobName="crashes")["TransformStartTime"]
        server_pid = server.process.pid
        server.kill()
        killed_at = time.time()

        # Its workers have exited with it, and nothing is written any more.
        assert workers, "the job ran no instance processes"
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"instance processes outlived the server: {alive}"
        orphans = [p.info for p in psutil.process_iter(["pid", "ppid", "cmdline"]) if p.info["ppid"] == server_pid]
        assert orphans == []
        before = outputs(crashed_out)
        marks_before = marks(marks_file)
        time.sleep(3 * SECONDS_PER_PAYLOAD)
        assert outputs(crashed_out) == before, "something still writes the job's output after the kill"
        assert marks(marks_file) == marks_before, "something still calls the model after the kill"
        on_disk = sorted(name for name in before if name.endswith(".out"))
        left_behind = [name for name in before if TEMP_MARKER in name]
        assert 3 <= len(on_disk) < len(OBJECTS)
        assert left_behind, "the kill left no temporary to sweep"
        # What must never be transformed again is what the job recorded done. On a slow machine
        # the kill may still land between an output's rename and its record (the settling above
        # makes that rare): such an output may rightly be written again, whole.
        done_before = recorded_done(server, "crashes")
        assert done_before and set(done_before) <= set(on_disk), (done_before, on_disk)

        # Start again: the job is taken over at once and finishes.
        restarted = servers.restart()
        restarted_at = time.time()
        sm = restarted.client()
        description = wait_for_status(sm, "crashes", timeout=60)
        assert description["TransformJobStatus"] == "Completed", description.get("FailureReason")
        assert description["TransformStartTime"] == started  # a resumed job keeps its first start

        after = outputs(crashed_out)
        assert sorted(after) == sorted(f"{name}.out" for name in OBJECTS), after
        for name in done_before:
            assert after[name] == before[name], f"{name} was written again after the restart"
        counts = Counter(obj for _, obj in marks(marks_file))
        for name in done_before:
            assert counts[name.removesuffix(".out")] == 1, f"{name} was transformed again: {counts}"  # one payload per object
        pids_before = {pid for pid, _ in marks_before}
        pids_after = {pid for pid, _ in marks(marks_file)[len(marks_before):]}
        assert pids_after and not (pids_after & pids_before), "new instances did the rest"

        logs = restarted.client("logs")
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TransformJobs", logStreamName="crashes/instance-1", startFromHead=True)["events"]
        resuming = [e for e in events if e["message"].startswith("Resuming:")]
        assert len(resuming) == 1, [e["message"] for e in events]
        assert resuming[0]["message"] == (
            f"Resuming: {len(done_before)} of {len(OBJECTS)} objects already done; {len(left_behind)} temporary files swept."
        )
        # Taken over at once (its owner's process is gone), not when its 15-second lease runs out.
        assert resuming[0]["timestamp"] / 1000 - restarted_at < 5, (resuming[0]["timestamp"] / 1000 - killed_at, "seconds after the kill")

        # The same job, never interrupted, gives byte-identical outputs.
        sm.create_transform_job(**job_request("uninterrupted", "marking", f"file://{inputs}/", f"file://{clean_out}", instance_count=2, AssembleWith="Line"))
        assert wait_for_status(sm, "uninterrupted", timeout=60)["TransformJobStatus"] == "Completed"
        clean = outputs(clean_out)
        assert sorted(clean) == sorted(after)
        for name in clean:
            assert (crashed_out / name).read_bytes() == (clean_out / name).read_bytes(), name
        assert temporaries(crashed_out) == [] and temporaries(clean_out) == []
        assert not [p for p in tmp_path.rglob(f"*{TEMP_MARKER}*")]


def test_orphaned_job_with_no_progress_resumes_from_scratch(tmp_path: Path) -> None:
    """A kill before any object is written: the restarted server runs the whole job once."""
    inputs = write_inputs(tmp_path / "in", {name: f"{name},1\n" for name in OBJECTS[:3]})
    marks_file = tmp_path / "marks.txt"
    out = tmp_path / "out"
    with marking_server(tmp_path, marks_file, 1.0) as servers:
        server = servers.started[0]
        sm = server.client()
        sm.create_transform_job(**job_request("early", "marking", f"file://{inputs}/", f"file://{out}", instance_count=2, AssembleWith="Line"))
        deadline = time.monotonic() + 60
        while not temporaries(out):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.kill()
        restarted = servers.restart()
        sm = restarted.client()
        assert wait_for_status(sm, "early", timeout=60)["TransformJobStatus"] == "Completed"
        assert sorted(finished(out)) == sorted(f"{name}.out" for name in OBJECTS[:3])
        assert temporaries(out) == []
        counts = Counter(obj for _, obj in marks(marks_file))
        assert set(counts) == set(OBJECTS[:3])


def test_graceful_stop_mid_job_then_resume(tmp_path: Path) -> None:
    """SIGTERM (a service restart) gives the job back; the next server finishes it."""
    inputs = write_inputs(tmp_path / "in", {name: f"{name},{index}\n" for index, name in enumerate(OBJECTS[:5])})
    marks_file = tmp_path / "marks.txt"
    out = tmp_path / "out"
    with marking_server(tmp_path, marks_file, SECONDS_PER_PAYLOAD) as servers:
        server = servers.started[0]
        sm = server.client()
        sm.create_transform_job(**job_request("restarted", "marking", f"file://{inputs}/", f"file://{out}", instance_count=2, AssembleWith="Line"))
        deadline = time.monotonic() + 60
        while len(finished(out)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        workers = psutil.Process(server.process.pid).children(recursive=True)
        server.stop()  # SIGTERM, then wait for it to exit
        assert psutil.wait_procs(workers, timeout=10)[1] == []
        done_before = {name: (out / name).stat().st_mtime_ns for name in finished(out)}
        restarted = servers.restart()
        sm = restarted.client()
        assert wait_for_status(sm, "restarted", timeout=60)["TransformJobStatus"] == "Completed"
        assert sorted(finished(out)) == sorted(f"{name}.out" for name in OBJECTS[:5])
        assert temporaries(out) == []
        for name, mtime in done_before.items():
            assert (out / name).stat().st_mtime_ns == mtime
        counts = Counter(obj for _, obj in marks(marks_file))
        assert all(counts[name.removesuffix(".out")] == 1 for name in done_before), counts
