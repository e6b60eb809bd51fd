"""The server's HTTP application: SageMaker's and CloudWatch Logs' AWS JSON endpoint at `/`,
and Conveyor's own read-only routes under `/conveyor/v1/` (same SigV4 authentication):

- `GET /conveyor/v1/jobs/{name}/progress`: objects, records, bytes, MB/s and ETA;
- `GET /conveyor/v1/jobs/{name}/logs?after=POSITION&limit=N`: the job's log in time order.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from conveyor.api.protocol import AwsJsonEndpoint, AwsRequest, aws_error, new_request_id, raw_path
from conveyor.api.sigv4 import verify_sigv4
from conveyor.console import console_routes
from conveyor.errors import ConveyorError
from conveyor.service import Service

Credentials = Callable[[str], "str | None"]


def _json(data: Any, request_id: str) -> Response:
    return Response(orjson.dumps(data), media_type="application/json", headers={"x-amzn-RequestId": request_id})


def _conveyor_route(service: Service, credentials: Credentials | None, view: Callable[[Request], Any]) -> Callable:
    async def endpoint(request: Request) -> Response:
        request_id = new_request_id()
        try:
            if credentials is not None:
                verify_sigv4(
                    method=request.method,
                    path=raw_path(request.scope),
                    query=request.scope.get("query_string", b"").decode("latin-1"),
                    headers=request.headers,
                    body=b"",
                    credentials=credentials,
                    services=("sagemaker",),
                )
            return _json(await run_in_threadpool(view, request), request_id)
        except ConveyorError as error:
            return aws_error(error, request_id=request_id)

    return endpoint


def _taking_bodies(operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> dict[str, Callable[[AwsRequest], dict[str, Any]]]:
    """The service takes request bodies; the endpoint hands over whole parsed requests."""
    def taking_body(operation: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[AwsRequest], dict[str, Any]]:
        return lambda call: operation(call.body)

    return {target: taking_body(operation) for target, operation in operations.items()}


def create_app(service: Service, *, credentials: Credentials | None, extra_routes: list | None = None) -> Starlette:
    """`credentials=None` turns authentication off (`conveyor server --no-auth`)."""

    def progress(request: Request) -> dict[str, Any]:
        return service.progress(request.path_params["name"])

    def logs(request: Request) -> dict[str, Any]:
        limit = request.query_params.get("limit", "1000")
        return service.logs.job_log(request.path_params["name"], after=request.query_params.get("after"), limit=int(limit) if limit.isdigit() else 1000)

    routes = [
        Route("/conveyor/v1/jobs/{name}/progress", _conveyor_route(service, credentials, progress), methods=["GET"]),
        Route("/conveyor/v1/jobs/{name}/logs", _conveyor_route(service, credentials, logs), methods=["GET"]),
        *(extra_routes or []),
        *console_routes(service, credentials=credentials),  # /console, and GET / redirects there
        Mount("/", app=AwsJsonEndpoint(_taking_bodies(service.operations()), credentials=credentials)),  # type: ignore[arg-type]
    ]
    return Starlette(routes=routes)
