"""Console sessions on the server side, in a real Chromium against a real `conveyor server` on
127.0.0.1: signing out revokes the session (a copied cookie stops working, also after a
restart), and failed sign-ins are throttled per client address with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from conveyor.console.throttle import SignInThrottle
from tests.browser import sign_in
from tests.server import ServerProcess, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: throttling locks 127.0.0.1 out of it for a minute."""
    process = start_server(tmp_path / "home")
    yield process
    process.stop()



def _jobs_page_status(server: ServerProcess, cookie: dict[str, Any]) -> int:
    with httpx.Client(base_url=server.endpoint, cookies={cookie["name"]: cookie["value"]}) as client:
        return client.get("/console/jobs").status_code


def test_signing_out_revokes_the_session_on_the_server(new_page: Any, server: ServerProcess, screenshot: Any) -> None:
    page = new_page()
    page.goto(server.endpoint + "/console/")
    sign_in(page, server)
    expect(page.locator("h1")).to_have_text("Batch transform jobs")
    copied, = [cookie for cookie in page.context.cookies() if cookie["name"] == "conveyor_console"]
    assert _jobs_page_status(server, copied) == 200

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#access_key_id")).to_be_visible()
    screenshot(page, "signed-out")
    assert _jobs_page_status(server, copied) == 303  # the old cookie is sent to sign in again
    server.stop()
    restarted = server.restart()
    try:
        assert _jobs_page_status(restarted, copied) == 303
    finally:
        restarted.stop()


def test_failed_sign_ins_are_throttled_per_address(new_page: Any, server: ServerProcess, screenshot: Any) -> None:
    page = new_page()
    page.goto(server.endpoint + "/console/login")
    for _ in range(5):
        sign_in(page, server, secret="not-the-secret")
        expect(page.locator(".alert-error")).to_contain_text("is not correct")
    sign_in(page, server)  # the right keys too: a throttled attempt is not checked
    alert = page.locator(".alert-error")
    expect(alert).to_contain_text("Too many failed sign-ins from 127.0.0.1 (5 a minute): try again in")
    screenshot(page, "sign-in-throttled")
    with httpx.Client(base_url=server.endpoint) as client:
        login = client.get("/console/login")
        assert login.status_code == 200


def test_the_overall_limit_holds_whatever_the_address() -> None:
    now = [0.0]
    throttle = SignInThrottle(per_address=5, overall=30, window_seconds=60, clock=lambda: now[0])
    for index in range(30):
        assert throttle.refusal(f"10.0.0.{index}") is None
        throttle.failed(f"10.0.0.{index}")
    assert throttle.refusal("10.0.1.1") == "Too many failed sign-ins to this server (30 a minute): try again in 60 seconds."
    now[0] = 60.0
    assert throttle.refusal("10.0.1.1") is None
