"""Interoperable image import through the real clients: python-glanceclient (its v2 API and the
`glance` CLI), openstacksdk and the `openstack` CLI stage and import (glance-direct), have Glint
fetch a URI (web-download), import into several stores and copy between them (copy-image), and
see a failed import the way a client sees it.

An import's job runs in the background, and no client waits for it on its own: glanceclient and
both CLIs return once the import started, and so does the sdk, even with `wait=True`.
A test that waits as a user would (polling, or the sdk's `wait_for_status`) has `worker` run the
app's worker as a `glint worker` process does, in a thread of its own; the others run the job
themselves between two client calls (`run_jobs`), which also pins what the client saw meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import http.server
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from glanceclient import exc
from glanceclient.shell import OpenStackImagesShell
from glanceclient.v2.client import Client as GlanceClient
from openstack import exceptions as sdk_exceptions
from openstack.connection import Connection
from openstack.image.v2._proxy import Proxy as ImageProxy

from app.config import FileStoreSettings, ImportSettings, Settings, StorageSettings
from app.db.engine import Database
from app.main import create_app
from tests.clients.support import GlanceFactory, Traffic
from tests.identities import ADMIN, A, B

pytestmark = pytest.mark.clients

# More than glanceclient's 1 MiB chunks, and not a multiple of them.
DATA = os.urandom(2 * 1024 * 1024 + 4321)
MD5 = hashlib.md5(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()
# How long a test waits for the background worker before it fails (it takes milliseconds).
DEADLINE = 30.0

# The glance shell builds its client with the `version` keyword glanceclient itself deprecates.
GLANCE_CLI_WARNING = pytest.mark.filterwarnings("ignore:`version` keyword is being deprecated")
CREATE_VIA_IMPORT = [
    "image-create-via-import",
    "--disk-format",
    "raw",
    "--container-format",
    "bare",
]
# osc-lib warns about its own internals on every run.
OSC_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning:osc_lib.*")
OSC_CREATE = ["image", "create", "--disk-format", "raw", "--container-format", "bare"]


def run_jobs(app: FastAPI) -> int:
    """Runs the queued jobs to the end, here and now: the import a client just started."""
    ran = 0
    while asyncio.run(app.state.worker.run_once()):
        ran += 1
    return ran


def wait_while_importing(client: GlanceClient, image_id: str) -> dict[str, Any]:
    """Polls the image, as a glanceclient user does, until its import ended (either way)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        image = dict(client.images.get(image_id))
        if image["status"] != "importing":
            return image
        if time.monotonic() > deadline:
            pytest.fail(f"image {image_id} still importing after {DEADLINE} s")
        time.sleep(0.01)


def v2(conn: Connection) -> ImageProxy:
    """The connection's image proxy; discovery picks v2 (the sdk types it v1 | v2)."""
    proxy = conn.image
    assert proxy.api_version == "2"
    return proxy


def downloaded(client: GlanceClient, image_id: str) -> bytes:
    # glanceclient checks the bytes against os_hash_value while it reads them.
    return b"".join(client.images.data(image_id))


def image_tasks(client: GlanceClient, image_id: str) -> list[dict[str, Any]]:
    """`GET /v2/images/{id}/tasks` through glanceclient's HTTP client. Its own
    `images.get_associated_image_tasks` asks only when `/versions` lists v2.12, which Glance
    (and Glint) list only with several stores."""
    _, body = client.http_client.get(f"/v2/images/{image_id}/tasks")
    tasks: list[dict[str, Any]] = body["tasks"]
    return tasks


def api_calls(traffic: Traffic) -> list[tuple[str, str, int]]:
    """The requests sent, without the discovery and schema fetches around them."""
    return [
        (e.method, e.path, e.status)
        for e in traffic.exchanges
        if not e.path.startswith(("/versions", "/v2/schemas/")) and e.path != "/"
    ]


