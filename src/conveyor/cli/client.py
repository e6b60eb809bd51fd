"""How the server-facing commands (`conveyor jobs`, `models`, `logs`) reach a Conveyor server.

Credentials come from the standard AWS chain (environment, `AWS_PROFILE`, shared files), and
from the server's own key file (`$CONVEYOR_HOME/credentials`) when the chain has none, so
`conveyor server` and `conveyor jobs list` work together on one machine with no setup. Every
failure a server reports is printed as one line, `conveyor <command>: <AWS code>: <message>`.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, urlencode, urlsplit

import botocore.config
import botocore.session
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.httpsession import URLLib3Session

from conveyor.cli.job_request import UsageError
from conveyor.durations import format_duration
from conveyor.settings import Settings

DEFAULT_ENDPOINT = "http://127.0.0.1:8765"
ENDPOINT_ENV = "CONVEYOR_ENDPOINT"
DEFAULT_REGION = "us-east-1"
PAGE_SIZE = 100  # the largest MaxResults of ListTransformJobs and ListModels


class NoKeysError(Exception):
    """Neither the AWS chain nor Conveyor's key file holds credentials."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--endpoint",
        default=os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT,
        metavar="URL",
        help=f"the Conveyor server (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})",
    )
    group.add_argument("--region", help=f"region to sign requests for (default: the AWS configuration's, else {DEFAULT_REGION})")
    group.add_argument("--profile", help="AWS profile whose keys sign requests (default: the standard AWS chain)")


def add_action(
    actions: argparse._SubParsersAction, group: str, name: str, summary: str, run: "Action", example: str
) -> argparse.ArgumentParser:
    """One `conveyor <group> <name>` sub-command, with the connection flags and error handling."""
    parser = actions.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_arguments(parser)
    parser.set_defaults(handler=command(f"{group} {name}", run))
    return parser


@dataclass
class Connection:
    """One server, and the keys that sign requests to it."""

    endpoint: str
    region: str
    credentials: Credentials
    timeout: float = 60.0
    _http: URLLib3Session = field(default_factory=URLLib3Session, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Connection":
        endpoint = args.endpoint.rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--endpoint {args.endpoint!r}: expected a URL such as {DEFAULT_ENDPOINT}")
        session = botocore.session.Session(profile=args.profile)
        credentials = session.get_credentials() or _conveyor_key_file()
        region = args.region or session.get_config_variable("region") or DEFAULT_REGION
        return cls(endpoint, region, credentials)

    @cached_property
    def sagemaker(self) -> Any:
        """A SageMaker client for this server (botocore's, so the base install needs no boto3);
        retries off, so errors surface at once."""
        config = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=self.timeout)
        return botocore.session.Session().create_client(
            "sagemaker",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key,
            aws_session_token=self.credentials.token,
            config=config,
        )

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """A SigV4-signed GET of one of Conveyor's own routes (`/conveyor/v1/…`), as JSON.

        An error answer is raised as botocore's `ClientError`, as the boto3 client raises it.
        """
        query = urlencode({key: value for key, value in params.items() if value is not None})
        request = AWSRequest(method="GET", url=f"{self.endpoint}{path}" + (f"?{query}" if query else ""))
        SigV4Auth(self.credentials.get_frozen_credentials(), "sagemaker", self.region).add_auth(request)
        response = self._http.send(request.prepare())
        try:
            body = orjson.loads(response.content) if response.content else {}
        except orjson.JSONDecodeError:
            body = {"message": response.content.decode("utf-8", "replace").strip()}
        if response.status_code >= 300 or "__type" in body:
            code = str(body.get("__type") or f"HTTP{response.status_code}").rpartition("#")[2]
            message = body.get("message") or body.get("Message") or ""
            raise ClientError({"Error": {"Code": code, "Message": message}}, f"GET {path}")
        return body


def job_route(name: str, view: str) -> str:
    """The path of one of Conveyor's per-job routes: `progress` or `logs`."""
    return f"/conveyor/v1/jobs/{quote(name, safe='')}/{view}"


