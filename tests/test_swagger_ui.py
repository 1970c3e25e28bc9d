"""Swagger UI at /docs in a real headless Chromium, with the network cut off from everything but a
real `glint serve`: the page renders every operation of the document, and "Try it out" creates an
image and uploads its data.

The browser is Debian's chromium (/usr/bin/chromium), which scripts/test.sh installs (through
scripts/browser.sh) when it is missing. Every request the page makes to anywhere but the server is
aborted and recorded; the test fails on any such request, on any console error and on any error
thrown in the page. Chromium's own traffic (updates, sync, safe browsing) is switched off by its
flags and sent to a proxy that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from app.db.engine import Database
from tests.serving import Server, free_port, serve

pytestmark = pytest.mark.usefixtures("db")  # the test database, emptied after each test

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000  # generous: a loaded CI machine; every wait returns as soon as it holds
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]


@dataclass
class Guard:
    """Everything the page did that fails the test: requests to anywhere but the server (they
    were aborted), console errors, uncaught errors."""

    allowed: str  # host:port
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == self.allowed:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location})")

    def page_error(self, error: Error) -> None:
        self.page_errors.append(f"{error.name}: {error.message}")

    def assert_clean(self) -> None:
        """Fails on what was recorded since the last check (and forgets it)."""
        blocked, self.blocked = self.blocked, []
        console_errors, self.console_errors = self.console_errors, []
        page_errors, self.page_errors = self.page_errors, []
        assert blocked == [], f"the page tried to reach beyond the server: {blocked}"
        assert console_errors == [], f"console errors: {console_errors}"
        assert page_errors == [], f"errors in the page: {page_errors}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, migrated_database: Database
) -> Iterator[Server]:
    """One server for the module, on the test database (SQLite, PostgreSQL or MariaDB, as
    GLINT_TEST_DB says; `db`, used by every test, empties it after each)."""
    del migrated_database  # migrated before the server starts
    settings = {"GLINT_DATABASE__URL": database_url, "GLINT_SERVER__WORKERS": "1"}
    with serve(tmp_path_factory.mktemp("swagger-ui"), settings=settings) as running:
        yield running


@pytest.fixture(scope="module")
def guard(server: Server) -> Guard:
    return Guard(allowed=f"127.0.0.1:{server.port}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless chromium on a fresh profile (checked for before the server starts)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium "
            "(scripts/browser.sh); run that, or `apt-get install chromium`",
            pytrace=False,
        )
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            user_data_dir=tmp_path_factory.mktemp("chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            # Whatever the browser itself might still send goes to a proxy nobody listens on
            # (loopback, where the server is, is never proxied); the pages' requests meet the
            # route first.
            args=[*CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{free_port()}"],
            service_workers="block",
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def docs(browser: BrowserContext, server: Server, guard: Guard) -> Page:
    """/docs, rendered, in one tab for the whole module: Swagger UI takes seconds of CPU to
    render this document, and each test works on its own operations. Each test checks the guard
    at its end."""
    browser.route("**/*", guard.route)  # every request of every page of the browser
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.on("console", guard.console)
    page.on("pageerror", guard.page_error)
    response = page.goto(f"{server.base_url}/docs")
    assert response is not None
    assert response.status == 200
    expect(page.locator(".swagger-ui .information-container .title")).to_contain_text("Glint")
    expect(page.locator(".opblock").first).to_be_visible()
    return page


def document(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/openapi.json")
    assert response.status_code == 200
    loaded: dict[str, Any] = response.json()
    return loaded


def operation(page: Page, operation_id: str) -> Locator:
    """The operation's block, opened, in "Try it out" mode."""
    block = page.locator(f'.opblock[id$="-{operation_id}"]')
    expect(block).to_have_count(1)
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    expect(block.locator("button.execute")).to_be_visible()
    return block


def execute(block: Locator, method: str, status: int) -> tuple[Request, Locator]:
    """Executes the operation: the request the page sent, and the live response row once it
    shows `status`."""
    with block.page.expect_request(
        lambda request: request.method == method and "/v2/" in request.url
    ) as sent:
        block.locator("button.execute").click()
    row = block.locator(".live-responses-table tr.response")
    expect(row.locator("td.response-col_status")).to_have_text(str(status))
    return sent.value, row


def test_every_operation_group_and_operation_is_rendered(
    docs: Page, server: Server, guard: Guard
) -> None:
    spec = document(server)
    operations = [
        op
        for path_item in spec["paths"].values()
        for method, op in path_item.items()
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    ]
    tags = {tag["name"] for tag in spec.get("tags", [])}
    tags |= {tag for op in operations for tag in op.get("tags", ["default"])}
    assert {"images", "members", "tags", "schemas", "versions"} <= tags

    for tag in sorted(tags):
        section = docs.locator(".opblock-tag-section").filter(
            has=docs.locator(f'h3.opblock-tag[data-tag="{tag}"]')
        )
        expect(section).to_have_count(1)
        expect(section.locator(".opblock").first).to_be_visible()
    # Swagger UI renders an operation once under each of its tags; every operation has one.
    assert all(len(op.get("tags", ["default"])) == 1 for op in operations)
    expect(docs.locator(".opblock")).to_have_count(len(operations))
    guard.assert_clean()


def test_try_it_out_creates_an_image(docs: Page, server: Server, guard: Guard) -> None:
    block = operation(docs, "images-create_image")
    body = {"name": "from-the-browser", "disk_format": "raw", "container_format": "bare"}
    block.locator("textarea.body-param__text").fill(json.dumps(body))
    request, row = execute(block, "POST", 201)
    assert request.headers["content-type"] == "application/json"
    assert request.post_data_json == body

    shown = row.locator(".response-col_description pre.microlight").first
    expect(shown).to_contain_text('"from-the-browser"')
    created = json.loads(shown.inner_text())
    assert created["name"] == "from-the-browser"
    assert created["status"] == "queued"

    image = httpx.get(f"{server.base_url}/v2/images/{created['id']}")
    assert image.status_code == 200
    assert {k: image.json()[k] for k in body} == body
    guard.assert_clean()


def test_try_it_out_uploads_image_data(
    docs: Page, server: Server, guard: Guard, tmp_path: Path
) -> None:
    create = httpx.post(
        f"{server.base_url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}
    )
    assert create.status_code == 201, create.text
    image_id = create.json()["id"]
    # Random bytes after an empty first sector, so that no disk format's magic (nor an MBR
    # signature) appears by chance and the upload is plain raw data.
    data = bytes(512) + os.urandom(300 * 1024)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(data)

    block = operation(docs, "images-upload_image_data")
    block.locator('tr[data-param-name="image_id"] input').fill(image_id)
    chooser = block.locator('.opblock-section-request-body input[type="file"]')
    expect(chooser).to_have_count(1)
    chooser.set_input_files(disk)
    request, _ = execute(block, "PUT", 204)
    assert request.url == f"{server.base_url}/v2/images/{image_id}/file"
    assert request.headers["content-type"] == "application/octet-stream"  # the raw file

    image = httpx.get(f"{server.base_url}/v2/images/{image_id}").json()
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    download = httpx.get(f"{server.base_url}/v2/images/{image_id}/file")
    assert download.status_code == 200
    assert download.content == data
    guard.assert_clean()
