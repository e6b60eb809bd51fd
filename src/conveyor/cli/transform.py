"""`conveyor transform`: run one batch transform job in the foreground, with a progress bar."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timezone

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from conveyor.cli.backend_options import add_backend_arguments, backend_overrides
from conveyor.cli.gpu_options import add_gpu_arguments, gpu_overrides
from conveyor.cli.job_request import UsageError, add_job_arguments, job_and_model
from conveyor.collector import settle_after_start
from conveyor.durations import format_duration
from conveyor.engine.backend import Backend
from conveyor.engine.figures import Rates, rate_text, records_text
from conveyor.engine.instance_process import InstanceProcess, stop_unused
from conveyor.engine.job import JobListener, JobOutcome, instances_for, plan_work_items, run_job
from conveyor.engine.ledger import MemoryLedger
from conveyor.engine.listing import Listing
from conveyor.engine.local import LocalBackend
from conveyor.errors import ConveyorError
from conveyor.pipeline.work_item import ItemProgress, WorkItem
from conveyor.sagemaker.instance_types import ProfileError, instance_types
from conveyor.sagemaker.locations import is_local
from conveyor.sagemaker.model import ModelSpec
from conveyor.sagemaker.transform_job import TransformJobSpec
from conveyor.settings import Settings, SettingsError, parse_shard_size
from conveyor.storage.inputs import InputError
from conveyor.storage.local import local_path

EXAMPLES = """examples:
  conveyor transform --model model.tar.gz --input data/ --output out/ --content-type text/csv --split-type Line
  conveyor transform --request create-transform-job.json --model ./model
"""


STOPPED = "Stopped: objects already written are kept; nothing partial was written."
"""What the command says when a job ends before its last object (Ctrl-C, or a listing that failed)."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "transform",
        help="run a batch transform job here, in the foreground",
        description="Run one batch transform job on this machine: one .out file per input file, as SageMaker Batch Transform writes them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar; print only the summary")
    add_gpu_arguments(parser)
    add_backend_arguments(parser)
    parser.add_argument(
        "--shard-size", metavar="MB",
        help="cut objects larger than this many MiB into byte-range shards, each a work item of its own, where "
        "their records allow (fractions allowed; 0 never cuts; default $CONVEYOR_SHARD_SIZE_MB, else 64 for a job "
        "of more than one instance and no cut for one)",
    )
    parser.add_argument(
        "--install-requirements", action="store_true", default=None,
        help="install each Python handler's requirements.txt (with pip and its own configuration: PIP_INDEX_URL, "
        "PIP_FIND_LINKS, …) into a cached directory; off by default, since it runs whatever the file names "
        "(default $CONVEYOR_INSTALL_REQUIREMENTS)",
    )
    parser.set_defaults(handler=run)


class _Throughput(ProgressColumn):
    def __init__(self, listener: "_ConsoleListener") -> None:
        super().__init__()
        self.listener = listener

    def render(self, task: Task) -> Text:
        listener = self.listener
        elapsed = max(time.monotonic() - listener.started, 1e-6)
        return Text(
            f"{listener.objects_done + listener.objects_failed}/{listener.objects_total} obj "
            f"{listener.records():,} rec {size_text(listener.bytes_in() / elapsed)}/s",
            style="cyan",
        )


FIGURES_MIN_WIDTH = 100
BAR_UPDATE_SECONDS = 0.05
"""Narrower terminals leave the live figures out, which would wrap the bar (the job log and the
summary still give them)."""


class _Figures(ProgressColumn):
    """Records/s and the model's busy fraction over the last seconds (engine.figures), once known."""

    def __init__(self, listener: "_ConsoleListener") -> None:
        super().__init__()
        self.listener = listener

    def render(self, task: Task) -> Text:
        figures = self.listener.live
        if figures is None or self.listener.console.width < FIGURES_MIN_WIDTH:
            return Text("")
        return Text(f"{rate_text(figures.records_per_second)} rec/s, model {figures.busy_fraction:.0%}", style="magenta", no_wrap=True)


def size_text(count: float) -> str:
    """`812 B`, `3.4 KB`, `1.2 MB`, `2.0 GB` (powers of 1,024, as MaxPayloadInMB's MB)."""
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} GB"