def _conveyor_key_file() -> Credentials:
    """The `[default]` keys (or the first complete section) of the server's key file."""
    path = Settings.from_environ().home / "credentials"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as error:
        raise NoKeysError(
            f"no AWS credentials found, and none readable in {path} ({getattr(error, 'strerror', None) or error}). "
            f"Set AWS_SHARED_CREDENTIALS_FILE to the server's credentials file, or CONVEYOR_HOME to its state directory."
        ) from None
    sections = ["default", *(name for name in parser.sections() if name != "default")]
    for section in sections:
        if parser.has_section(section):
            access_key = parser.get(section, "aws_access_key_id", fallback="").strip()
            secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
            if access_key and secret:
                return Credentials(access_key, secret)
    raise NoKeysError(f"no AWS credentials found, and {path} holds no aws_access_key_id / aws_secret_access_key pair")


Action = Callable[[Connection, argparse.Namespace], "int | None"]


def command(name: str, action: Action) -> Callable[[argparse.Namespace], int]:
    """A sub-command's handler: connect, run `action`, and turn every failure into one line.

    Exit status: 0 success, 1 the server refused or could not be reached, 2 a usage error,
    130 interrupted.
    """

    def handler(args: argparse.Namespace) -> int:
        try:
            connection = Connection.from_args(args)
            return int(action(connection, args) or 0)
        except UsageError as error:
            return fail(name, str(error), status=2)
        except ParamValidationError as error:
            return fail(name, f"ParamValidationError: {_one_line(str(error.kwargs.get('report', error)))}", status=2)
        except ClientError as error:
            details = error.response.get("Error", {})
            return fail(name, f"{details.get('Code', 'Error')}: {_one_line(details.get('Message', ''))}")
        except (NoKeysError, NoCredentialsError) as error:
            return fail(name, str(error))
        except EndpointConnectionError:
            return fail(name, f"cannot reach a Conveyor server at {args.endpoint}: start one with `conveyor server`, or point --endpoint (or ${ENDPOINT_ENV}) at it")
        except BotoCoreError as error:
            return fail(name, _one_line(str(error)))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `conveyor logs JOB | head`: the reader has gone; so do we, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return handler


def fail(name: str, message: str, *, status: int = 1) -> int:
    print(f"conveyor {name}: {message}", file=sys.stderr)
    return status


def _one_line(message: str) -> str:
    """The first line of a message: a signature error carries the canonical request after it."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[0] if lines else ""


def first_items(call: Callable[..., dict[str, Any]], key: str, limit: int, **request: Any) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` items of a paginated List* operation, and whether more remain after them."""
    items: list[dict[str, Any]] = []
    while True:
        page = call(**request, MaxResults=min(PAGE_SIZE, limit - len(items)))
        items.extend(page[key])
        request["NextToken"] = page.get("NextToken")
        if not request["NextToken"] or len(items) >= limit:
            return items, bool(request["NextToken"])


# Output shared by the commands: tables, times, sizes.


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]], file: Any = None) -> None:
    """Plain columns separated by two spaces: readable in a terminal, and by `awk` and `cut`."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]
    for row in [list(headers), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=file or sys.stdout)


def local_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def size(count: int | float | None) -> str:
    """Bytes for a person: `512 B`, `3.4 KB`, `1.2 MB`, `2.0 GB` (binary units, as MaxPayloadInMB)."""
    if count is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{int(count)} B"


def since(start: datetime | None, end: datetime | None = None) -> float | None:
    if start is None:
        return None
    return ((end or datetime.now(timezone.utc)) - start).total_seconds()


def json_text(value: Any) -> str:
    """A boto3 response as indented JSON (timestamps in ISO 8601), as `--json` prints it."""
    value = {key: item for key, item in value.items() if key != "ResponseMetadata"} if isinstance(value, dict) else value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode()


def case_insensitive(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse `type` that accepts `completed` for `Completed`, and names the choices otherwise."""
    by_lower = {choice.lower(): choice for choice in choices}

    def convert(value: str) -> str:
        try:
            return by_lower[value.lower()]
        except KeyError:
            raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(choices)})") from None

    convert.__name__ = "choice"
    return convert


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number
