"""Create batch transform job: the form (grouped as SageMaker's console groups it), Clone,
and the submit that calls CreateTransformJob and puts its errors next to their fields."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.console.context import Console, flash
from conveyor.console.forms import JOB_DEFAULTS, JOB_FIELDS, Form, job_form_from, job_request, place_errors, read_form
from conveyor.errors import ConveyorError
from conveyor.sagemaker import shapes
from conveyor.sagemaker.instance_types import LOCAL_TYPES

MAX_MODELS = 1000
NAME_LIMIT = 63


def model_names(console: Console) -> list[str]:
    """Every model, newest first, for the model chooser."""
    names: list[str] = []
    request: dict[str, Any] = {"MaxResults": 100, "SortBy": "CreationTime", "SortOrder": "Descending"}
    while len(names) < MAX_MODELS:
        page = console.service.sagemaker.list_models(request)
        names += [model["ModelName"] for model in page["Models"]]
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    return names


def _choices() -> dict[str, list[str]]:
    return {
        "instance_types": [*LOCAL_TYPES, *shapes.enum_values("TransformInstanceType")],
        "batch_strategies": shapes.enum_values("BatchStrategy"),
        "data_types": ["ManifestFile", "S3Prefix"],
        "compression_types": shapes.enum_values("CompressionType"),
        "split_types": shapes.enum_values("SplitType"),
        "assembly_types": shapes.enum_values("AssemblyType"),
        "join_sources": shapes.enum_values("JoinSource"),
    }


def _job_exists(console: Console, name: str) -> bool:
    try:
        console.service.sagemaker.describe_transform_job({"TransformJobName": name})
    except ConveyorError:
        return False
    return True


def _clone_name(console: Console, name: str) -> str:
    """`<name>-copy`, `<name>-copy-2`, … : the first that is free (and at most 63 characters)."""
    for attempt in range(1, 100):
        suffix = "-copy" if attempt == 1 else f"-copy-{attempt}"
        candidate = name[: NAME_LIMIT - len(suffix)].rstrip("-") + suffix
        if not _job_exists(console, candidate):
            return candidate
    return ""


def clone_form(console: Console, name: str) -> Form:
    description = console.service.sagemaker.describe_transform_job({"TransformJobName": name})
    try:
        tags = console.service.sagemaker.list_tags({"ResourceArn": description["TransformJobArn"]})["Tags"]
    except ConveyorError:
        tags = []
    form = job_form_from(description, tags)
    form.values["transformJobName"] = _clone_name(console, name)
    return form


def _context(console: Console, form: Form, clone_of: str | None = None) -> dict[str, Any]:
    return {"form": form, "models": model_names(console), "clone_of": clone_of, **_choices()}


def routes(console: Console) -> list[Route]:
    async def new_job(request: Request) -> Response:
        source = request.query_params.get("clone")
        form = Form(values=dict(JOB_DEFAULTS))
        if request.query_params.get("model"):
            form.values["modelName"] = request.query_params["model"]
        if source:
            try:
                form = await console.call(clone_form, console, source)
            except ConveyorError as exc:
                form.add_error(None, f"Cannot clone {source}: {exc.message}")
                source = None
        return console.render(request, "job_create.html", await console.call(_context, console, form, source))

    async def create_job(request: Request) -> Response:
        form = read_form(await request.form(), JOB_FIELDS, ("environment", "tags"))
        body = job_request(form)
        if not form.error_count:
            try:
                await console.call(console.service.sagemaker.create_transform_job, body)
            except ConveyorError as exc:
                place_errors(form, exc, [*JOB_FIELDS, "environment", "tags"])
            else:
                name = body["TransformJobName"]
                flash(request, "success", f"Created batch transform job {name}.")
                return console.redirect(request, f"/jobs/{name}")
        clone_of = (await request.form()).get("clone_of") or None
        return console.render(request, "job_create.html", await console.call(_context, console, form, clone_of), 400)

    return [
        Route("/jobs/create", new_job, methods=["GET"], name="job_create"),
        Route("/jobs/create", create_job, methods=["POST"]),
    ]