class _ConsoleListener(JobListener):
    """Feeds the progress bar and prints the job's log lines above it."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.objects_total = 0  # so far: the inputs may still be being listed
        self.objects_done = 0
        self.objects_failed = 0
        self._shards_done: dict[str, int] = {}  # a sharded object is done when its every shard is
        self._failed_outputs: set[str] = set()
        self.total_bytes = 0
        self.started = time.monotonic()
        self._live: dict[int, ItemProgress] = {}
        self._finished_bytes = 0
        self._finished_records = 0
        self._updated = 0.0  # when the bar was last moved
        self.live: Rates | None = None  # records/s and the model's busy fraction, over a recent window
        self.whole: Rates | None = None  # the same over the whole run, once it ended
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _Throughput(self),
            _Figures(self),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.task = self.progress.add_task("transform", total=None)

    def add_items(self, items: list[WorkItem]) -> None:
        """Items listed: the bar's total grows with them (from the listing's thread)."""
        self.objects_total += sum(item.shard == 0 for item in items)
        self.total_bytes += sum(item.planned_bytes for item in items)
        self.progress.update(self.task, total=self.total_bytes or 1)

    def bytes_in(self) -> int:
        return self._finished_bytes + sum(p.bytes_in for p in self._live.values())

    def records(self) -> int:
        return self._finished_records + sum(p.records for p in self._live.values())

    def update_bar(self, *, now: bool = False) -> None:
        """Move the bar, at most every BAR_UPDATE_SECONDS (many small objects would otherwise
        pay for it per object), unless `now`: the bar redraws no more often than that anyway."""
        moment = time.monotonic()
        if not now and moment - self._updated < BAR_UPDATE_SECONDS:
            return
        self._updated = moment
        self.progress.update(self.task, completed=min(self.bytes_in(), self.total_bytes))

    def on_progress(self, item: WorkItem, progress: ItemProgress) -> None:
        self._live[item.item_id] = progress
        self.update_bar()

    def on_items_done(self, done: list[tuple[WorkItem, ItemProgress]]) -> None:
        for item, progress in done:
            self._live.pop(item.item_id, None)
            if item.shards == 1:
                self.objects_done += 1
            else:
                self._shards_done[item.output_uri] = self._shards_done.get(item.output_uri, 0) + 1
                self.objects_done += self._shards_done[item.output_uri] == item.shards
            self._finished_bytes += item.planned_bytes
            self._finished_records += progress.records
        self.update_bar()

    def on_item_failed(self, item: WorkItem, reason: str) -> None:
        self._live.pop(item.item_id, None)
        self.objects_failed += item.output_uri not in self._failed_outputs
        self._failed_outputs.add(item.output_uri)
        self._finished_bytes += item.planned_bytes
        self.update_bar()
        self.console.print(f"[red]failed[/red] {reason}", markup=True, highlight=False)

    def on_log(self, instance: int, message: str, *, data_log: bool = False) -> None:
        self._say(message)

    def on_figures(self, records_per_second: float, busy_fraction: float, *, final: bool = False) -> None:
        if final:
            self.whole = Rates(records_per_second, busy_fraction)
        else:
            self.live = Rates(records_per_second, busy_fraction)

    def _say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)
    early: list[InstanceProcess] = list(getattr(args, "prestarted", []))  # started by the `conveyor` entry point
    try:
        shard_size = parse_shard_size(args.shard_size, "--shard-size") if args.shard_size is not None else None
        settings = Settings.from_environ(
            s3_endpoint_url=args.s3_endpoint, install_requirements=args.install_requirements, shard_size_mb=shard_size,
            **gpu_overrides(args), **backend_overrides(args),
        )
        instance_types(settings.instance_types_file)  # a broken profiles file is named before anything runs
    except (SettingsError, ProfileError) as exc:
        stop_unused(early)
        console.print(f"conveyor transform: {exc}", markup=False, highlight=False)
        return 2
    if settings.backend == "ray":  # imported here: a local job's command does not pay for them
        from conveyor.engine.backends import open_backend
        from conveyor.engine.ray_backend import RayUnavailable

        stop_unused(early)
        try:
            opened = open_backend(settings, capacity_given=bool(os.environ.get("CONVEYOR_CAPACITY")))
        except RayUnavailable as exc:
            console.print(f"conveyor transform: {exc}", markup=False, highlight=False)
            return 2
        settings, backend, close = opened.settings, opened.new_backend(), opened.close
    else:
        # The instances' processes start now, so that their start overlaps checking the request,
        # listing the inputs and preparing the model (docs/benchmarks.md, "Start-up").
        wanted = min(args.instance_count or 1, settings.capacity)
        local = LocalBackend(prestarted=early[:wanted] + [InstanceProcess(index) for index in range(len(early), wanted)])
        stop_unused(early[wanted:])
        backend, close = local, local.close
    stop = threading.Event()
    listener = _ConsoleListener(console, args.quiet)
    try:
        try:
            job, model = job_and_model(args)
            settle_after_start()
            listing: Listing | None = None
            if settings.backend == "ray":  # every node's paths are checked before anything runs
                items = plan_work_items(job, settings)
                _check_shared_locations(job, items, settings)
                ledger = MemoryLedger(items)
                listener.add_items(items)
            else:  # the instances start on the first objects while the rest are listed
                ledger = MemoryLedger(listing=True)
                listing = Listing(job, settings, ledger, stop, on_items=listener.add_items)
                listing.wait_for_first()
        except (UsageError, ConveyorError, InputError) as exc:
            stop.set()
            console.print(f"conveyor transform: {exc}", markup=False, highlight=False)
            return 2
        return _run_with_progress(job, model, ledger, listing, listener, stop, settings, console, backend)
    finally:
        stop.set()  # a listing still going on ends with the command
        close()


def _check_shared_locations(job: TransformJobSpec, items: list[WorkItem], settings: Settings) -> None:
    """On a Ray cluster of several nodes, local paths must lie under local roots that every node mounts."""
    from conveyor.engine.backends import cluster_nodes
    from conveyor.service.local_roots import check_job_locations, check_planned_items

    nodes = cluster_nodes(settings)
    if nodes > 1:
        check_job_locations(job, settings, nodes=nodes)
        check_planned_items(items, settings, nodes=nodes)


def _run_with_progress(
    job: TransformJobSpec,
    model: ModelSpec,
    ledger: MemoryLedger,
    listing: Listing | None,
    listener: _ConsoleListener,
    stop: threading.Event,
    settings: Settings,
    console: Console,
    backend: Backend,
) -> int:
    instances = instances_for(job.resources.instance_count, settings)
    if job.resources.instance_count > instances:
        listener._say(
            f"InstanceCount={job.resources.instance_count} is more than this machine's capacity of {settings.capacity}; "
            f"running {instances} instances."
        )
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    try:
        with listener.progress:
            outcome = run_job(job, model, settings, ledger=ledger, listener=listener, stop=stop, backend=backend, started_at=started_at)
            listener.update_bar(now=True)
    except KeyboardInterrupt:
        stop.set()
        console.print(STOPPED, highlight=False)
        return 130
    items = ledger.items()
    if listing is not None and listing.error is not None:  # the listing failed once the job had begun: it was stopped
        console.print(f"conveyor transform: {listing.error}", markup=False, highlight=False)
        console.print(STOPPED, highlight=False)
        return 2
    _say_matched_folders(console, job, items)
    _summary(console, job, items, outcome, time.monotonic() - started, listener.whole)
    return 0 if outcome.status == "Completed" else 1


def _say_matched_folders(console: Console, job: TransformJobSpec, items: list[WorkItem]) -> None:
    """A local prefix that is no folder matches like an S3 prefix: say which folders it took
    when they are several, since a user of local folders may not expect it."""
    if not is_local(job.input.uri) or os.path.isdir(local_path(job.input.uri)) or job.input.data_type != "S3Prefix":
        return
    folders = sorted({os.path.dirname(local_path(item.input_uri)) for item in items})
    if len(folders) > 1:
        shown = ", ".join(f"{folder}/" for folder in folders)
        console.print(f"Input {job.input.uri} is a prefix, as in S3: it matched {len(folders)} folders: {shown}", markup=False, highlight=False)


def _summary(
    console: Console, job: TransformJobSpec, items: list[WorkItem], outcome: JobOutcome, elapsed: float, whole: Rates | None
) -> None:
    """The same figures as the console's job page: objects done and failed, records, duration,
    throughput, records/s and the model's busy fraction."""
    size = sum(item.planned_bytes for item in items)
    color = "green" if outcome.status == "Completed" else "red"
    failed = f", {outcome.objects_failed} failed" if outcome.objects_failed else ""
    figures = f", {rate_text(whole.records_per_second)} records/s, model busy {whole.busy_fraction:.0%}" if whole else ""
    console.print(
        f"[bold {color}]{outcome.status}[/] {job.name}: {outcome.objects_done} of {outcome.objects_total} objects{failed}, "
        f"{records_text(outcome.records)}, {size_text(size)} in {format_duration(elapsed)} ({size_text(size / max(elapsed, 1e-6))}/s{figures})",
        highlight=False,
    )
    if outcome.failure_reason:
        console.print(f"FailureReason: {outcome.failure_reason}", markup=False, highlight=False)
    if outcome.objects_done:
        print(f"Output: {job.output.output_path}", file=sys.stdout)
