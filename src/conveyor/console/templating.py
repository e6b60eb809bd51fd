"""The console's Jinja2 environment: templates beside this module, autoescaping on, and the
few filters the pages share (times in UTC, durations, sizes)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from conveyor.console.auth import NO_AUTH_USER, current_session
from conveyor.durations import format_duration
from conveyor.service import TERMINAL_STATUSES

HERE = Path(__file__).parent


def format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def format_size(size: int | None) -> str:
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _console_context(request: Request) -> dict[str, Any]:
    session = current_session(request)
    return {
        "session": session,
        "csrf_token": session.csrf,
        "signed_in_as": None if session.user in (None, NO_AUTH_USER) else session.user,
        "base": request.scope.get("root_path", "").rstrip("/"),
        "terminal_statuses": TERMINAL_STATUSES,
    }


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"), context_processors=[_console_context])
    templates.env.filters.update(when=format_time, duration=duration, size=format_size)
    templates.env.globals["terminal_statuses"] = TERMINAL_STATUSES
    return templates
