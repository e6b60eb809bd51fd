"""Batch transform jobs: the list (filters, sorting, pages, Actions), the detail page, Stop,
and the JSON the pages poll to stay live (rows, progress, log tail, outputs, previews)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor.console.context import Console, flash
from conveyor.console.outputs import OutputError, OutputListing, list_outputs, preview
from conveyor.console.templating import format_size, format_time
from conveyor.durations import format_duration
from conveyor.errors import ConveyorError, job_not_found
from conveyor.service import JOB_STATUSES as STATUSES
from conveyor.service import TERMINAL_STATUSES, JobProgress
from conveyor.service.objects_text import objects_finished, objects_text

SORT_COLUMNS = {"name": "Name", "created": "CreationTime", "status": "Status"}
PAGE_SIZES = (10, 25, 50, 100)
LOG_PAGE = 500
FINE_PROGRESS_BYTES = 256 << 20  # inputs this large show progress by bytes read


def _percent(status: str, progress: dict[str, Any]) -> int:
    """Objects finished (done or failed); for large inputs, the bytes the answered payloads reach
    (finer; capped below 100 until the job completes, while the last outputs are committed)."""
    if status == "Completed":
        return 100
    if not progress.get("ObjectsTotal"):
        return 0
    objects = int(100 * objects_finished(progress) / progress["ObjectsTotal"])
    if progress.get("BytesTotal", 0) >= FINE_PROGRESS_BYTES:
        return max(objects, min(99, int(100 * progress["BytesIn"] / progress["BytesTotal"])))
    return objects


def _bar(status: str, percent: int) -> int:
    """The bar's width: a failed job has ended, so its bar is full (and red), as a completed one's."""
    return 100 if status == "Failed" else percent


def _eta(status: str, eta: float | None, progress: dict[str, Any]) -> str:
    """The server's ETA; none once the job has ended, nor while it says 0 with objects left."""
    if eta is None or status in TERMINAL_STATUSES:
        return "—"
    if eta < 1 and objects_finished(progress) < progress.get("ObjectsTotal", 0):
        return "—"
    return format_duration(eta)


def _records_rate(value: float | None) -> str:
    """`1,234 records/s`, `12.3 records/s`, `0.42 records/s` (as the job log writes them)."""
    if value is None:
        return "—"
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return f"{shown} records/s"


def _seconds(description: dict[str, Any]) -> float:
    start = description.get("TransformStartTime") or description["CreationTime"]
    end = description.get("TransformEndTime") or datetime.now(timezone.utc)
    return (end - start).total_seconds()


def _job(console: Console, name: str) -> JobProgress:
    found = console.service.jobs_progress([name])
    if name not in found:
        raise job_not_found(name)
    return found[name]


def job_state(console: Console, name: str) -> dict[str, Any]:
    """One job as the list row, the detail page and their polling show it (all display-ready)."""
    return _state(_job(console, name))


def job_states(console: Console, names: list[str]) -> list[dict[str, Any]]:
    """The jobs that exist among `names`, in that order, from one batched read (a page's rows)."""
    found = console.service.jobs_progress(names)
    return [_state(found[name]) for name in names if name in found]


def _state(job: JobProgress) -> dict[str, Any]:
    description, progress = job
    status = description["TransformJobStatus"]
    eta = progress.get("EtaSeconds")
    rate = progress.get("MegabytesPerSecond")
    percent = _percent(status, progress)
    return {
        "name": description["TransformJobName"],
        "status": status,
        "terminal": status in TERMINAL_STATUSES,
        "model": description["ModelName"],
        "failure": description.get("FailureReason") or "",
        "created": format_time(description["CreationTime"]),
        "started": format_time(description.get("TransformStartTime")),
        "ended": format_time(description.get("TransformEndTime")),
        "duration": format_duration(_seconds(description)),
        "percent": percent,
        "bar": _bar(status, percent),
        "objects_text": objects_text(progress),
        "objects_finished": objects_finished(progress),
        "objects_done": progress.get("ObjectsDone", 0),
        "objects_total": progress.get("ObjectsTotal", 0),
        "objects_failed": progress.get("ObjectsFailed", 0),
        "objects_in_flight": progress.get("ObjectsInFlight", 0),
        "records": progress.get("Records", 0),
        "failed_records": progress.get("FailedRecords", 0),
        "errors_manifest": progress.get("ErrorsManifest") or "",
        "bytes_in": format_size(progress.get("BytesIn", 0)),
        "bytes_total": format_size(progress.get("BytesTotal", 0)),
        "bytes_out": format_size(progress.get("BytesOut", 0)),
        "rate": "—" if rate is None else f"{rate:.2f} MB/s",
        "records_rate": _records_rate(progress.get("RecordsPerSecond")),
        "model_busy": "—" if progress.get("ModelBusyFraction") is None else f"{progress['ModelBusyFraction']:.0%}",
        "eta": _eta(status, eta, progress),
    }