def files_in(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


# --- a web server for web-download -----------------------------------------------------------


class _Served:
    """What the web server saw: the request line and headers of each GET."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []


def _handler(served: _Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Files(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            if self.path != "/image.raw":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)

        def log_message(self, *args: object) -> None:
            pass

    return Files


class WebServer:
    def __init__(self, url: str, served: _Served) -> None:
        self.url = url
        self.served = served

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def image_uri(self) -> str:
        return f"{self.url}/image.raw"


@pytest.fixture
def web_server() -> Iterator[WebServer]:
    served = _Served()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield WebServer(f"http://127.0.0.1:{server.server_address[1]}", served)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _allowing(settings: Settings, web_server: WebServer) -> Settings:
    """The settings, with web-download allowed to fetch from the local web server (loopback is
    refused unless allowed)."""
    allowed = ImportSettings(allowed_hosts=["127.0.0.1"], allowed_ports=[web_server.port])
    return settings.model_copy(update={"import_": allowed})


@pytest.fixture
def app(settings: Settings, db: Database, web_server: WebServer) -> FastAPI:
    """One file store (no multi-store), web-download allowed to reach `web_server`."""
    return create_app(_allowing(settings, web_server), database=db)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "image.raw"
    path.write_bytes(DATA)
    return path


# --- the worker, in the background ------------------------------------------------------------


@pytest.fixture
def worker(app: FastAPI) -> Iterator[None]:
    """The app's worker running as `glint worker` runs it (`run_forever`), on an event loop of
    its own in a thread, for clients that wait for the import to end. The import service wakes
    it when it enqueues, so jobs start at once rather than at the next poll. Stopped at the end
    by cancelling it, as Ctrl-C or SIGTERM stop `glint worker`; a crash of it fails the test."""
    glint_worker = app.state.worker
    loop = asyncio.new_event_loop()
    running = loop.create_task(glint_worker.run_forever())
    ready = threading.Event()
    # Callbacks run in order: when `ready` is set, run_forever has started (it took the loop it
    # wakes on) and is looking for work.
    loop.call_soon(ready.set)
    crashed: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(running)
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # reported at teardown, in the test's thread
            crashed.append(error)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="glint-worker", daemon=True)
    thread.start()
    assert ready.wait(10), "the worker did not start"
    try:
        yield
    finally:
        loop.call_soon_threadsafe(running.cancel)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop"
        assert not crashed, f"the worker crashed: {crashed[0]!r}"


# --- every client's traffic, whoever made the session ---------------------------------------


@dataclass
class CliTraffic(Traffic):
    """Traffic, and the text of each error answer by path: the CLIs do not always show it."""

    error_pages: dict[str, str] = field(default_factory=dict)

    def record_error_page(
        self, response: requests.Response, *args: object, **kwargs: object
    ) -> None:
        if response.status_code >= 400:  # small, and read by the client in full anyway
            self.error_pages[response.request.path_url] = html.unescape(response.text)


@pytest.fixture
def all_traffic(monkeypatch: pytest.MonkeyPatch) -> CliTraffic:
    """Records the exchanges of every requests session made during the test: the CLIs build
    their own (glanceclient's HTTPClient, keystoneauth's session), out of the tests' reach."""
    traffic = CliTraffic()

    class Recorded(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            traffic.attach(self)
            self.hooks["response"].append(traffic.record_error_page)

    monkeypatch.setattr(requests, "Session", Recorded)
    return traffic


class _Terminal(io.StringIO):
    """A standard input that is a terminal: both CLIs read image data from a standard input
    that is not one (pytest's is not), and refuse it beside `--file`."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean shell for the CLIs run in-process: no OS_* variables, a HOME and working
    folder of the test's own (the glance CLI caches schemas in ~/.glanceclient, the openstack
    CLI reads clouds.yaml there), and a terminal for standard input."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "stdin", _Terminal())


@pytest.fixture
def glance_cli(
    endpoint: str, cli_environment: None, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """Runs `glance --os-image-url URL --os-auth-token T ARGS...` in-process (no identity
    headers: the server's default admin identity); returns what it printed."""

    def run(*args: str) -> str:
        capsys.readouterr()
        OpenStackImagesShell().main(["--os-image-url", endpoint, "--os-auth-token", "t", *args])
        out, err = capsys.readouterr()
        assert "falling back to v1" not in err
        return out

    return run


@pytest.fixture
def preserved_loggers() -> Iterator[None]:
    """Undoes what the openstack CLI does to this process's logging when it runs in-process
    (cliff and osc-lib set the root logger to DEBUG with a console handler, and the levels of
    requests, cliff, stevedore and iso8601): it would outlive the test."""
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level, logger.handlers[:], logger.propagate) for logger in loggers]
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


@pytest.fixture
def osc(
    endpoint: str,
    cli_environment: None,
    preserved_loggers: None,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., Any]]:
    """Runs `openstack --os-auth-type none --os-endpoint URL ARGS...` in-process, as
    python-openstackclient's `openstack` command does; returns what it printed, read as JSON
    when ARGS ask for `-f json`. The `none` plugin sends no identity headers (the server's
    default admin identity) and the token `notused`; the sdk under it discovers /v2 from the
    versions document."""
    # Imported here: python-openstackclient is not (yet) among the project's test
    # dependencies, and without it only the tests that use this fixture should fail.
    from openstackclient import shell
    from osc_lib.clientmanager import ClientCache, ClientManager

    def forget_clients() -> None:
        # osc-lib caches each service's client on the ClientManager class, for the process:
        # in-process, a run would reuse the first run's session (and the traffic it records
        # to). Each real `openstack` command is a new process, without such a cache.
        for attribute in vars(ClientManager).values():
            if isinstance(attribute, ClientCache):
                attribute._handle = None

    def run(*args: str) -> Any:
        forget_clients()
        capsys.readouterr()
        status = shell.main(["--os-auth-type", "none", "--os-endpoint", endpoint, *args])
        out, err = capsys.readouterr()
        assert status == 0, err
        return json.loads(out) if "json" in args else out

    yield run
    forget_clients()


def printed_image(out: str) -> dict[str, str]:
    """The properties of the table `glance image-show` (and image-create...) prints."""
    rows = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("", "Property"):
            rows[cells[0]] = cells[1]
    return rows


# --- python-glanceclient, its v2 API -----------------------------------------------------------


