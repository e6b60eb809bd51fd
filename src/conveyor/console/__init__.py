"""The web console at `/console`: server-rendered pages (Jinja2), one hand-written script and
one stylesheet, no front-end build step.

Pages: batch transform jobs (list, create, clone, detail with live progress, log tail and
output previews, stop) and models (list, create, detail, delete). Every page and every JSON
route behind it needs a session (see `auth`); `--no-auth` opens the console directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.console import job_form, jobs, login, models
from conveyor.console.auth import Revocations, SessionMiddleware, Sessions, console_secret
from conveyor.console.context import Console
from conveyor.console.templating import make_templates
from conveyor.service import Service

__all__ = ["console_routes"]

HERE = Path(__file__).parent


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/jobs", status_code=307)


def console_routes(service: Service, *, credentials: Callable[[str], "str | None"] | None, secret_key: str | None = None) -> list[BaseRoute]:
    """The console's Mount at `/console`, and redirects to its jobs page for browsers that GET
    `/` or `/console` (the API is `POST /`, which the redirects leave alone; the Mount's own
    router redirects `/console/jobs/` and the like to the route without the slash).

    `credentials` is the API's key lookup (None under `--no-auth`); `secret_key` signs the
    session cookies (default: one kept in `<home>/console-secret`).
    """
    home = service.settings.home
    sessions = Sessions(secret_key or console_secret(home), credentials, Revocations(home))
    console = Console(service, make_templates(), sessions)
    routes = [
        *login.routes(console),
        *job_form.routes(console),  # before jobs: `/jobs/create` is not a job's name
        *jobs.routes(console),
        *models.routes(console),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    mount = Mount("/console", routes=routes, name="console", middleware=[Middleware(SessionMiddleware, sessions=sessions)])
    return [Route("/", _to_console, methods=["GET"]), Route("/console", _to_console, methods=["GET"]), mount]
