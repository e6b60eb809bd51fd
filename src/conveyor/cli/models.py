"""`conveyor models list|describe|create|delete`: models on a Conveyor server."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from conveyor.cli import client
from conveyor.cli.client import Connection
from conveyor.cli.job_request import UsageError

DEFAULT_IMAGE = "conveyor:python"
SORT_KEYS = ("CreationTime", "Name")
SORT_ORDERS = ("Descending", "Ascending")

EXAMPLES = f"""examples:
  conveyor models create my-model --model-data ./model            # a directory with code/inference.py
  conveyor models create my-model --model-data s3://bucket/model.tar.gz --env SAGEMAKER_PROGRAM=inference.py
  conveyor models list
  conveyor models describe my-model
  conveyor models delete my-model

A local --model-data path is sent as its absolute path: the server reads it from this machine's
disk, so it must be the same machine (or a shared file system). The image defaults to
{DEFAULT_IMAGE}, which runs code/inference.py in-process.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "models",
        help="create, list, describe and delete models on a server",
        description="Models on a Conveyor server (`conveyor server`): what a transform job's ModelName refers to.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = client.add_action(actions, "models", "list", "list models, newest first", _list, "conveyor models list --name-contains xgb")
    listing.add_argument("--name-contains", metavar="TEXT", help="only models whose name contains TEXT")
    listing.add_argument("--sort-by", type=client.case_insensitive(SORT_KEYS), default="CreationTime", metavar="KEY", help="CreationTime (default) or Name")
    listing.add_argument("--sort-order", type=client.case_insensitive(SORT_ORDERS), default="Descending", metavar="ORDER", help="Descending (default) or Ascending")
    listing.add_argument("--max", type=client.positive_int, default=50, metavar="N", help="show at most N models (default 50)")

    describe = client.add_action(actions, "models", "describe", "show one model: its image, model data and environment", _describe, "conveyor models describe my-model --json")
    describe.add_argument("name", metavar="NAME", help="ModelName")
    describe.add_argument("--json", action="store_true", help="print DescribeModel's response as JSON instead")

    create = client.add_action(actions, "models", "create", "create a model from model data and an image", _create, "conveyor models create my-model --model-data ./model --env LOG_LEVEL=debug")
    create.add_argument("name", metavar="NAME", help="ModelName")
    create.add_argument(
        "--model-data", required=True, metavar="PATH_OR_URI",
        help="ModelDataUrl: a model directory or model.tar.gz on this machine, or an s3:// or file:// URI",
    )
    create.add_argument("--image", default=DEFAULT_IMAGE, help=f"the container image, which picks the runtime (default {DEFAULT_IMAGE})")
    create.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an Environment entry for the container (repeatable)")

    delete = client.add_action(actions, "models", "delete", "delete a model (jobs already created with it are unaffected)", _delete, "conveyor models delete my-model")
    delete.add_argument("name", metavar="NAME", help="ModelName")


def _list(connection: Connection, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"SortBy": args.sort_by, "SortOrder": args.sort_order}
    if args.name_contains:
        request["NameContains"] = args.name_contains
    models, more = client.first_items(connection.sagemaker.list_models, "Models", args.max, **request)
    if not models:
        print("No models" + (" match." if args.name_contains else "."), file=sys.stderr)
        return 0
    client.print_table(("NAME", "CREATED", "ARN"), ((m["ModelName"], client.local_time(m["CreationTime"]), m["ModelArn"]) for m in models))
    if more:
        print(f"(more models than --max {args.max}; raise it to see them)", file=sys.stderr)
    return 0


def _describe(connection: Connection, args: argparse.Namespace) -> int:
    model = connection.sagemaker.describe_model(ModelName=args.name)
    if args.json:
        print(client.json_text(model))
        return 0
    fields: list[tuple[str, str]] = [("Name", model["ModelName"]), ("Created", client.local_time(model.get("CreationTime")))]
    containers = [model["PrimaryContainer"]] if model.get("PrimaryContainer") else model.get("Containers") or []
    for index, container in enumerate(containers):
        prefix = "" if len(containers) == 1 else f"Container {index + 1} "
        fields.append((prefix + "Image", container.get("Image") or "-"))
        fields.append((prefix + "ModelDataUrl", container.get("ModelDataUrl") or "-"))
        if container.get("Environment"):
            fields.append((prefix + "Environment", " ".join(f"{k}={v}" for k, v in container["Environment"].items())))
    if len(containers) > 1:
        fields.append(("InferenceMode", (model.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")))
    if model.get("ExecutionRoleArn"):
        fields.append(("ExecutionRoleArn", model["ExecutionRoleArn"]))
    fields.append(("Arn", model["ModelArn"]))
    width = max(len(label) for label, _ in fields) + 2
    for label, value in fields:
        print(f"{label + ':':<{width}}{value}")
    return 0


def _create(connection: Connection, args: argparse.Namespace) -> int:
    container: dict[str, Any] = {"Image": args.image, "ModelDataUrl": model_data_url(args.model_data)}
    environment = {}
    for entry in args.env:
        key, separator, value = entry.partition("=")
        if not separator or not key:
            raise UsageError(f"--env {entry!r}: expected KEY=VALUE")
        environment[key] = value
    if environment:
        container["Environment"] = environment
    response = connection.sagemaker.create_model(ModelName=args.name, PrimaryContainer=container)
    print(response["ModelArn"])
    return 0


def model_data_url(value: str) -> str:
    """A URI as given; a local path made absolute (it must exist), since the server resolves it."""
    if "://" in value:
        return value
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        raise UsageError(f"--model-data {value}: no such file or directory (give a local path, or an s3:// or file:// URI)")
    return path


def _delete(connection: Connection, args: argparse.Namespace) -> int:
    connection.sagemaker.delete_model(ModelName=args.name)
    print(f"Deleted model {args.name}")
    return 0