def _list_query(request: Request) -> dict[str, Any]:
    return _list_query_from(request.url.query)


def _list_query_from(text: str) -> dict[str, Any]:
    """The list's filters, sort and page from a query string, each checked."""
    params = QueryParams(text)
    sort = params.get("sort", "created")
    size = int(params["size"]) if params.get("size", "").isdigit() and int(params["size"]) in PAGE_SIZES else PAGE_SIZES[0]
    return {
        "status": params.get("status", "") if params.get("status", "") in STATUSES else "",
        "name": params.get("name", "").strip(),
        "sort": sort if sort in SORT_COLUMNS else "created",
        "order": "Ascending" if params.get("order") == "Ascending" else "Descending",
        "size": size,
        "token": params.get("token", ""),
        "back": params.getlist("back"),
    }


def _link(query: dict[str, Any], **changes: Any) -> str:
    merged = {**query, **changes}
    pairs = [(key, merged[key]) for key in ("status", "name", "sort", "order", "size", "token") if merged.get(key)]
    pairs += [("back", token) for token in merged.get("back") or []]
    return "?" + urlencode(pairs)


def list_page(console: Console, query: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "SortBy": SORT_COLUMNS[query["sort"]],
        "SortOrder": query["order"],
        "MaxResults": query["size"],
    }
    if query["status"]:
        request["StatusEquals"] = query["status"]
    if query["name"]:
        request["NameContains"] = query["name"]
    if query["token"]:
        request["NextToken"] = query["token"]
    error = None
    try:
        response = console.service.sagemaker.list_transform_jobs(request)
    except ConveyorError as exc:
        response, error = {"TransformJobSummaries": []}, exc.message
    rows = job_states(console, [summary["TransformJobName"] for summary in response["TransformJobSummaries"]])
    next_token = response.get("NextToken")
    sort_links = {
        column: _link(query, sort=column, token="", back=[], order="Ascending" if query["sort"] == column and query["order"] == "Descending" else "Descending")
        for column in SORT_COLUMNS
    }
    back = query["back"]
    return {
        "rows": rows,
        "query": query,
        "statuses": STATUSES,
        "page_sizes": PAGE_SIZES,
        "error": error,
        "page_number": len(back) + 1,
        "next_link": _link(query, token=next_token, back=[*back, query["token"]]) if next_token else None,
        "previous_link": _link(query, token=back[-1], back=back[:-1]) if back else None,
        "sort_links": sort_links,
    }


def _model_exists(console: Console, name: str) -> bool:
    try:
        console.service.sagemaker.describe_model({"ModelName": name})
        return True
    except ConveyorError:
        return False


def _outputs_of(console: Console, description: dict[str, Any]) -> OutputListing | None:
    output_path = (description.get("TransformOutput") or {}).get("S3OutputPath", "")
    return list_outputs(output_path, console.service.settings) if output_path else None


def job_outputs(console: Console, name: str) -> OutputListing | None:
    return _outputs_of(console, console.service.sagemaker.describe_transform_job({"TransformJobName": name}))


def detail_page(console: Console, name: str) -> dict[str, Any]:
    service = console.service
    job = _job(console, name)
    description = job.description
    try:
        tags = service.sagemaker.list_tags({"ResourceArn": description["TransformJobArn"]})["Tags"]
    except ConveyorError:
        tags = []
    return {
        "job": description,
        "state": _state(job),
        "tags": tags,
        "model_exists": _model_exists(console, description["ModelName"]),
        "outputs": _outputs_of(console, description),
    }