def test_glanceclient_stage_then_glance_direct_import(
    glance: GlanceClient, traffic: Traffic, worker: None, image_file: Path
) -> None:
    assert glance.images.get_import_info()["import-methods"]["value"] == [
        "glance-direct",
        "web-download",
        "copy-image",
    ]
    image = glance.images.create(name="gd", disk_format="raw", container_format="bare")
    (post,) = traffic.to("POST", "/v2/images")
    assert post.response_headers["openstack-image-import-methods"] == (
        "glance-direct,web-download,copy-image"
    )

    with image_file.open("rb") as data:
        glance.images.stage(image["id"], data, image_size=len(DATA))
    (put,) = traffic.to("PUT", f"/v2/images/{image['id']}/stage")
    assert put.status == 204
    assert put.request_headers["transfer-encoding"] == "chunked"
    assert put.request_headers["x-openstack-image-size"] == str(len(DATA))
    assert put.request_headers["content-type"] == "application/octet-stream"
    staged = glance.images.get(image["id"])
    assert (staged["status"], staged["size"], staged["checksum"]) == ("uploading", len(DATA), None)

    glance.images.image_import(image["id"], method="glance-direct")
    (started,) = traffic.to("POST", f"/v2/images/{image['id']}/import")
    assert started.status == 202
    assert started.json_body() == {"method": {"name": "glance-direct"}}

    done = wait_while_importing(glance, image["id"])
    assert (done["status"], done["size"], done["checksum"]) == ("active", len(DATA), MD5)
    assert (done["os_hash_algo"], done["os_hash_value"]) == ("sha512", SHA512)
    assert "os_glance_import_task" not in done
    glance.images.model(**done)  # warlock: the active image conforms to the served schema
    assert downloaded(glance, image["id"]) == DATA
    (task,) = image_tasks(glance, image["id"])
    assert (task["type"], task["status"], task["result"]) == (
        "api_image_import",
        "success",
        {"image_id": image["id"]},
    )
    assert task["input"]["import_req"] == {"method": {"name": "glance-direct"}}


def test_glanceclient_web_download(
    glance: GlanceClient, app: FastAPI, traffic: Traffic, web_server: WebServer
) -> None:
    image = glance.images.create(name="wd", disk_format="raw", container_format="bare")
    glance.images.image_import(image["id"], method="web-download", uri=web_server.image_uri)
    (started,) = traffic.to("POST", f"/v2/images/{image['id']}/import")
    assert started.status == 202
    assert started.json_body() == {"method": {"name": "web-download", "uri": web_server.image_uri}}
    # Nothing is fetched before the job runs; meanwhile the client sees the import running.
    assert web_server.served.requests == []
    importing = glance.images.get(image["id"])
    assert importing["status"] == "importing"
    (pending,) = image_tasks(glance, image["id"])
    assert pending["status"] == "pending"
    assert importing["os_glance_import_task"] == pending["id"]

    assert run_jobs(app) == 1
    ((path, headers),) = web_server.served.requests
    assert path == "/image.raw"
    assert headers["user-agent"] == "Glint"
    done = glance.images.get(image["id"])
    assert (done["status"], done["size"], done["checksum"]) == ("active", len(DATA), MD5)
    assert downloaded(glance, image["id"]) == DATA
    (task,) = image_tasks(glance, image["id"])
    assert (task["id"], task["status"]) == (pending["id"], "success")


def test_glanceclient_refusals(
    glance: GlanceClient, glance_as: GlanceFactory, web_server: WebServer
) -> None:
    """What the client raises for Glance's refusals: an import before staging, a URI that does
    not pass filtering, another project's image."""
    image = glance.images.create(name="refused", disk_format="raw", container_format="bare")
    with pytest.raises(exc.HTTPConflict, match="needs to be staged"):
        glance.images.image_import(image["id"], method="glance-direct")
    with pytest.raises(exc.HTTPBadRequest, match="does not pass filtering"):
        glance.images.image_import(image["id"], method="web-download", uri="http://127.0.0.2/x")
    # glanceclient itself refuses a URI with another method, before sending anything.
    with pytest.raises(exc.HTTPBadRequest, match="only supported with method"):
        glance.images.image_import(image["id"], method="glance-direct", uri=web_server.image_uri)
    mine = glance_as(A).images.create(name="a's", disk_format="raw", container_format="bare")
    with pytest.raises(exc.HTTPNotFound):
        glance_as(B).images.image_import(
            mine["id"], method="web-download", uri=web_server.image_uri
        )
    assert glance.images.get(image["id"])["status"] == "queued"


# --- the glance CLI ----------------------------------------------------------------------------


