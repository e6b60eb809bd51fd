"""`conveyor server`: SageMaker's API for batch transform jobs, served from this machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Callable

import uvicorn

from conveyor.api.app import Credentials, create_app
from conveyor.api.connections import AcceptErrorLog, connection_limit, protocol_class
from conveyor.api.credentials import CredentialsError, keys_from_env, load_or_create_credentials, static_lookup
from conveyor.cli.backend_options import add_backend_arguments, backend_overrides
from conveyor.cli.gpu_options import add_gpu_arguments, gpu_overrides
from conveyor.cli.server_lock import HomeInUse, ServerLock
from conveyor.collector import settle_after_start
from conveyor.engine.backend import Backend
from conveyor.engine.backends import open_backend
from conveyor.engine.ray_backend import RayUnavailable
from conveyor.sagemaker.instance_types import ProfileError, instance_types
from conveyor.service import DATABASE_FILE, Service, UnreadableDatabase
from conveyor.settings import RUNTIME_CHOICES, Settings, SettingsError, parse_local_roots, parse_runtimes, parse_shard_size

EXAMPLES = """examples:
  conveyor server                              # http://127.0.0.1:8765, state in ~/.conveyor
  conveyor server --port 9000 --home ./state   # another port and state directory
  conveyor server --s3-endpoint http://127.0.0.1:9000 --capacity 2

Then, from another shell:
  export AWS_SHARED_CREDENTIALS_FILE=~/.conveyor/credentials
  conveyor jobs list
  aws sagemaker list-transform-jobs --endpoint-url http://127.0.0.1:8765

