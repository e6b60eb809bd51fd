"""The web console, driven by a real Chromium against a real `conveyor server` on 127.0.0.1.

One server (authentication on) serves the module; the browser signs in through the login form
once and the other tests reuse that session. Each test leaves a screenshot in
`test-output/console/`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from conveyor.console.auth import Sessions
from conveyor.console.context import Console
from conveyor.console.forms import JOB_DEFAULTS, JOB_FIELDS, Form, job_request, place_errors
from conveyor.console.jobs import list_page
from conveyor.errors import ConveyorError
from conveyor.service import Service
from conveyor.settings import Settings
from tests.browser import sign_in
from tests.models import BRACKET, sleepy, write_model
from tests.server import ServerProcess, _read_keys, start_server, wait_for_status
from tests.test_transform_cli import conveyor as transform_cli

# Answers each request after a pause: a job over a few hundred records runs for minutes.
SLEEPY = sleepy(0.25)
# Answers each record after a pause and fails on "bad": a failed object has answered records first.
FAILS_LATE = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    time.sleep(0.2)
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body
"""
LIVE = 30_000  # ms: how long a live update may take to show


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with two models (`bracket`: fast; `sleepy`: slow) and some input data."""
    root = tmp_path_factory.mktemp("console")
    server = start_server(root / "home")
    client = server.client()
    for name, handler in (("bracket", BRACKET), ("sleepy", SLEEPY)):
        model_dir = write_model(root, textwrap.dedent(handler), name=name)
        client.create_model(ModelName=name, PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(model_dir)})
    small = root / "small"
    small.mkdir()
    (small / "part-1.csv").write_text("1,2\n3,4\n5,6\n")
    long_input = root / "long"
    long_input.mkdir()
    (long_input / "records.txt").write_text("".join(f"record {index}\n" for index in range(2000)))
    several = root / "several"
    several.mkdir()
    for part in range(6):
        (several / f"part-{part}.txt").write_text("".join(f"row {part}-{index}\n" for index in range(8)))
    failing = root / "failing"  # one object done, one that fails after some of its records were answered
    failing.mkdir()
    (failing / "a.txt").write_text("one\ntwo\n")
    (failing / "b.txt").write_text("".join(f"good {index}\n" for index in range(8)) + "bad\n")
    html = root / "html"
    html.mkdir()
    (html / "page.txt").write_text('<b>bold</b>\n<script>window.__pwned = 1</script>\n<img src=x onerror="window.__pwned = 2">\n')
    try:
        yield {"server": server, "client": client, "root": root, "small": small, "long": long_input, "several": several, "failing": failing, "html": html}
    finally:
        server.stop()


def _keys(server: ServerProcess) -> tuple[str, str]:
    return _read_keys(server.credentials_file)



@pytest.fixture(scope="module")
def session_state(browser: Any, console: dict[str, Any]) -> Any:
    """A signed-in browser session (cookies), made through the login form."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(console["server"].endpoint + "/console/")
    sign_in(page, console["server"])
    expect(page.locator("h1")).to_have_text("Batch transform jobs")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def page(new_page: Any, session_state: Any) -> Any:
    return new_page(storage_state=session_state)


def _url(console: dict[str, Any], path: str) -> str:
    return console["server"].endpoint + "/console" + path


def _create_job(console: dict[str, Any], name: str, *, model: str = "bracket", source: str = "small", **extra: Any) -> None:
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(console[source])}},
            "SplitType": "Line",
            "ContentType": "text/plain",
        },
        "TransformOutput": {"S3OutputPath": str(console["root"] / "out" / name), "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
        **extra,
    }
    console["client"].create_transform_job(**request)


def _create_long_job(console: dict[str, Any], name: str) -> None:
    _create_job(console, name, model="sleepy", source="long", BatchStrategy="SingleRecord", MaxConcurrentTransforms=1)


def _stop_quietly(console: dict[str, Any], name: str) -> None:
    try:
        console["client"].stop_transform_job(TransformJobName=name)
    except Exception:  # noqa: BLE001 - already finished
        pass