def routes(console: Console) -> list[Route]:
    async def jobs(request: Request) -> Response:
        query = _list_query(request)
        return console.render(request, "jobs.html", await console.call(list_page, console, query))

    async def detail(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            context = await console.call(detail_page, console, name)
        except ConveyorError as exc:
            return console.render(request, "not_found.html", {"what": "Batch transform job", "message": exc.message}, 404)
        return console.render(request, "job_detail.html", context)

    async def stop_many(request: Request) -> Response:
        form = await request.form()
        names = [name for name in form.getlist("name") if isinstance(name, str) and name]
        await console.call(_stop, console, request, names)
        listed = form.get("list_query")  # back to the list as it was: filters, sort and page kept
        query = _list_query_from(listed if isinstance(listed, str) else "")
        return console.redirect(request, "/jobs" + (_link(query) if query != _list_query_from("") else ""))

    async def stop_one(request: Request) -> Response:
        name = request.path_params["name"]
        await console.call(_stop, console, request, [name])
        return console.redirect(request, f"/jobs/{quote(name, safe='')}")

    async def rows(request: Request) -> Response:
        names = request.query_params.getlist("name")[:100]
        return JSONResponse({"jobs": await console.call(job_states, console, names)})

    async def state(request: Request) -> Response:
        try:
            return JSONResponse(await console.call(job_state, console, request.path_params["name"]))
        except ConveyorError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)

    async def logs(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            page = await console.call(lambda: console.service.logs.job_log(name, after=request.query_params.get("after") or None, limit=LOG_PAGE))
        except ConveyorError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)
        events = [
            {
                "time": datetime.fromtimestamp(event["timestamp"] / 1000, tz=timezone.utc).strftime("%H:%M:%S"),
                "stream": event["stream"].split("/", 1)[-1],
                "message": event["message"],
            }
            for event in page["events"]
        ]
        return JSONResponse({"events": events, "position": page["position"], "more": len(events) == LOG_PAGE})

    async def outputs(request: Request) -> Response:
        try:
            listing = await console.call(job_outputs, console, request.path_params["name"])
        except ConveyorError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)
        if listing is None:
            return JSONResponse({"objects": [], "truncated": False, "error": None})
        objects = [{"name": item.name, "size": format_size(item.size)} for item in listing.objects]
        return JSONResponse({"objects": objects, "truncated": listing.truncated, "error": listing.error})

    async def output_preview(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            description = await console.call(console.service.sagemaker.describe_transform_job, {"TransformJobName": name})
            output_path = description["TransformOutput"]["S3OutputPath"]
            written = await console.call(console.service.written_outputs, name)
            shown = await console.call(preview, output_path, request.query_params.get("object", ""), console.service.settings, written)
        except (ConveyorError, OutputError) as exc:
            return JSONResponse({"error": getattr(exc, "message", str(exc))}, status_code=404)
        return JSONResponse(shown.as_json())

    return [
        Route("/jobs", jobs, methods=["GET"], name="jobs"),
        Route("/jobs/stop", stop_many, methods=["POST"], name="jobs_stop"),
        Route("/jobs/{name}", detail, methods=["GET"], name="job"),
        Route("/jobs/{name}/stop", stop_one, methods=["POST"], name="job_stop"),
        Route("/api/jobs", rows, methods=["GET"]),
        Route("/api/jobs/{name}", state, methods=["GET"]),
        Route("/api/jobs/{name}/logs", logs, methods=["GET"]),
        Route("/api/jobs/{name}/outputs", outputs, methods=["GET"]),
        Route("/api/jobs/{name}/preview", output_preview, methods=["GET"]),
    ]


def _stop(console: Console, request: Request, names: list[str]) -> None:
    if not names:
        flash(request, "error", "Choose a job to stop.")
    for name in names:
        try:
            console.service.sagemaker.stop_transform_job({"TransformJobName": name})
        except ConveyorError as exc:
            flash(request, "error", f"Could not stop {name}: {exc.message}")
        else:
            flash(request, "success", f"Stopping batch transform job {name}.")
