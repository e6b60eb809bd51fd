"""A threaded HTTP proxy in front of the tests' S3 server, for tests that make S3 misbehave.

`S3Proxy` forwards every request to the upstream server and streams the answer back. A test's
subclass overrides `handle` to decide, request by request, what to count, which requests to
answer itself (`error`, `slow_down`) and which answers to cut short (`forward(cut_after=…)`).
"""

from __future__ import annotations

import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

MiB = 1 << 20


class S3Proxy:
    """Forwards to `upstream` (`http://host:port`); serves on `endpoint_url` inside `with`."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self._lock = threading.Lock()  # for subclasses' counters: requests arrive on many threads
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy.handle(self, self.rfile.read(length) if length else b"")
                self.close_connection = True

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        """Answer one request whose body has been read; this one forwards it unchanged."""
        self.forward(request, body)

    def forward(self, request: BaseHTTPRequestHandler, body: bytes, *, cut_after: int | None = None) -> None:
        """Send the request upstream and stream its answer back; with `cut_after`, the connection
        closes after that many bytes of the body, though the headers promised all of it."""
        upstream = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {name: value for name, value in request.headers.items() if name.lower() != "expect"}
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            request.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                    request.send_header(name, value)
            request.send_header("Connection", "close")
            request.end_headers()
            if request.command != "HEAD":
                left = sys.maxsize if cut_after is None else cut_after
                while left > 0 and (chunk := response.read(min(MiB, left))):
                    request.wfile.write(chunk)
                    left -= len(chunk)
        finally:
            upstream.close()

    @staticmethod
    def error(request: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        """Answer with an S3 XML error instead of forwarding."""
        payload = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/xml")
        request.send_header("Content-Length", str(len(payload)) if request.command != "HEAD" else "0")
        request.send_header("Connection", "close")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)

    @classmethod
    def slow_down(cls, request: BaseHTTPRequestHandler) -> None:
        """Answer `503 SlowDown`, which S3 clients retry."""
        cls.error(request, 503, "SlowDown", "Please reduce your request rate.")