def _row(page: Any, name: str) -> Any:
    return page.locator(f'#jobs-table tr[data-job="{name}"]')


# --- Signing in ---------------------------------------------------------------------------


def test_sign_in_with_the_servers_keys(new_page: Any, console: dict[str, Any], screenshot: Any) -> None:
    page = new_page()
    page.goto(_url(console, "/jobs/create"))
    expect(page.locator("h1")).to_have_text("Sign in to Conveyor")
    sign_in(page, console["server"], secret="not-the-secret")
    expect(page.locator(".alert-error")).to_contain_text("not correct")
    expect(page.locator("#access_key_id")).to_have_value(_keys(console["server"])[0])
    screenshot(page, "login-refused")
    sign_in(page, console["server"])
    expect(page.locator("h1")).to_have_text("Create batch transform job")  # back where it was going
    cookie = next(c for c in page.context.cookies() if c["name"] == "conveyor_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in to Conveyor")
    page.goto(_url(console, "/jobs"))
    expect(page.locator("h1")).to_have_text("Sign in to Conveyor")


def test_nothing_answers_without_a_session_and_posts_need_the_csrf_token(console: dict[str, Any], session_state: Any) -> None:
    endpoint = console["server"].endpoint
    with httpx.Client(base_url=endpoint) as anonymous:
        for path in ("/console/jobs", "/console/models", "/console/jobs/create", "/console/models/bracket"):
            response = anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
        assert anonymous.get("/console/api/jobs?name=x").status_code == 401
        assert anonymous.get("/console/static/console.css").status_code == 200
        assert anonymous.get("/", follow_redirects=False).headers["location"] == "/console/jobs"
    cookie = next(c for c in session_state["cookies"] if c["name"] == "conveyor_console")
    with httpx.Client(base_url=endpoint, cookies={cookie["name"]: cookie["value"]}) as signed_in:
        assert signed_in.get("/console/jobs").status_code == 200
        refused = signed_in.post("/console/models/bracket/delete", data={"csrf_token": "forged"})
        assert refused.status_code == 403
        assert signed_in.post("/console/models/bracket/delete").status_code == 403
    assert console["client"].describe_model(ModelName="bracket")["ModelName"] == "bracket"


def test_every_console_url_reaches_the_console_with_or_without_a_trailing_slash(page: Any, console: dict[str, Any]) -> None:
    endpoint = console["server"].endpoint
    headings = {
        "/console": "Batch transform jobs",  # the URL `conveyor server` prints
        "/console/": "Batch transform jobs",
        "/console/jobs/": "Batch transform jobs",
        "/console/jobs/create/": "Create batch transform job",
        "/console/models/": "Models",
        "/console/models/bracket/": "bracket",
    }
    for path, heading in headings.items():
        response = page.goto(endpoint + path)
        assert response.ok and "html" in response.headers["content-type"], path
        expect(page.locator("h1")).to_contain_text(heading)
    with httpx.Client(base_url=endpoint) as anonymous:
        assert anonymous.get("/console").headers["location"] == "/console/jobs"