@GLANCE_CLI_WARNING
def test_glance_cli_create_via_import_glance_direct(
    glance_cli: Callable[..., str],
    glance: GlanceClient,
    app: FastAPI,
    all_traffic: CliTraffic,
    image_file: Path,
) -> None:
    out = glance_cli(
        *CREATE_VIA_IMPORT, "--name", "cli-gd", "--file", str(image_file),
        "--import-method", "glance-direct",
    )  # fmt: skip
    printed = printed_image(out)
    # The CLI does not wait: it shows the image as it was right after the import started.
    assert (printed["name"], printed["status"]) == ("cli-gd", "importing")
    image_id = printed["id"]
    # After discovery (/versions, the schemas) it checked the import methods (from
    # /v2/info/import, not the create response's header), then created, staged, imported and
    # showed the image.
    assert api_calls(all_traffic) == [
        ("GET", "/v2/info/import", 200),
        ("POST", "/v2/images", 201),
        ("PUT", f"/v2/images/{image_id}/stage", 204),
        ("POST", f"/v2/images/{image_id}/import", 202),
        ("GET", f"/v2/images/{image_id}", 200),
    ]
    (stage,) = all_traffic.to("PUT", f"/v2/images/{image_id}/stage")
    assert stage.request_headers["x-openstack-image-size"] == str(len(DATA))
    (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
    assert started.json_body() == {"method": {"name": "glance-direct"}}

    assert run_jobs(app) == 1
    done = glance.images.get(image_id)
    assert (done["status"], done["checksum"]) == ("active", MD5)
    assert downloaded(glance, image_id) == DATA
    assert printed_image(glance_cli("image-show", image_id))["status"] == "active"


@GLANCE_CLI_WARNING
def test_glance_cli_create_via_import_web_download(
    glance_cli: Callable[..., str],
    glance: GlanceClient,
    app: FastAPI,
    all_traffic: CliTraffic,
    web_server: WebServer,
) -> None:
    out = glance_cli(
        *CREATE_VIA_IMPORT, "--name", "cli-wd", "--import-method", "web-download",
        "--uri", web_server.image_uri,
    )  # fmt: skip
    printed = printed_image(out)
    assert printed["status"] == "importing"
    (started,) = all_traffic.to("POST", f"/v2/images/{printed['id']}/import")
    assert started.json_body() == {"method": {"name": "web-download", "uri": web_server.image_uri}}
    assert all_traffic.to("PUT", "/v2/images/") == []  # nothing staged

    run_jobs(app)
    done = glance.images.get(printed["id"])
    assert (done["status"], done["checksum"]) == ("active", MD5)
    assert downloaded(glance, printed["id"]) == DATA


class TestOnlyGlanceDirect:
    """A cloud that offers glance-direct only (`import_.methods`)."""

    @pytest.fixture
    def app(self, settings: Settings, db: Database) -> FastAPI:
        only = ImportSettings(methods=["glance-direct"])
        return create_app(settings.model_copy(update={"import_": only}), database=db)

    @GLANCE_CLI_WARNING
    def test_glance_cli_checks_the_methods_offered_first(
        self,
        glance_cli: Callable[..., str],
        glance: GlanceClient,
        all_traffic: CliTraffic,
        web_server: WebServer,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """It reads `/v2/info/import` and creates nothing for a method not listed there."""
        with pytest.raises(SystemExit):
            glance_cli(
                *CREATE_VIA_IMPORT, "--name", "nope", "--import-method", "web-download",
                "--uri", web_server.image_uri,
            )  # fmt: skip
        said = capsys.readouterr().err
        assert "Import method 'web-download' is not valid for this cloud" in said
        assert api_calls(all_traffic) == [("GET", "/v2/info/import", 200)]
        assert list(glance.images.list()) == []

    def test_sdk_checks_the_create_responses_header(
        self, sdk: Connection, traffic: Traffic, web_server: WebServer
    ) -> None:
        """The sdk reads the methods from the create response's header, and raises before the
        import for a method not listed there (the image it created stays, queued)."""
        with pytest.raises(sdk_exceptions.SDKException, match="does not support the image"):
            v2(sdk).create_image(
                "nope",
                disk_format="raw",
                container_format="bare",
                use_import=True,
                import_method="web-download",
                uri=web_server.image_uri,
            )
        (post,) = [e for e in traffic.to("POST", "/v2/images") if e.path == "/v2/images"]
        assert post.response_headers["openstack-image-import-methods"] == "glance-direct"
        assert traffic.to("POST", "/v2/images/") == []  # no import sent
        assert [image.status for image in v2(sdk).images()] == ["queued"]


# --- openstacksdk -----------------------------------------------------------------------------


def test_sdk_create_image_with_import(
    sdk: Connection, traffic: Traffic, worker: None, image_file: Path
) -> None:
    image = v2(sdk).create_image(
        "sdk-import",
        filename=str(image_file),
        disk_format="raw",
        container_format="bare",
        use_import=True,
        wait=True,
    )
    # The proxy's `wait` waits for nothing on this path (only its task-API path uses it): the
    # sdk's own waiter follows the import to its end.
    done = v2(sdk).wait_for_status(
        image, "active", failures=["queued"], interval=0.01, wait=int(DEADLINE)
    )
    assert (done.status, done.size, done.checksum) == ("active", len(DATA), MD5)
    assert (done.hash_algo, done.hash_value) == ("sha512", SHA512)
    assert v2(sdk).download_image(done, stream=False).content == DATA

    # It trusted the create response's OpenStack-image-import-methods header (it raises unless
    # the method is listed there): no /v2/info/import.
    (post,) = [e for e in traffic.to("POST", "/v2/images") if e.path == "/v2/images"]
    assert "glance-direct" in post.response_headers["openstack-image-import-methods"]
    assert traffic.to("GET", "/v2/info/import") == []
    # It staged with a Content-Length (not chunked) and an empty Accept.
    (stage,) = traffic.to("PUT", f"/v2/images/{image.id}/stage")
    assert stage.status == 204
    assert stage.request_headers["content-length"] == str(len(DATA))
    assert stage.request_headers["x-openstack-image-size"] == str(len(DATA))
    assert stage.request_headers["accept"] == ""
    assert "transfer-encoding" not in stage.request_headers
    (started,) = traffic.to("POST", f"/v2/images/{image.id}/import")
    assert started.status == 202
    assert started.json_body() == {"method": {"name": "glance-direct"}}


def test_sdk_cloud_create_image_wait_returns_while_importing(
    sdk: Connection, app: FastAPI, image_file: Path
) -> None:
    """`conn.create_image(..., wait=True)` waits only while the image is queued or saving: an
    import's image is `importing` by then (against Glance too), and that is what it returns."""
    image = sdk.create_image(
        "cloud-import",
        filename=str(image_file),
        disk_format="raw",
        container_format="bare",
        use_import=True,
        wait=True,
    )
    assert image is not None
    assert image.status == "importing"
    run_jobs(app)
    done = sdk.get_image(image.id)
    assert done is not None
    assert (done.status, done.checksum) == ("active", MD5)


def test_sdk_web_download(
    sdk: Connection, app: FastAPI, traffic: Traffic, web_server: WebServer
) -> None:
    image = v2(sdk).create_image(
        "sdk-wd",
        disk_format="raw",
        container_format="bare",
        use_import=True,
        import_method="web-download",
        uri=web_server.image_uri,
    )
    (started,) = traffic.to("POST", f"/v2/images/{image.id}/import")
    assert started.status == 202
    assert started.json_body() == {"method": {"name": "web-download", "uri": web_server.image_uri}}
    assert traffic.to("PUT", "/v2/images/") == []
    run_jobs(app)
    done = v2(sdk).get_image(image.id)
    assert (done.status, done.checksum) == ("active", MD5)
    assert v2(sdk).download_image(done, stream=False).content == DATA


def test_sdk_ignores_a_refused_import(
    sdk: Connection, traffic: Traffic, web_server: WebServer
) -> None:
    """openstacksdk does not check the import's answer (its proxy does not raise on errors and
    `create_image` drops the response): a refused web-download leaves a queued image and no
    exception. Glance answers the same 400; only the traffic shows it."""
    image = v2(sdk).create_image(
        "sdk-refused",
        disk_format="raw",
        container_format="bare",
        use_import=True,
        import_method="web-download",
        uri="http://127.0.0.2/x",
    )
    (refused,) = traffic.to("POST", f"/v2/images/{image.id}/import")
    assert refused.status == 400
    # The sdk sends `Accept: */*` here, so Glance's (and Glint's) error page is HTML.
    assert refused.request_headers["accept"] == "*/*"
    assert refused.response_headers["content-type"].startswith("text/html")
    assert v2(sdk).get_image(image.id).status == "queued"
    assert web_server.served.requests == []
    # The proxy's own import_image returns the response for the caller to check.
    response = v2(sdk).import_image(image, method="web-download", uri="http://127.0.0.2/x")
    assert response.status_code == 400
    assert "URI for web-download does not pass filtering" in response.text


# --- the openstack CLI -------------------------------------------------------------------------


@OSC_WARNINGS
def test_osc_image_create_with_import(
    osc: Callable[..., Any],
    app: FastAPI,
    all_traffic: CliTraffic,
    image_file: Path,
    tmp_path: Path,
) -> None:
    created = osc(*OSC_CREATE, "--import", "--file", str(image_file), "-f", "json", "osc-gd")
    # It does not wait: it shows the image as it was once the import had started.
    assert (created["name"], created["status"]) == ("osc-gd", "importing")
    image_id = created["id"]
    # The sdk's create_image underneath: versions discovery (GET /, a 300), create, stage,
    # import (the create response's import-methods header is its only check), then a show.
    discovery = all_traffic.exchanges[0]
    assert (discovery.method, discovery.path, discovery.status) == ("GET", "/", 300)
    assert api_calls(all_traffic) == [
        ("POST", "/v2/images", 201),
        ("PUT", f"/v2/images/{image_id}/stage", 204),
        ("POST", f"/v2/images/{image_id}/import", 202),
        ("GET", f"/v2/images/{image_id}", 200),
    ]
    (stage,) = all_traffic.to("PUT", f"/v2/images/{image_id}/stage")
    assert stage.request_headers["x-auth-token"] == "notused"
    assert stage.request_headers["content-length"] == str(len(DATA))
    (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
    assert started.json_body() == {"method": {"name": "glance-direct"}}

    assert run_jobs(app) == 1
    shown = osc("image", "show", "-f", "json", image_id)
    assert (shown["status"], shown["checksum"], shown["size"]) == ("active", MD5, len(DATA))
    saved = tmp_path / "saved.raw"
    assert osc("image", "save", "--file", str(saved), image_id) == ""
    assert saved.read_bytes() == DATA


@OSC_WARNINGS
def test_osc_stage_then_import(
    osc: Callable[..., Any], app: FastAPI, all_traffic: CliTraffic, image_file: Path
) -> None:
    image_id = osc(*OSC_CREATE, "-f", "json", "osc-staged")["id"]
    osc("image", "stage", "--file", str(image_file), image_id)
    assert osc("image", "show", "-f", "json", image_id)["status"] == "uploading"
    all_traffic.clear()
    # `--disallow-failure`: see test_osc_image_import_needs_disallow_failure_on_one_store.
    imported = osc(
        "image", "import", "--method", "glance-direct", "--disallow-failure", "-f", "json",
        image_id,
    )  # fmt: skip
    # What it prints is the image as it found it before the import.
    assert imported["status"] == "uploading"
    assert api_calls(all_traffic)[0] == ("GET", "/v2/info/import", 200)
    (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
    assert started.status == 202
    assert started.json_body() == {
        "method": {"name": "glance-direct"},
        "all_stores": False,
        "all_stores_must_succeed": True,
    }
    run_jobs(app)
    shown = osc("image", "show", "-f", "json", image_id)
    assert (shown["status"], shown["checksum"]) == ("active", MD5)


@OSC_WARNINGS
def test_osc_image_import_needs_disallow_failure_on_one_store(
    osc: Callable[..., Any], app: FastAPI, all_traffic: CliTraffic, web_server: WebServer
) -> None:
    """`openstack image import` always sends all_stores_must_succeed, false unless
    `--disallow-failure`; Glance refuses false without multi-store (400 "All_stores_must_succeed
    can only be set with enabled_backends"), and so does Glint. The CLI does not check the
    answer: it exits 0 and the image stays queued."""
    image_id = osc(*OSC_CREATE, "-f", "json", "osc-wd")["id"]
    all_traffic.clear()
    osc("image", "import", "--method", "web-download", "--uri", web_server.image_uri, image_id)
    (refused,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
    assert refused.status == 400
    assert refused.json_body() == {
        "method": {"name": "web-download", "uri": web_server.image_uri},
        "all_stores": False,
        "all_stores_must_succeed": False,
    }
    said = all_traffic.error_pages[refused.path]
    assert "All_stores_must_succeed can only be set with enabled_backends" in said
    assert osc("image", "show", "-f", "json", image_id)["status"] == "queued"

    all_traffic.clear()
    osc(
        "image", "import", "--method", "web-download", "--uri", web_server.image_uri,
        "--disallow-failure", image_id,
    )  # fmt: skip
    (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
    assert started.status == 202
    run_jobs(app)
    shown = osc("image", "show", "-f", "json", image_id)
    assert (shown["status"], shown["checksum"]) == ("active", MD5)


# --- a failed import, as the clients see it -----------------------------------------------------


def test_glanceclient_sees_a_failed_import(
    glance: GlanceClient, traffic: Traffic, worker: None
) -> None:
    """Bytes that are not the qcow2 the image declares: staging takes them (as Glance's
    does), the import fails, the image is queued again, and its task says why."""
    image = glance.images.create(name="not-qcow2", disk_format="qcow2", container_format="bare")
    glance.images.stage(image["id"], io.BytesIO(DATA), image_size=len(DATA))
    glance.images.image_import(image["id"], method="glance-direct")

    failed = wait_while_importing(glance, image["id"])
    assert (failed["status"], failed["size"], failed["checksum"]) == ("queued", None, None)
    assert "os_glance_import_task" not in failed
    assert failed["os_glance_failed_import"] == ""  # store ids only with multi-store
    (task,) = image_tasks(glance, image["id"])
    assert task["status"] == "failure"
    assert task["message"] == "Image disk_format qcow2 does not match stream data raw."
    assert task["result"] is None
    # glanceclient's own call asks /versions for v2.12 first, which one store does not list
    # (as in Glance), and refuses without asking for the tasks.
    traffic.clear()
    with pytest.raises(exc.HTTPNotImplemented):
        glance.images.get_associated_image_tasks(image["id"])
    assert [e.path for e in traffic.exchanges] == ["/versions"]
    # Queued again: the data can be staged anew.
    glance.images.stage(image["id"], io.BytesIO(b"QFI\xfb" + DATA[4:]), image_size=len(DATA))
    assert glance.images.get(image["id"])["status"] == "uploading"


def test_sdk_sees_a_failed_import(sdk: Connection, worker: None, image_file: Path) -> None:
    image = v2(sdk).create_image(
        "sdk-not-qcow2",
        filename=str(image_file),
        disk_format="qcow2",
        container_format="bare",
        use_import=True,
    )
    # The image goes back to queued: a status to treat as the failure when waiting for active.
    with pytest.raises(sdk_exceptions.ResourceFailure, match="failure state queued"):
        v2(sdk).wait_for_status(
            image, "active", failures=["queued"], interval=0.01, wait=int(DEADLINE)
        )
    assert v2(sdk).get_image(image.id).checksum is None


# --- several stores ----------------------------------------------------------------------------


def two_stores(tmp_path: Path) -> StorageSettings:
    return StorageSettings(
        default="fast",
        stores={
            "fast": FileStoreSettings(path=tmp_path / "fast"),
            "cheap": FileStoreSettings(path=tmp_path / "cheap"),
        },
    )


class TestTwoStores:
    """Multi-store: two file stores, `fast` the default."""

    @pytest.fixture
    def app(
        self, settings: Settings, db: Database, web_server: WebServer, tmp_path: Path
    ) -> FastAPI:
        multistore = settings.model_copy(update={"storage": two_stores(tmp_path)})
        return create_app(_allowing(multistore, web_server), database=db)

    def test_glanceclient_imports_into_the_stores_named(
        self, glance: GlanceClient, app: FastAPI, traffic: Traffic, tmp_path: Path
    ) -> None:
        image = glance.images.create(name="both", disk_format="raw", container_format="bare")
        glance.images.stage(image["id"], io.BytesIO(DATA), image_size=len(DATA))
        glance.images.image_import(image["id"], method="glance-direct", stores=["fast", "cheap"])
        (started,) = traffic.to("POST", f"/v2/images/{image['id']}/import")
        # glanceclient's allow_failure (on by default) sends all_stores_must_succeed false.
        assert started.json_body() == {
            "method": {"name": "glance-direct"},
            "stores": ["fast", "cheap"],
            "all_stores_must_succeed": False,
        }
        assert glance.images.get(image["id"])["os_glance_importing_to_stores"] == "cheap,fast"

        run_jobs(app)
        done = glance.images.get(image["id"])
        assert (done["status"], done["checksum"], done["stores"]) == ("active", MD5, "fast,cheap")
        assert (done["os_glance_importing_to_stores"], done["os_glance_failed_import"]) == ("", "")
        assert len(files_in(tmp_path / "fast")) == len(files_in(tmp_path / "cheap")) == 1
        assert downloaded(glance, image["id"]) == DATA
        # With several stores /versions lists v2.12, so glanceclient's own call works.
        tasks = glance.images.get_associated_image_tasks(image["id"])["tasks"]
        assert [(task["status"], task["input"]["backend"]) for task in tasks] == [
            ("success", ["fast", "cheap"])
        ]

    def test_glanceclient_imports_into_all_stores(
        self, glance: GlanceClient, app: FastAPI, traffic: Traffic, web_server: WebServer
    ) -> None:
        image = glance.images.create(name="all", disk_format="raw", container_format="bare")
        glance.images.image_import(
            image["id"], method="web-download", uri=web_server.image_uri, all_stores=True
        )
        (started,) = traffic.to("POST", f"/v2/images/{image['id']}/import")
        assert started.json_body() == {
            "method": {"name": "web-download", "uri": web_server.image_uri},
            "all_stores": True,
            "all_stores_must_succeed": False,
        }
        run_jobs(app)
        done = glance.images.get(image["id"])
        assert (done["status"], done["checksum"]) == ("active", MD5)
        assert sorted(done["stores"].split(",")) == ["cheap", "fast"]
        assert downloaded(glance, image["id"]) == DATA

    def test_web_download_into_all_stores_fetches_once(
        self, glance: GlanceClient, app: FastAPI, web_server: WebServer, tmp_path: Path
    ) -> None:
        image = glance.images.create(name="once", disk_format="raw", container_format="bare")
        glance.images.image_import(
            image["id"], method="web-download", uri=web_server.image_uri, all_stores=True
        )
        run_jobs(app)
        done = glance.images.get(image["id"])
        assert (done["status"], done["checksum"]) == ("active", MD5)
        assert sorted(done["stores"].split(",")) == ["cheap", "fast"]
        # A URI may be good for one download only (a signed URL): Glance reads it once.
        assert len(web_server.served.requests) == 1
        # The download staged in the default store became its copy: nothing else is left.
        assert len(files_in(tmp_path / "fast")) == 1
        assert len(files_in(tmp_path / "cheap")) == 1
        assert downloaded(glance, image["id"]) == DATA

    def test_glanceclient_copy_image_as_admin(
        self, glance_as: GlanceFactory, app: FastAPI, traffic: Traffic, tmp_path: Path
    ) -> None:
        owner = glance_as(A)
        image = owner.images.create(name="copied", disk_format="raw", container_format="bare")
        owner.images.upload(image["id"], io.BytesIO(DATA), image_size=len(DATA))
        assert owner.images.get(image["id"])["stores"] == "fast"

        # copy-image is an admin's (Glance's copy_image policy), even for the image's owner.
        with pytest.raises(exc.HTTPForbidden, match="copy_image"):
            owner.images.image_import(image["id"], method="copy-image", stores=["cheap"])
        admin = glance_as(ADMIN)
        traffic.clear()
        admin.images.image_import(image["id"], method="copy-image", stores=["cheap"])
        (started,) = traffic.to("POST", f"/v2/images/{image['id']}/import")
        assert started.status == 202
        assert started.request_headers["x-roles"] == ADMIN["X-Roles"]
        assert started.json_body() == {
            "method": {"name": "copy-image"},
            "stores": ["cheap"],
            "all_stores_must_succeed": False,
        }
        # A copy leaves the image active (and readable) while it runs.
        copying = owner.images.get(image["id"])
        assert (copying["status"], copying["os_glance_importing_to_stores"]) == (
            "active",
            "cheap",
        )

        run_jobs(app)
        done = owner.images.get(image["id"])
        assert (done["status"], done["checksum"], done["stores"]) == ("active", MD5, "fast,cheap")
        assert len(files_in(tmp_path / "cheap")) == 1
        assert downloaded(owner, image["id"]) == DATA
        # Glance's HTML error page escapes the quotes, and glanceclient shows it so.
        with pytest.raises(exc.HTTPBadRequest, match="already present at store &#x27;cheap"):
            admin.images.image_import(image["id"], method="copy-image", stores=["cheap"])

    def test_sdk_create_image_into_stores(
        self, sdk: Connection, traffic: Traffic, worker: None, image_file: Path
    ) -> None:
        image = v2(sdk).create_image(
            "sdk-stores",
            filename=str(image_file),
            disk_format="raw",
            container_format="bare",
            stores=["cheap", "fast"],  # implies use_import
        )
        (started,) = traffic.to("POST", f"/v2/images/{image.id}/import")
        # Unlike glanceclient, the sdk leaves all_stores_must_succeed out (Glance's default,
        # true) unless asked.
        assert started.json_body() == {
            "method": {"name": "glance-direct"},
            "stores": ["cheap", "fast"],
        }
        done = v2(sdk).wait_for_status(
            image, "active", failures=["queued"], interval=0.01, wait=int(DEADLINE)
        )
        assert done.checksum == MD5
        assert sorted(done.properties["stores"].split(",")) == ["cheap", "fast"]

    @GLANCE_CLI_WARNING
    def test_glance_cli_create_via_import_into_stores(
        self,
        glance_cli: Callable[..., str],
        glance: GlanceClient,
        app: FastAPI,
        all_traffic: CliTraffic,
        image_file: Path,
        tmp_path: Path,
    ) -> None:
        out = glance_cli(
            *CREATE_VIA_IMPORT, "--name", "cli-stores", "--file", str(image_file),
            "--import-method", "glance-direct", "--stores", "fast,cheap",
        )  # fmt: skip
        image_id = printed_image(out)["id"]
        # Each store named is looked up in /v2/info/stores first.
        assert api_calls(all_traffic) == [
            ("GET", "/v2/info/import", 200),
            ("GET", "/v2/info/stores", 200),
            ("GET", "/v2/info/stores", 200),
            ("POST", "/v2/images", 201),
            ("PUT", f"/v2/images/{image_id}/stage", 204),
            ("POST", f"/v2/images/{image_id}/import", 202),
            ("GET", f"/v2/images/{image_id}", 200),
        ]
        (post,) = [e for e in all_traffic.to("POST", "/v2/images") if e.path == "/v2/images"]
        assert "stores" not in post.json_body()  # the CLI keeps it out of the create
        (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
        assert started.json_body() == {
            "method": {"name": "glance-direct"},
            "stores": ["fast", "cheap"],
            "all_stores_must_succeed": False,
        }

        run_jobs(app)
        done = glance.images.get(image_id)
        assert (done["status"], done["checksum"], done["stores"]) == ("active", MD5, "fast,cheap")
        assert len(files_in(tmp_path / "fast")) == len(files_in(tmp_path / "cheap")) == 1

    @GLANCE_CLI_WARNING
    def test_glance_cli_refuses_an_unknown_store(
        self,
        glance_cli: Callable[..., str],
        glance: GlanceClient,
        all_traffic: CliTraffic,
        image_file: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        with pytest.raises(SystemExit):
            glance_cli(
                *CREATE_VIA_IMPORT, "--name", "nowhere", "--file", str(image_file),
                "--import-method", "glance-direct", "--stores", "fast,nosuch",
            )  # fmt: skip
        assert "Store 'nosuch' is not valid for this cloud" in capsys.readouterr().err
        assert all_traffic.to("POST", "/v2/images") == []

    @GLANCE_CLI_WARNING
    def test_glance_cli_image_tasks_says_why_an_import_failed(
        self,
        glance_cli: Callable[..., str],
        glance: GlanceClient,
        app: FastAPI,
        image_file: Path,
    ) -> None:
        out = glance_cli(
            "image-create-via-import", "--name", "cli-not-qcow2", "--disk-format", "qcow2",
            "--container-format", "bare", "--file", str(image_file), "--stores", "cheap",
        )  # fmt: skip
        image_id = printed_image(out)["id"]
        run_jobs(app)
        failed = glance.images.get(image_id)
        assert (failed["status"], failed["os_glance_failed_import"]) == ("queued", "cheap")
        # With several stores /versions lists v2.12: `glance image-tasks` asks for the tasks.
        tasks = glance_cli("image-tasks", image_id)
        assert "Image disk_format qcow2 does not match stream data raw." in tasks
        assert "failure" in tasks

    @OSC_WARNINGS
    def test_osc_copy_image(
        self, osc: Callable[..., Any], app: FastAPI, all_traffic: CliTraffic, image_file: Path
    ) -> None:
        image_id = osc(*OSC_CREATE, "--import", "--file", str(image_file), "-f", "json", "c")["id"]
        run_jobs(app)
        # The sdk's Image has no `stores` attribute: the CLI shows it among the properties.
        assert osc("image", "show", "-f", "json", image_id)["properties"]["stores"] == "fast"
        all_traffic.clear()
        osc("image", "import", "--method", "copy-image", "--store", "cheap", "-f", "json", image_id)
        (started,) = all_traffic.to("POST", f"/v2/images/{image_id}/import")
        assert started.status == 202
        # With multi-store, all_stores_must_succeed false (its default) is accepted.
        assert started.json_body() == {
            "method": {"name": "copy-image"},
            "all_stores": False,
            "all_stores_must_succeed": False,
            "stores": ["cheap"],
        }
        run_jobs(app)
        shown = osc("image", "show", "-f", "json", image_id)
        assert (shown["status"], shown["checksum"]) == ("active", MD5)
        assert shown["properties"]["stores"] == "fast,cheap"
