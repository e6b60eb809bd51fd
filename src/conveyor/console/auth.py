"""Console sessions: log in with the server's access key and secret, then a signed cookie.

The cookie (HttpOnly, SameSite=Lax, path `/console`) holds the access key id, a session id, a
per-session CSRF token and a fingerprint of the key's secret, signed with the console's secret
key, so a rotated secret or a server switched from `--no-auth` to keys ends every old session.
Signing out records the session id as revoked on the server, so a copy of the cookie stops
working too. Every
POST under `/console` must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`); nothing but the login page and the static files answers without a session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Credentials = Callable[[str], "str | None"]

COOKIE_NAME = "conveyor_console"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 1 << 20
NO_AUTH_USER = "(no-auth)"
SECRET_FILE = "console-secret"
REVOKED_FILE = "console-revoked"
REVOKED_FILE_PRUNE_BYTES = 64 * 1024
SCOPE_KEY = "conveyor.console.session"
# Pages run only the console's own script; nothing frames them.
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
)


@dataclass(frozen=True)
class Session:
    user: str | None  # the access key id once logged in; NO_AUTH_USER under --no-auth
    csrf: str
    fingerprint: str = ""
    id: str = ""  # names a signed-in session, so that signing out can revoke it
    notices: tuple[tuple[str, str], ...] = ()  # (kind, text) shown once on the next page

    @property
    def signed_in(self) -> bool:
        return self.user is not None


def console_secret(home: Path) -> str:
    """The key that signs console cookies, kept in `<home>/console-secret` (mode 0600) so that
    sessions survive a restart. Created once, exclusively, so two servers agree on it."""
    path = Path(home) / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


class Revocations:
    """Session ids signed out before their cookie expires. Kept in `<home>/console-revoked`
    (mode 0600, one `id expiry` line each) so that a restart, or another server on the same
    home, honours them; only in memory without a home."""

    def __init__(self, home: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(home) / REVOKED_FILE if home is not None else None
        self._clock = clock
        self._entries: dict[str, float] = {}
        self._read_at: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read

    def revoke(self, session_id: str) -> None:
        expiry = self._clock() + SESSION_SECONDS
        self._entries[session_id] = expiry
        if self._path is None:
            return
        descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as handle:
            handle.write(f"{session_id} {expiry:.0f}\n")
        if self._path.stat().st_size > REVOKED_FILE_PRUNE_BYTES:
            self._prune(self._path)

    def is_revoked(self, session_id: str) -> bool:
        self._refresh()
        expiry = self._entries.get(session_id)
        return expiry is not None and expiry > self._clock()

    def _refresh(self) -> None:
        """Re-read the file when it changed (another server may have written it)."""
        if self._path is None:
            return
        try:
            status = self._path.stat()
        except FileNotFoundError:
            return
        if self._read_at == (status.st_mtime_ns, status.st_size):
            return
        for line in self._path.read_text().splitlines():
            session_id, _, expiry = line.partition(" ")
            if session_id and expiry.isdigit():
                self._entries[session_id] = max(float(expiry), self._entries.get(session_id, 0.0))
        self._read_at = (status.st_mtime_ns, status.st_size)

    def _prune(self, path: Path) -> None:
        """Drop expired entries, so that the file holds at most a session lifetime's sign-outs."""
        self._refresh()
        now = self._clock()
        self._entries = {key: expiry for key, expiry in self._entries.items() if expiry > now}
        temporary = path.with_name(f".{REVOKED_FILE}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.writelines(f"{key} {expiry:.0f}\n" for key, expiry in self._entries.items())
        os.replace(temporary, path)


class Sessions:
    """Signs, checks and issues sessions; knows whether authentication is on."""

    def __init__(self, secret_key: str, credentials: Credentials | None, revocations: Revocations | None = None) -> None:
        self.credentials = credentials
        self.revocations = revocations or Revocations()
        self._secret = secret_key.encode()
        self._serializer = URLSafeTimedSerializer(secret_key, salt="conveyor-console-session")

    @property
    def auth_enabled(self) -> bool:
        return self.credentials is not None

    def new(self) -> Session:
        """A fresh session: signed in at once under --no-auth, anonymous otherwise."""
        user = None if self.auth_enabled else NO_AUTH_USER
        return Session(user=user, csrf=secrets.token_urlsafe(32))

    def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        notices = tuple((str(notice[0]), str(notice[1])) for notice in data.get("n") or () if isinstance(notice, list) and len(notice) == 2)
        session = Session(user=data.get("u"), csrf=data["c"], fingerprint=data.get("f", ""), id=str(data.get("i") or ""), notices=notices)
        if not self.auth_enabled:
            return replace(session, user=NO_AUTH_USER, fingerprint="")
        if not isinstance(session.user, str) or session.user == NO_AUTH_USER or not session.id:
            return replace(session, user=None, fingerprint="", id="")
        if self.revocations.is_revoked(session.id):
            return replace(session, user=None, fingerprint="", id="")
        secret = self.credentials(session.user)  # type: ignore[misc]
        if secret is None or not hmac.compare_digest(self._fingerprint(session.user, secret), session.fingerprint):
            return replace(session, user=None, fingerprint="")
        return session

    def dump(self, session: Session) -> str:
        data: dict = {"u": session.user, "c": session.csrf, "f": session.fingerprint, "i": session.id}
        if session.notices:
            data["n"] = [list(notice) for notice in session.notices]
        return self._serializer.dumps(data)

    def log_in(self, access_key_id: str, secret_access_key: str) -> Session | None:
        """A signed-in session (with a new CSRF token) if the keys are the server's, else None."""
        if not self.auth_enabled:
            return self.new()
        expected = self.credentials(access_key_id.strip()) if access_key_id.strip() else None  # type: ignore[misc]
        if expected is None or not hmac.compare_digest(expected.encode(), secret_access_key.strip().encode()):
            return None
        user = access_key_id.strip()
        return Session(
            user=user, csrf=secrets.token_urlsafe(32), fingerprint=self._fingerprint(user, expected), id=secrets.token_urlsafe(16),
        )

    def log_out(self, session: Session) -> Session:
        """An anonymous session; the one signed out is revoked, wherever its cookie is kept."""
        if session.id:
            self.revocations.revoke(session.id)
        return Session(user=None if self.auth_enabled else NO_AUTH_USER, csrf=secrets.token_urlsafe(32))

    def _fingerprint(self, user: str, secret: str) -> str:
        return hmac.new(self._secret, f"{user}\0{secret}".encode(), hashlib.sha256).hexdigest()[:32]


def current_session(request: Request) -> Session:
    return request.scope[SCOPE_KEY]


def set_session(request: Request, session: Session) -> None:
    """Replace the request's session; the middleware sends the new cookie with the response."""
    request.scope[SCOPE_KEY] = session


class SessionMiddleware:
    """Guards every console route: loads or issues the session cookie, checks the CSRF token
    of every POST, and sends visitors without a session to the login page (401 for JSON)."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        if path.startswith("/static/"):  # the stylesheet and the script: public, no session
            await self.app(scope, receive, _with_headers(send))
            return
        request = Request(scope)
        cookie = request.cookies.get(COOKIE_NAME)
        session = self.sessions.load(cookie) or self.sessions.new()
        scope[SCOPE_KEY] = session

        send_with_cookie = self._cookie_sender(scope, send, cookie)
        if scope["method"] == "POST":
            body = await _read_body(receive)
            if body is None:
                await _plain(send_with_cookie, 413, "The form is too large.")
                return
            if not _csrf_ok(request, body, session.csrf):
                await _plain(send_with_cookie, 403, "The form's security token is missing or expired: reload the page and try again.")
                return
            receive = _replay(body, receive)
        if not session.signed_in and path != "/login":
            if path.startswith("/api/"):
                await _json(send_with_cookie, 401, {"error": "Not signed in"})
            else:
                target = scope.get("root_path", "") + "/login"
                wanted = scope.get("root_path", "") + path
                if scope.get("query_string"):
                    wanted += "?" + scope["query_string"].decode("latin-1")
                await _redirect(send_with_cookie, f"{target}?next={quote(wanted, safe='')}")
            return
        await self.app(scope, receive, send_with_cookie)

    def _cookie_sender(self, scope: Scope, send: Send, incoming: str | None) -> Send:
        """Adds the security headers, and the session cookie (re-signed, so it slides)."""

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                value = self.sessions.dump(scope[SCOPE_KEY])
                if value != incoming:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    path = scope.get("root_path") or "/"
                    headers.append(
                        "set-cookie",
                        f"{COOKIE_NAME}={value}; Path={path}; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Lax{secure}",
                    )
            await send(message)

        return _with_headers(sender)


def _with_headers(send: Send) -> Send:
    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS:
                headers.setdefault(name, value)
        await send(message)

    return sender


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _csrf_ok(request: Request, body: bytes, expected: str) -> bool:
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        token = next(iter(parse_qs(body.decode("utf-8", "replace")).get("csrf_token") or []), None)
    return token is not None and hmac.compare_digest(token.encode(), expected.encode())


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, data: dict) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
