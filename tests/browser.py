"""A real browser for the console tests: Debian's Chromium driven by Playwright.

Playwright's own browser download does not work on these machines, so Chromium comes from
apt (installed here when `/usr/bin/chromium` is missing) and is handed to Playwright as its
executable. One browser serves the whole session; each test gets its own context (cookies),
and leaves a screenshot under `test-output/console/`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "console"
VIEWPORT = {"width": 1440, "height": 900}


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install Debian's chromium package")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") + ".png")


def save_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    path = screenshot_path(name)
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def screenshot() -> Any:
    """`screenshot(page, name)` saves `test-output/console/<name>.png`."""
    return save_screenshot


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`new_page(storage_state=None)` opens a page in a fresh context; when the test ends,
    the last page opened is saved as `test-output/console/<test name>.png`."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def open_page(storage_state: Any = None) -> Any:
        context = browser.new_context(viewport=VIEWPORT, storage_state=storage_state)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield open_page
    try:
        if pages and not pages[-1].is_closed():
            save_screenshot(pages[-1], request.node.name)
    finally:
        for context in contexts:
            context.close()


def sign_in(page: Any, server: Any, secret: str | None = None) -> None:
    """Fill the console's sign-in form with the server's keys (or a wrong `secret`) and send it."""
    from tests.server import _read_keys

    access_key_id, secret_access_key = _read_keys(server.credentials_file)
    page.fill("#access_key_id", access_key_id)
    page.fill("#secret_access_key", secret if secret is not None else secret_access_key)
    page.click("button[type=submit]")