Stop it with Ctrl-C (or SIGTERM): running jobs resume when a server starts again on the same
state directory. One server serves a state directory; a second is refused unless every server
sharing it was started with --shared-home.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "server",
        help="serve SageMaker's batch transform API (and the console) on this machine",
        description=(
            "Serve SageMaker's API for transform jobs and models: boto3, the AWS CLI and SageMaker SDK code work "
            "against it by changing only endpoint_url. Jobs run in the background and survive a restart."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (default $CONVEYOR_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--home", help="state directory (default $CONVEYOR_HOME or ~/.conveyor)")
    parser.add_argument("--capacity", type=int, help="instances that may run at once (default: CPU count)")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL for s3:// locations (an S3-compatible store)")
    parser.add_argument("--no-auth", action="store_true", help="accept unsigned requests (a single-user laptop only)")
    parser.add_argument(
        "--local-root", action="append", metavar="DIR",
        help="a tree file:// locations may use (repeatable; default $CONVEYOR_LOCAL_ROOTS, else any path on loopback "
        "and none on another address); see docs/security.md",
    )
    parser.add_argument(
        "--log-quota-mb", type=int, metavar="MB",
        help="log one job may store; later lines are counted and dropped (default $CONVEYOR_LOG_QUOTA_MB or 100)",
    )
    parser.add_argument(
        "--max-connections", type=int, metavar="N",
        help="connections kept open at once; a request on one past it is answered 503 (default "
        "$CONVEYOR_MAX_CONNECTIONS or 1000, lowered to fit ulimit -n)",
    )
    parser.add_argument(
        "--header-timeout", type=float, metavar="SECONDS",
        help="close a connection that has not sent a request's headers within this time (default "
        "$CONVEYOR_HEADER_TIMEOUT or 10)",
    )
    parser.add_argument(
        "--keep-alive-timeout", type=float, metavar="SECONDS",
        help="close an idle keep-alive connection after this time (default $CONVEYOR_KEEP_ALIVE_TIMEOUT or 5)",
    )
    parser.add_argument(
        "--runtimes", metavar="KINDS",
        help=f"model kinds this server runs, from {','.join(RUNTIME_CHOICES)} (default: all, which runs users' code "
        "on this host); e.g. docker,http,builtin",
    )
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
    add_gpu_arguments(parser)
    add_backend_arguments(parser)
    parser.add_argument(
        "--shared-home", action="store_true",
        help="let several servers share the state directory on purpose (each applies its own --capacity)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = {
        "capacity": args.capacity, "s3_endpoint_url": args.s3_endpoint, "host": args.host, "log_quota_mb": args.log_quota_mb, "install_requirements": args.install_requirements,
        "max_connections": args.max_connections, "header_timeout_seconds": args.header_timeout,
        "keep_alive_seconds": args.keep_alive_timeout,
    }
    if args.home:
        overrides["home"] = Path(args.home).expanduser().resolve()
    try:
        if args.local_root:
            overrides["local_roots"] = parse_local_roots(args.local_root)
        if args.shard_size is not None:
            overrides["shard_size_mb"] = parse_shard_size(args.shard_size, "--shard-size")
        if args.runtimes is not None:
            overrides["runtimes"] = parse_runtimes(args.runtimes)
        settings = Settings.from_environ(**overrides, **gpu_overrides(args), **backend_overrides(args))
        instance_types(settings.instance_types_file)  # a broken profiles file is refused now, not at each job
    except (SettingsError, ProfileError) as error:
        print(f"conveyor server: {error}", file=sys.stderr)
        return 2
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        lock = ServerLock(settings.home, shared=args.shared_home)
    except HomeInUse as error:
        print(f"conveyor server: {error}", file=sys.stderr)
        return 1
    try:
        return _serve(args, settings, lock)
    finally:
        lock.release()


def _serve(args: argparse.Namespace, settings: Settings, lock: ServerLock) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    endpoint = f"http://{settings.host}:{args.port}"
    try:
        listener = _listen(settings.host, args.port)
    except OSError as error:
        print(f"conveyor server: cannot listen on {settings.host}:{args.port} (--host, --port): {_reason(error)}", file=sys.stderr)
        return 1
    database = settings.home / DATABASE_FILE
    database_lost = (settings.home / "credentials").exists() and not database.exists()
    credentials = None
    if args.no_auth:
        print("WARNING: authentication is OFF (--no-auth): anyone who can reach this port can run jobs.", file=sys.stderr)
    else:
        try:
            env_keys = keys_from_env(os.environ)
        except CredentialsError as exc:
            print(f"conveyor server: {exc}", file=sys.stderr)
            return 2
        if env_keys:
            credentials = static_lookup(env_keys)
            print("Access keys: from CONVEYOR_ACCESS_KEY_ID / CONVEYOR_SECRET_ACCESS_KEY.")
        else:
            path = settings.home / "credentials"
            try:
                stored = load_or_create_credentials(path)
            except CredentialsError as exc:
                print(f"conveyor server: {exc}", file=sys.stderr)
                return 2
            credentials = stored.lookup
            if stored.created:
                print(f"Created access keys in {path} (shown once):")
                print(f"  aws_access_key_id     = {stored.access_key_id}")
                print(f"  aws_secret_access_key = {stored.secret_access_key}")
            print("Point boto3 and the AWS CLI at this server with:")
            print(f"  export AWS_SHARED_CREDENTIALS_FILE={path}")
    lock.record(endpoint)
    if database_lost:
        print(
            f"WARNING: {database} is missing although {settings.home / 'credentials'} exists: starting with an empty "
            "store (no models, jobs or logs). If the state directory was moved or partly restored, stop this server "
            "and put the database back.",
            file=sys.stderr,
        )
    try:
        backend = open_backend(settings, capacity_given=args.capacity is not None or bool(os.environ.get("CONVEYOR_CAPACITY")))
    except RayUnavailable as error:
        print(f"conveyor server: {error}", file=sys.stderr)
        return 2
    try:
        return _serve_with(args, backend.settings, backend.new_backend, listener, endpoint, credentials)
    finally:
        backend.close()


def _serve_with(
    args: argparse.Namespace, settings: Settings, new_backend: Callable[[], Backend], listener: socket.socket, endpoint: str, credentials: Credentials | None
) -> int:
    try:
        service = Service(settings, backend_factory=new_backend).start()
    except UnreadableDatabase as error:
        print(f"conveyor server: {error}", file=sys.stderr)
        return 1
    print(f"Conveyor is serving SageMaker's API at {endpoint} (state in {settings.home})")
    print(f"  boto3:   boto3.client('sagemaker', endpoint_url='{endpoint}', region_name='{settings.region}')")
    print(f"  AWS CLI: aws sagemaker list-transform-jobs --endpoint-url {endpoint} --region {settings.region}")
    print(f"  console: {endpoint}/console", flush=True)
    app = create_app(service, credentials=credentials)
    settle_after_start()
    limit = connection_limit(settings.max_connections)
    if limit < settings.max_connections:
        print(f"  connections: at most {limit} (--max-connections {settings.max_connections} lowered to fit ulimit -n)")
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
        http=protocol_class(limit, settings.header_timeout_seconds),
    )
    try:
        asyncio.run(_run_uvicorn(uvicorn.Server(config), listener))
    finally:
        service.close()
    return 0


async def _run_uvicorn(server: uvicorn.Server, listener: socket.socket) -> None:
    """uvicorn's serve loop, with accept errors logged once a minute (api.connections)."""
    asyncio.get_running_loop().set_exception_handler(AcceptErrorLog())
    await server.serve(sockets=[listener])


def _reason(error: OSError) -> str:
    """`address already in use`, without the address the message already names."""
    return os.strerror(error.errno).lower() if error.errno else str(error)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the banner so that the banner is only printed by a
    server that has its port. It listens only once uvicorn serves on it (asyncio calls listen()),
    after the state is open: a client that connects earlier is refused, not left waiting on a
    server that may yet fail to start."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener
