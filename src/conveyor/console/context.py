"""What every console view needs: the service, the templates, the sessions, and flash notices
(short messages shown once on the next page, carried in the session cookie)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from conveyor.console.auth import Sessions, current_session, set_session
from conveyor.service import Service

T = TypeVar("T")


@dataclass(frozen=True)
class Console:
    service: Service
    templates: Jinja2Templates
    sessions: Sessions

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a service call (SQLite, storage) off the event loop."""
        return await run_in_threadpool(function, *args)

    def render(self, request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
        session = current_session(request)
        notices = list(session.notices)
        if notices:
            set_session(request, replace(session, notices=()))
        response = self.templates.TemplateResponse(request, template, {**context, "notices": notices}, status_code=status_code)
        response.headers["cache-control"] = "no-store"
        return response

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        """A 303 to a console path (`/jobs/x`), after a POST."""
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + path, status_code=303)


def flash(request: Request, kind: str, text: str) -> None:
    """Show `text` once on the next page (`kind`: success, error, info)."""
    session = current_session(request)
    set_session(request, replace(session, notices=(*session.notices, (kind, text))[-5:]))