def test_no_auth_opens_directly(new_page: Any, tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", "--no-auth")
    try:
        page = new_page()
        page.goto(server.endpoint + "/")
        expect(page.locator("h1")).to_have_text("Batch transform jobs")
        expect(page.locator(".topbar")).to_contain_text("Authentication off")
        with httpx.Client(base_url=server.endpoint) as client:
            assert client.post("/console/jobs/stop", data={"name": "x"}).status_code == 403  # CSRF still checked
    finally:
        server.stop()


def test_sessions_end_when_the_secret_changes_and_do_not_cross_auth_modes() -> None:
    keys = {"AKIAEXAMPLE": "first-secret"}
    sessions = Sessions("signing-key", keys.get)
    assert sessions.log_in("AKIAEXAMPLE", "wrong") is None
    signed_in = sessions.log_in("AKIAEXAMPLE", "first-secret")
    assert signed_in is not None
    cookie = sessions.dump(signed_in)
    assert sessions.load(cookie).user == "AKIAEXAMPLE"
    assert Sessions("another-key", keys.get).load(cookie) is None  # not signed by this server
    keys["AKIAEXAMPLE"] = "rotated-secret"
    assert not sessions.load(cookie).signed_in
    open_cookie = Sessions("signing-key", None).dump(Sessions("signing-key", None).new())
    assert not sessions.load(open_cookie).signed_in  # a --no-auth session is no session with keys


# --- Creating jobs --------------------------------------------------------------------------


def test_every_error_of_an_empty_form_lands_on_a_field(tmp_path: Path) -> None:
    service = Service(Settings(home=tmp_path))
    try:
        form = Form(values=dict(JOB_DEFAULTS))
        request = job_request(form)
        assert "DataProcessing" not in request and request["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
        with pytest.raises(ConveyorError) as raised:
            service.sagemaker.create_transform_job(request)
        place_errors(form, raised.value, [*JOB_FIELDS, "environment", "tags"])
        assert form.general_errors == []
        assert set(form.errors) == {"transformJobName", "modelName", "transformInput.dataSource.s3DataSource.s3Uri", "transformOutput.s3OutputPath"}
        assert form.errors["transformJobName"] == ["Value null at 'transformJobName' failed to satisfy constraint: Member must not be null"]
    finally:
        service.close()


def _fill_job_form(page: Any, console: dict[str, Any], name: str, *, max_payload: str = "1") -> None:
    page.fill('[name="transformJobName"]', name)
    page.select_option('[name="modelName"]', "bracket")
    page.select_option('[name="transformResources.instanceType"]', "ml.m5.large")
    page.fill('[name="transformResources.instanceCount"]', "1")
    page.fill('[name="maxConcurrentTransforms"]', "2")
    page.fill('[name="maxPayloadInMB"]', max_payload)
    page.select_option('[name="batchStrategy"]', "MultiRecord")
    page.fill('[name="modelClientConfig.invocationsTimeoutInSeconds"]', "60")
    page.fill('[name="modelClientConfig.invocationsMaxRetries"]', "1")
    page.click("text=Add environment variable")
    page.locator('[name="environment.key"]').last.fill("GREETING")
    page.locator('[name="environment.value"]').last.fill("hello")
    page.click("text=Add environment variable")
    page.locator('[name="environment.key"]').last.fill("REMOVE_ME")
    page.locator('[data-rows="environment"] .kv-row').last.locator("[data-remove-row]").click()
    page.select_option('[name="transformInput.dataSource.s3DataSource.s3DataType"]', "S3Prefix")
    page.fill('[name="transformInput.dataSource.s3DataSource.s3Uri"]', str(console["small"]))
    page.select_option('[name="transformInput.splitType"]', "Line")
    page.fill('[name="transformInput.contentType"]', "text/csv")
    page.fill('[name="transformOutput.s3OutputPath"]', str(console["root"] / "out" / name))
    page.fill('[name="transformOutput.accept"]', "text/csv")
    page.select_option('[name="transformOutput.assembleWith"]', "Line")
    page.click("text=Add tag")
    page.locator('[name="tags.key"]').last.fill("team")
    page.locator('[name="tags.value"]').last.fill("search")


def test_create_a_job_through_the_form_and_watch_it_complete(page: Any, console: dict[str, Any], screenshot: Any) -> None:
    page.goto(_url(console, "/jobs"))
    page.click("text=Create batch transform job")
    expect(page.locator("h1")).to_have_text("Create batch transform job")
    for heading in ("Batch transform job configuration", "Input data configuration", "Output data configuration",
                    "Input/output filtering and data joins", "Tags"):  # fmt: skip
        expect(page.locator("h2", has_text=heading)).to_be_visible()
    expect(page.locator('[name="transformInput.dataSource.s3DataSource.s3DataType"]')).to_have_value("S3Prefix")
    expect(page.locator('[name="transformInput.compressionType"]')).to_have_value("None")
    expect(page.locator('[name="transformResources.instanceCount"]')).to_have_value("1")
    _fill_job_form(page, console, "form-job")
    screenshot(page, "create-form-filled")
    page.click("#create-job")
    expect(page.locator("h1")).to_contain_text("form-job")
    page.evaluate("window.__samePage = true")
    expect(page.locator('[data-live="status-text"]')).to_have_text("Completed", timeout=LIVE)
    assert page.evaluate("window.__samePage") is True, "the page reloaded instead of updating in place"
    expect(page.locator('[data-live="percent"]')).to_have_text("100%")
    expect(page.locator("#outputs-table")).to_contain_text("part-1.csv.out")
    expect(page.locator("#log")).to_contain_text("MaxConcurrentTransforms=2")
    expect(page.locator(".log-line", has_text="Starting")).to_have_count(1)  # each line once
    expect(page.locator("#stop-job-form")).to_be_hidden()
    description = console["client"].describe_transform_job(TransformJobName="form-job")
    assert description["Environment"] == {"GREETING": "hello"}
    assert description["MaxPayloadInMB"] == 1 and description["BatchStrategy"] == "MultiRecord"
    assert description["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1}
    assert description["TransformInput"]["ContentType"] == "text/csv"
    tags = console["client"].list_tags(ResourceArn=description["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "search"}]
    page.click("#model-link")
    expect(page.locator("h1")).to_have_text("bracket")
    page.go_back()


def test_invalid_name_and_oversized_payload_show_both_errors_and_keep_the_values(page: Any, console: dict[str, Any]) -> None:
    page.goto(_url(console, "/jobs/create"))
    _fill_job_form(page, console, "bad_name!", max_payload="200")
    page.click("#create-job")
    expect(page.locator("#form-errors")).to_contain_text("2 errors")
    name_error = page.locator('[data-error-for="transformJobName"]')
    expect(name_error).to_contain_text("'bad_name!'")
    expect(name_error).to_contain_text("transformJobName")
    expect(name_error).to_contain_text("Member must satisfy regular expression pattern")
    payload_error = page.locator('[data-error-for="maxPayloadInMB"]')
    expect(payload_error).to_contain_text("'200'")
    expect(payload_error).to_contain_text("Member must have value less than or equal to 100")
    expect(page.locator('[name="transformJobName"]')).to_have_value("bad_name!")
    expect(page.locator('[name="maxPayloadInMB"]')).to_have_value("200")
    expect(page.locator('[name="modelName"]')).to_have_value("bracket")
    expect(page.locator('[name="transformInput.dataSource.s3DataSource.s3Uri"]')).to_have_value(str(console["small"]))
    expect(page.locator('[name="transformInput.dataSource.s3DataSource.s3DataType"]')).to_have_value("S3Prefix")
    expect(page.locator('[name="transformInput.splitType"]')).to_have_value("Line")
    expect(page.locator('[name="batchStrategy"]')).to_have_value("MultiRecord")
    expect(page.locator('[name="environment.key"]')).to_have_value("GREETING")
    expect(page.locator('[name="tags.value"]')).to_have_value("search")
    expect(page.locator(".field-error")).to_have_count(2)
    page.locator('[data-error-for="transformJobName"]').scroll_into_view_if_needed()
    assert "bad_name" not in str(console["client"].list_transform_jobs()["TransformJobSummaries"])


# --- Stopping ------------------------------------------------------------------------------


def test_stop_a_running_job_from_the_list(page: Any, console: dict[str, Any], screenshot: Any) -> None:
    _create_long_job(console, "long-list")
    try:
        page.goto(_url(console, "/jobs?name=long-list"))
        row = _row(page, "long-list")
        expect(row.locator("[data-status-badge]")).to_have_text("InProgress")
        expect(page.locator('[data-action="stop"]')).to_be_disabled()
        row.locator('input[type="checkbox"]').check()
        page.click("#actions-button")
        expect(page.locator('[data-action="stop"]')).to_be_enabled()
        screenshot(page, "list-actions-menu", full_page=False)
        page.click('[data-action="stop"]')
        expect(page.locator(".alert-success")).to_contain_text("Stopping batch transform job long-list")
        assert "/console/jobs?name=long-list&" in page.url  # the list's filter is kept
        expect(page.locator('input[type="search"][name="name"]')).to_have_value("long-list")
        expect(_row(page, "long-list").locator("[data-status-badge]")).to_have_text("Stopped", timeout=LIVE)
    finally:
        _stop_quietly(console, "long-list")
    assert console["client"].describe_transform_job(TransformJobName="long-list")["TransformJobStatus"] == "Stopped"


def test_stop_a_running_job_from_its_page(page: Any, console: dict[str, Any], screenshot: Any) -> None:
    _create_long_job(console, "long-detail")
    try:
        page.goto(_url(console, "/jobs/long-detail"))
        expect(page.locator('[data-live="status-text"]')).to_have_text("InProgress")
        expect(page.locator('[data-live="records"]')).not_to_have_text("0", timeout=LIVE)  # progress moves live
        expect(page.locator("#log")).to_contain_text("Starting")
        expect(page.locator('[data-live="model_busy"]')).to_have_text(re.compile(r"^\d+%$"), timeout=LIVE)  # the figures too
        expect(page.locator('[data-live="records_rate"]')).to_have_text(re.compile(r" records/s$"))
        screenshot(page, "job-running")
        page.click("#stop-job")
        expect(page.locator(".alert-success")).to_contain_text("Stopping batch transform job long-detail")
        expect(page.locator('[data-live="status-text"]')).to_have_text("Stopped", timeout=LIVE)
        expect(page.locator("#stop-job-form")).to_be_hidden()
    finally:
        _stop_quietly(console, "long-detail")


def test_a_failed_job_shows_the_figures_the_cli_prints(page: Any, console: dict[str, Any], tmp_path: Path, screenshot: Any) -> None:
    """Failed objects are finished objects (the bar full and red) and a failed object's records,
    never written, are not counted: as `conveyor transform` and `conveyor jobs describe` say."""
    model_dir = write_model(tmp_path, FAILS_LATE, name="fails-late")
    server = console["server"]
    console["client"].create_model(ModelName="fails-late", PrimaryContainer={"Image": "conveyor:python", "ModelDataUrl": str(model_dir)})
    _create_job(console, "fails-late", model="fails-late", source="failing", BatchStrategy="SingleRecord", MaxConcurrentTransforms=1,
                ModelClientConfig={"InvocationsMaxRetries": 0})  # fmt: skip
    wait_for_status(console["client"], "fails-late", ("Failed",))
    transformed = transform_cli(
        "transform", "--model", str(model_dir), "--input", str(console["failing"]), "--output", str(tmp_path / "cli-out"),
        "--content-type", "text/plain", "--split-type", "Line", "--strategy", "SingleRecord", "--max-concurrent", "1",
        "--retries", "0", home=tmp_path / "cli-home",
    )  # fmt: skip
    assert ": 1 of 2 objects, 1 failed, 2 records," in transformed.stderr, transformed.stderr
    described = subprocess.run(
        [sys.executable, "-m", "conveyor", "jobs", "describe", "fails-late"], capture_output=True, text=True, timeout=60,
        env={**server.client_env(), "CONVEYOR_ENDPOINT": server.endpoint, "COLUMNS": "200"},
    )  # fmt: skip
    assert "2/2 objects (1 failed), 2 records," in described.stdout, described.stdout + described.stderr

    page.goto(_url(console, "/jobs/fails-late"))
    expect(page.locator('[data-live="status-text"]')).to_have_text("Failed")
    expect(page.locator('[data-live="objects_finished"]')).to_have_text("2")
    expect(page.locator('[data-live="objects_total"]')).to_have_text("2")
    expect(page.locator('[data-live="objects_failed"]')).to_have_text("1")
    expect(page.locator('[data-live="records"]')).to_have_text("2")
    fill = page.locator('[data-live="progressbar"] .progress-fill')
    expect(fill).to_have_class(re.compile(r"\bis-failed\b"))
    expect(fill).to_have_attribute("style", re.compile(r"width: 100%"))
    screenshot(page, "job-failed")
    page.goto(_url(console, "/jobs?name=fails-late"))
    row = _row(page, "fails-late")
    expect(row.locator(".progress-text")).to_have_text("2/2 objects (1 failed)")
    expect(row.locator(".progress-fill")).to_have_class(re.compile(r"\bis-failed\b"))
    expect(row.locator(".progress-fill")).to_have_attribute("style", re.compile(r"width: 100%"))


# --- Clone, previews, list features, models -----------------------------------------------


def test_clone_a_job(page: Any, console: dict[str, Any]) -> None:
    _create_job(console, "clone-source", Environment={"MODE": "fast"}, MaxPayloadInMB=2, Tags=[{"Key": "origin", "Value": "api"}])
    wait_for_status(console["client"], "clone-source")
    page.goto(_url(console, "/jobs?name=clone-source"))
    _row(page, "clone-source").locator('input[type="checkbox"]').check()
    page.click("#actions-button")
    page.click('[data-action="clone"]')
    expect(page.locator("h1")).to_have_text("Create batch transform job")
    expect(page.locator('[name="transformJobName"]')).to_have_value("clone-source-copy")
    expect(page.locator('[name="modelName"]')).to_have_value("bracket")
    expect(page.locator('[name="maxPayloadInMB"]')).to_have_value("2")
    expect(page.locator('[name="transformInput.splitType"]')).to_have_value("Line")
    expect(page.locator('[name="transformInput.dataSource.s3DataSource.s3DataType"]')).to_have_value("S3Prefix")
    expect(page.locator('[name="environment.value"]')).to_have_value("fast")
    expect(page.locator('[name="tags.key"]')).to_have_value("origin")
    page.fill('[name="transformOutput.s3OutputPath"]', str(console["root"] / "out" / "clone-copy"))
    page.click("#create-job")
    expect(page.locator('[data-live="status-text"]')).to_have_text("Completed", timeout=LIVE)
    clone = console["client"].describe_transform_job(TransformJobName="clone-source-copy")
    assert clone["Environment"] == {"MODE": "fast"} and clone["MaxPayloadInMB"] == 2
    page.click("#clone-job")  # and from the job's own page
    expect(page.locator('[name="transformJobName"]')).to_have_value("clone-source-copy-copy")


def test_open_an_output_preview_shows_text_not_html(page: Any, console: dict[str, Any]) -> None:
    _create_job(console, "html-output", source="html")
    wait_for_status(console["client"], "html-output")
    page.goto(_url(console, "/jobs/html-output"))
    page.locator('[data-preview="page.txt.out"]').click()
    preview = page.locator("#preview-text")
    expect(preview).to_contain_text("<b>bold</b>")
    expect(preview).to_contain_text("<script>window.__pwned = 1</script>")
    expect(page.locator("#preview-note")).to_contain_text("first 4 lines")  # the model wraps the batch in <…>
    assert preview.locator("b, script, img").count() == 0
    assert page.evaluate("window.__pwned") is None
    preview.scroll_into_view_if_needed()


def test_list_filters_sorting_and_pages(page: Any, console: dict[str, Any]) -> None:
    names = [f"page-{index:02d}" for index in range(11)]
    for name in names:
        _create_job(console, name)
    for name in names:
        wait_for_status(console["client"], name)
    page.goto(_url(console, "/jobs"))
    page.fill('input[name="name"]', "page-")
    page.select_option('select[name="status"]', "Completed")
    page.click("text=Apply")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(10)
    page.click("a.sort:has-text('Name')")  # sorted by name, descending first
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-job", "page-10")
    page.click("a.sort:has-text('Name')")
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-job", "page-00")
    page.click("text=Next ›")
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    expect(page.locator(".page-number")).to_have_text("Page 2")
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-job", "page-10")
    page.click("text=‹ Previous")
    expect(page.locator("#jobs-table tbody tr").first).to_have_attribute("data-job", "page-00")
    page.select_option('select[name="status"]', "Failed")
    page.click("text=Apply")
    expect(page.locator("#jobs-table")).to_contain_text("No batch transform jobs match these filters.")


def test_the_list_reads_a_page_of_jobs_in_the_same_queries_however_many_rows(tmp_path: Path) -> None:
    """One batched read for the page's jobs and their progress, not one per row; the figures are
    the progress route's."""
    service = Service(Settings(home=tmp_path / "home"))
    try:
        service.sagemaker.create_model({"ModelName": "bracket", "PrimaryContainer": {"Image": "conveyor:python", "ModelDataUrl": str(write_model(tmp_path, BRACKET))}})
        source = tmp_path / "in"
        source.mkdir()
        (source / "a.csv").write_text("1\n2\n")
        for index in range(12):
            service.sagemaker.create_transform_job({
                "TransformJobName": f"job-{index:02d}", "ModelName": "bracket",
                "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(source)}}},
                "TransformOutput": {"S3OutputPath": str(tmp_path / "out" / str(index))},
                "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
            })  # fmt: skip
        console = Console(service, templates=None, sessions=None)  # list_page reads only the service
        query = {"status": "", "name": "", "sort": "created", "order": "Descending", "token": "", "back": []}

        def page_of(size: int) -> tuple[list[dict[str, Any]], int]:
            statements: list[str] = []
            service.store.database.connection().set_trace_callback(statements.append)
            try:
                rows = list_page(console, {**query, "size": size})["rows"]
            finally:
                service.store.database.connection().set_trace_callback(None)
            return rows, len(statements)

        small, small_queries = page_of(10)
        large, large_queries = page_of(50)
        assert (len(small), len(large)) == (10, 12)
        assert large_queries == small_queries <= 4
        for row in large:
            progress = service.progress(row["name"])
            assert (row["objects_total"], row["objects_done"], row["records"]) == (progress["ObjectsTotal"], progress["ObjectsDone"], progress["Records"])
            assert row["status"] == "InProgress" and row["model"] == "bracket"
    finally:
        service.close()


def test_create_view_and_delete_a_model(page: Any, console: dict[str, Any], screenshot: Any) -> None:
    model_dir = write_model(console["root"], BRACKET, name="console-model")
    page.goto(_url(console, "/models"))
    page.click("text=Create model")
    page.fill('[name="modelName"]', "bad name")
    page.fill('[name="primaryContainer.modelDataUrl"]', str(model_dir))
    page.click("text=Add environment variable")
    page.locator('[name="primaryContainer.environment.key"]').fill("LEVEL")
    page.locator('[name="primaryContainer.environment.value"]').fill("3")
    page.click("#create-model")
    expect(page.locator('[data-error-for="modelName"]')).to_contain_text("'bad name'")
    expect(page.locator('[name="primaryContainer.environment.value"]')).to_have_value("3")
    page.fill('[name="modelName"]', "console-model")
    page.click("#create-model")
    expect(page.locator("h1")).to_have_text("console-model")
    expect(page.locator("main")).to_contain_text("conveyor:python")
    expect(page.locator("main")).to_contain_text("LEVEL")
    screenshot(page, "model-detail")
    page.click("text=Create batch transform job")
    expect(page.locator('[name="modelName"]')).to_have_value("console-model")
    page.go_back()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-model")
    expect(page.locator(".alert-success")).to_contain_text("Deleted model console-model")
    expect(page.locator("#models-table")).not_to_contain_text("console-model")
    expect(page.locator("#models-table")).to_contain_text("bracket")


def test_running_jobs_update_in_the_list_without_a_reload(page: Any, console: dict[str, Any], screenshot: Any) -> None:
    _create_job(console, "nightly-scoring", model="sleepy", source="several", BatchStrategy="SingleRecord", MaxConcurrentTransforms=1)
    try:
        page.goto(_url(console, "/jobs?size=25"))
        row = _row(page, "nightly-scoring")
        expect(row.locator("[data-status-badge]")).to_have_text("InProgress")
        page.evaluate("window.__samePage = true")
        expect(row.locator(".progress-text")).to_have_text(re.compile(r"^[1-5]/6 objects"), timeout=LIVE)
        assert page.evaluate("window.__samePage") is True, "the list reloaded instead of updating in place"
    finally:
        screenshot(page, "jobs-list", full_page=False)
        _stop_quietly(console, "nightly-scoring")
