"""`conveyor logs JOB [--follow]`: a transform job's log, every instance's stream merged in time order."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any

from conveyor.cli import client
from conveyor.cli.client import Connection
from conveyor.service import TERMINAL_STATUSES

PAGE_SIZE = 1000

EXAMPLES = """examples:
  conveyor logs my-job
  conveyor logs my-job --follow        # keep printing new lines until the job ends
  conveyor logs my-job | grep data-log # per-record errors

Each line is `<time> <stream> <message>`; the stream is the instance (instance-1, instance-2, …)
or its data log (instance-1/data-log). The same log is in CloudWatch Logs' shape, for
`aws logs get-log-events --log-group-name /aws/sagemaker/TransformJobs --log-stream-name my-job/instance-1`.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "logs",
        help="print a transform job's log (--follow to keep printing until it ends)",
        description="Print a transform job's log from a Conveyor server: every instance's stream, merged in time order.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", metavar="JOB", help="TransformJobName")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job has ended")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="seconds between polls with --follow (default 1)")
    client.add_connection_arguments(parser)
    parser.set_defaults(handler=client.command("logs", _logs))


def _logs(connection: Connection, args: argparse.Namespace) -> int:
    connection.sagemaker.describe_transform_job(TransformJobName=args.job)  # SageMaker's error for a bad name
    reader = LogReader(connection, args.job)
    reader.drain()
    if not args.follow:
        return 0
    while True:
        status = connection.get(client.job_route(args.job, "progress"))["TransformJobStatus"]
        # The scheduler writes the closing line ("Completed.") before the final status, so one
        # more read after seeing that status gets the whole log.
        reader.drain()
        if status in TERMINAL_STATUSES:
            return 0
        time.sleep(args.interval)


class LogReader:
    """Reads a job's log from where it left off (the route's `position`), printing each event."""

    def __init__(self, connection: Connection, job: str) -> None:
        self.connection = connection
        self.job = job
        self.position: str | None = None

    def drain(self) -> None:
        """Print every event the server has after `position`, page by page."""
        while True:
            page = self.connection.get(client.job_route(self.job, "logs"), after=self.position, limit=PAGE_SIZE)
            events = page.get("events") or []
            for event in events:
                print(format_event(self.job, event))
            sys.stdout.flush()
            self.position = page.get("position") or self.position
            if len(events) < PAGE_SIZE:
                return


def format_event(job: str, event: dict[str, Any]) -> str:
    """`2024-05-01T12:00:00.123+00:00 instance-1 message`: local time, the stream without the job's name."""
    moment = datetime.fromtimestamp(event["timestamp"] / 1000).astimezone().isoformat(timespec="milliseconds")
    stream = event.get("stream") or "-"
    stream = stream.removeprefix(f"{job}/")
    return f"{moment} {stream} {event.get('message', '')}"
