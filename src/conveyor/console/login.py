"""Sign in with the server's access key id and secret access key (the keys boto3 signs with),
and sign out. Under `--no-auth` the console opens directly and these pages step aside.
Failed sign-ins are throttled (console.throttle); signing out revokes the session (console.auth)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conveyor.console.auth import current_session, set_session
from conveyor.console.context import Console
from conveyor.console.throttle import SignInThrottle

FAILED_SIGN_IN_DELAY_SECONDS = 0.5


def _next_path(request: Request, wanted: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    base = request.scope.get("root_path", "").rstrip("/")
    if wanted and wanted.startswith(base + "/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return base + "/jobs"


def routes(console: Console) -> list[Route]:
    throttle = SignInThrottle()

    async def login_page(request: Request) -> Response:
        wanted = _next_path(request, request.query_params.get("next"))
        if current_session(request).signed_in:
            return RedirectResponse(wanted, status_code=303)
        return console.render(request, "login.html", {"next": wanted, "access_key_id": "", "error": None})

    async def log_in(request: Request) -> Response:
        form = await request.form()
        access_key_id = str(form.get("access_key_id") or "")
        wanted = _next_path(request, str(form.get("next") or ""))
        address = request.client.host if request.client else "an unknown address"
        refusal = throttle.refusal(address) if console.sessions.auth_enabled else None
        if refusal is not None:
            return console.render(request, "login.html", {"next": wanted, "access_key_id": access_key_id, "error": refusal}, 429)
        session = console.sessions.log_in(access_key_id, str(form.get("secret_access_key") or ""))
        if session is None:
            throttle.failed(address)
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_SECONDS)  # slows guessing
            error = "The access key ID or secret access key is not correct: use the keys the server printed or keeps in its credentials file."
            return console.render(request, "login.html", {"next": wanted, "access_key_id": access_key_id, "error": error}, 401)
        set_session(request, session)
        return RedirectResponse(wanted, status_code=303)

    async def log_out(request: Request) -> Response:
        set_session(request, console.sessions.log_out(current_session(request)))
        return console.redirect(request, "/login")

    async def home(request: Request) -> Response:
        return console.redirect(request, "/jobs")

    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_page, methods=["GET"], name="login"),
        Route("/login", log_in, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"], name="logout"),
    ]
