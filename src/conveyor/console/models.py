"""Models: the list, a model's page (with the jobs that use it), Create model and Delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.console.context import Console, flash
from conveyor.console.forms import MODEL_FIELDS, PYTHON_IMAGE, Form, model_request, place_errors, read_form
from conveyor.console.templating import format_time
from conveyor.errors import ConveyorError

PAGE_SIZE = 25
RELATED_JOBS = 100


def _image(description: dict[str, Any]) -> str:
    container = description.get("PrimaryContainer") or (description.get("Containers") or [{}])[0]
    return container.get("Image") or PYTHON_IMAGE


def list_page(console: Console, name: str, token: str, back: list[str]) -> dict[str, Any]:
    request: dict[str, Any] = {"MaxResults": PAGE_SIZE, "SortBy": "CreationTime", "SortOrder": "Descending"}
    if name:
        request["NameContains"] = name
    if token:
        request["NextToken"] = token
    error = None
    try:
        response = console.service.sagemaker.list_models(request)
    except ConveyorError as exc:
        response, error = {"Models": []}, exc.message
    models = []
    for summary in response["Models"]:
        try:
            description = console.service.sagemaker.describe_model({"ModelName": summary["ModelName"]})
        except ConveyorError:
            continue
        models.append({"name": summary["ModelName"], "arn": summary["ModelArn"], "created": format_time(summary["CreationTime"]), "image": _image(description)})

    def link(page_token: str, page_back: list[str]) -> str:
        pairs = [("name", name)] if name else []
        pairs += [("token", page_token)] if page_token else []
        return "?" + urlencode(pairs + [("back", item) for item in page_back])

    next_token = response.get("NextToken")
    return {
        "models": models,
        "name": name,
        "error": error,
        "page_number": len(back) + 1,
        "next_link": link(next_token, [*back, token]) if next_token else None,
        "previous_link": link(back[-1], back[:-1]) if back else None,
    }


def _jobs_using(console: Console, model_name: str) -> list[dict[str, Any]]:
    """Recent jobs that name this model (ListTransformJobs has no model filter)."""
    jobs: list[dict[str, Any]] = []
    request: dict[str, Any] = {"MaxResults": 100}
    scanned = 0
    while scanned < 1000 and len(jobs) < RELATED_JOBS:
        page = console.service.sagemaker.list_transform_jobs(request)
        for summary in page["TransformJobSummaries"]:
            scanned += 1
            description = console.service.sagemaker.describe_transform_job({"TransformJobName": summary["TransformJobName"]})
            if description["ModelName"] == model_name:
                jobs.append({"name": summary["TransformJobName"], "status": summary["TransformJobStatus"], "created": format_time(summary["CreationTime"])})
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]
    return jobs


def detail_page(console: Console, name: str) -> dict[str, Any]:
    description = console.service.sagemaker.describe_model({"ModelName": name})
    containers = [description["PrimaryContainer"]] if description.get("PrimaryContainer") else list(description.get("Containers") or [])
    try:
        tags = console.service.sagemaker.list_tags({"ResourceArn": description["ModelArn"]})["Tags"]
    except ConveyorError:
        tags = []
    return {"model": description, "containers": containers, "tags": tags, "jobs": _jobs_using(console, name)}


def routes(console: Console) -> list[Route]:
    async def models(request: Request) -> Response:
        params = request.query_params
        context = await console.call(list_page, console, params.get("name", "").strip(), params.get("token", ""), params.getlist("back"))
        return console.render(request, "models.html", context)

    async def new_model(request: Request) -> Response:
        return console.render(request, "model_create.html", {"form": Form(), "runtime": "python"})

    async def create_model(request: Request) -> Response:
        data = await request.form()
        runtime = "image" if data.get("runtime") == "image" else "python"
        form = read_form(data, MODEL_FIELDS, ("primaryContainer.environment",))
        body = model_request(form, runtime)
        if not form.error_count:
            try:
                await console.call(console.service.sagemaker.create_model, body)
            except ConveyorError as exc:
                place_errors(form, exc, [*MODEL_FIELDS, "primaryContainer.environment", "primaryContainer"])
            else:
                flash(request, "success", f"Created model {body['ModelName']}.")
                return console.redirect(request, f"/models/{body['ModelName']}")
        return console.render(request, "model_create.html", {"form": form, "runtime": runtime}, 400)

    async def detail(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            context = await console.call(detail_page, console, name)
        except ConveyorError as exc:
            return console.render(request, "not_found.html", {"what": "Model", "message": exc.message}, 404)
        return console.render(request, "model_detail.html", context)

    async def delete(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            await console.call(console.service.sagemaker.delete_model, {"ModelName": name})
        except ConveyorError as exc:
            flash(request, "error", f"Could not delete {name}: {exc.message}")
            return console.redirect(request, f"/models/{quote(name, safe='')}")
        flash(request, "success", f"Deleted model {name}.")
        return console.redirect(request, "/models")

    return [
        Route("/models", models, methods=["GET"], name="models"),
        Route("/models/create", new_model, methods=["GET"], name="model_create"),
        Route("/models/create", create_model, methods=["POST"]),
        Route("/models/{name}", detail, methods=["GET"], name="model"),
        Route("/models/{name}/delete", delete, methods=["POST"], name="model_delete"),
    ]
