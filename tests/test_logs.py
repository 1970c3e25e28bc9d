"""Logs an operator can use: an access line per request, and the request id (and image id, and
the job) on every line a request causes, whoever logs it; text or JSON; no set-up noise."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from anyio import to_thread
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import Response

from app import logs
from app.api.middleware import EdgeMiddleware
from app.db.engine import Database
from app.jobs.queue import JobQueue, enqueue
from app.jobs.worker import Worker
from app.storage.threads import run_in_thread
from tests.identities import A
from tests.serving import serve

pytestmark = pytest.mark.usefixtures("isolated_logging")

OCTET = {"Content-Type": "application/octet-stream"}


class Captured(logging.Handler):
    """Records as Glint's handler sees them: through the context filter."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(logs.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, logger: str) -> list[logging.LogRecord]:
        return [record for record in self.records if record.name == logger]


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def _record(message: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("some.library", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def _formatted(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    logs.ContextFilter().filter(record)
    return formatter.format(record)


# --- formats ---------------------------------------------------------------------------------


def test_text_lines_carry_the_context_in_brackets() -> None:
    formatter = logs.TextFormatter()
    assert _formatted(formatter, _record("hello %s", "world")).endswith(
        " INFO some.library: hello world"
    )
    with logs.bound(request_id="req-1", image_id="abc"):
        line = _formatted(formatter, _record())
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO some\.library \[req-1 image=abc\]: hello %s",
        line,
    )
    with logs.bound(request_id="req-2", job="image.delete_data", job_id=7):
        assert "[req-2 job=image.delete_data#7]: " in _formatted(formatter, _record())


def test_json_lines_are_one_object_each() -> None:
    formatter = logs.JsonFormatter()
    with logs.bound(request_id="req-1", image_id="abc"):
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            record = _record("failed:\n%s", "details")
            record.exc_info = sys.exc_info()
        line = _formatted(formatter, record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("Z")
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "INFO",
        "some.library",
        "failed:\ndetails",
    )
    assert (entry["request_id"], entry["image_id"]) == ("req-1", "abc")
    assert "ValueError: boom" in entry["exception"]
    assert "job" not in entry

    bare = json.loads(_formatted(formatter, _record()))
    assert (bare["request_id"], bare["image_id"]) == (None, None)
    access = _record(method="GET", path="/v2/images", status=200, bytes=12, duration_ms=1.5)
    entry = json.loads(_formatted(formatter, access))
    assert {name: entry[name] for name in logs.ACCESS_FIELDS} == {
        "method": "GET",
        "path": "/v2/images",
        "status": 200,
        "bytes": 12,
        "duration_ms": 1.5,
    }


def test_a_value_given_to_the_record_wins_over_the_context() -> None:
    with logs.bound(request_id="req-context"):
        record = _record(request_id="req-explicit")
        assert "[req-explicit]" in _formatted(logs.TextFormatter(), record)


def test_bindings_nest_and_unbind() -> None:
    with logs.bound(request_id="req-1", image_id="a"):
        with logs.bound(job="j", job_id=0):
            assert logs.current() == logs.LogContext("req-1", "a", "j", 0)
        assert logs.current() == logs.LogContext("req-1", "a")
    assert logs.current() == logs.LogContext()


def test_alembic_set_up_chatter_is_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "text")
    migration = logging.getLogger("alembic.runtime.migration")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.types")
    migration.info("Context impl SQLiteImpl.")
    migration.info("Running upgrade  -> 17c8d523c857, create image tables")
    migration.warning("something wrong")
    assert [line.split(" ", 2)[2] for line in capsys.readouterr().err.splitlines()] == [
        "INFO alembic.runtime.migration: Running upgrade  -> 17c8d523c857, create image tables",
        "WARNING alembic.runtime.migration: something wrong",
    ]
    logs.configure("debug", "text")
    migration.info("Context impl SQLiteImpl.")
    assert "DEBUG alembic.runtime.migration: Context impl SQLiteImpl." in capsys.readouterr().err


def test_uvicorns_loggers_go_through_the_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("uvicorn.access").info("uvicorn's own access line")
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "Started server process [1]"


# --- what a request causes, in-process -----------------------------------------------------------


def test_each_request_gets_an_access_line(client: TestClient, captured: Captured) -> None:
    created = client.post(
        "/v2/images",
        json={"disk_format": "raw", "container_format": "bare"},
        headers={**A, "X-Openstack-Request-Id": "create-1"},
    )
    image_id = created.json()["id"]
    data = b"d" * 1000
    client.put(f"/v2/images/{image_id}/file", content=data, headers={**A, **OCTET})
    download = client.get(
        f"/v2/images/{image_id}/file?x=1", headers={**A, "X-Openstack-Request-Id": "get-1"}
    )
    assert download.content == data

    create, upload, get = captured.named(logs.ACCESS_LOGGER)
    assert (create.request_id, create.image_id) == ("req-create-1", None)
    assert (create.method, create.path, create.status) == ("POST", "/v2/images", 201)
    assert create.bytes == len(created.content)
    assert upload.image_id == image_id
    assert upload.getMessage().startswith(f"PUT /v2/images/{image_id}/file 204 0 bytes ")
    assert (get.request_id, get.image_id, get.status, get.bytes) == (
        "req-get-1",
        image_id,
        200,
        1000,
    )
    assert get.path == f"/v2/images/{image_id}/file?x=1"
    assert re.fullmatch(r"GET \S+ 200 1000 bytes \d+\.\d ms", get.getMessage())
    assert get.duration_ms >= 0


def test_passing_health_probes_log_at_debug(
    client: TestClient, captured: Captured, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/healthcheck").status_code == 200
    assert captured.named(logs.ACCESS_LOGGER) == []  # INFO captures nothing
    logging.getLogger().setLevel(logging.DEBUG)
    assert client.get("/healthcheck").status_code == 200
    (probe,) = captured.named(logs.ACCESS_LOGGER)
    assert (probe.levelno, probe.path, probe.status) == (logging.DEBUG, "/healthcheck", 200)
    logging.getLogger().setLevel(logging.INFO)
    monkeypatch.setattr(app.state.db, "is_reachable", lambda: False)
    assert client.get("/healthcheck").status_code == 503
    (_, failing) = captured.named(logs.ACCESS_LOGGER)
    assert (failing.levelno, failing.status) == (logging.INFO, 503)


def test_the_access_line_shows_the_target_as_sent(client: TestClient, captured: Captured) -> None:
    # A percent-escaped newline stays escaped: a client cannot forge a log line.
    client.get("/v2/images/abc%0A2026-01-01%20INFO%20forged", headers=A)
    (line,) = captured.named(logs.ACCESS_LOGGER)
    assert line.getMessage().startswith("GET /v2/images/abc%0A2026-01-01%20INFO%20forged ")
    assert line.image_id == "abc%0A2026-01-01%20INFO%20forged"
    client.get("/v2/images/" + "a" * 65, headers=A)
    assert captured.named(logs.ACCESS_LOGGER)[-1].image_id is None
    client.get("/v2/images?name=" + "n" * 5000, headers=A)
    assert len(captured.named(logs.ACCESS_LOGGER)[-1].path) == 2048


def test_lines_from_anywhere_during_a_request_name_it(app: FastAPI, captured: Captured) -> None:
    library = logging.getLogger("some.library")

    @app.get("/v2/images/{image_id}/probe")
    async def probe(image_id: str) -> dict[str, str]:
        library.info("on the event loop")
        await to_thread.run_sync(library.info, "in a worker thread")
        await run_in_thread(lambda: library.info("in a store's thread"))
        await asyncio.create_task(asyncio.to_thread(library.info, "in a task's thread"))
        return {}

    with TestClient(app) as client:
        client.get("/v2/images/img-1/probe", headers={"X-Openstack-Request-Id": "probe"})
    lines = captured.named("some.library")
    assert len(lines) == 4
    assert {(line.request_id, line.image_id) for line in lines} == {("req-probe", "img-1")}
    # Nothing stays bound once the request is over.
    assert logs.current() == logs.LogContext()


@pytest.mark.anyio
async def test_a_job_carries_the_request_that_enqueued_it(db: Database, captured: Captured) -> None:
    with logs.bound(request_id="req-delete", image_id="ignored"), db.session() as session:
        enqueue(session, "test.logs", {"image_id": "img-9"})
    with db.session() as session:
        enqueue(session, "test.logs", {"request_id": "req-given"})

    async def handler(payload: dict[str, Any]) -> None:
        logging.getLogger("some.library").info("working on %s", payload.get("image_id"))
        await to_thread.run_sync(logging.getLogger("some.library").info, "in a thread")

    worker = Worker(JobQueue(db), {"test.logs": handler})
    assert await worker.run_once()
    assert await worker.run_once()
    first, thread, second, _ = captured.named("some.library")
    for line in (first, thread):
        assert (line.request_id, line.image_id, line.job) == ("req-delete", "img-9", "test.logs")
        assert isinstance(line.job_id, int)
    assert (second.request_id, second.image_id) == ("req-given", None)
    done = captured.named("app.jobs.worker")
    assert done[0].getMessage().endswith("(test.logs) attempt 1 succeeded")
    assert done[0].request_id == "req-delete"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- a real server -------------------------------------------------------------------------------


def _wait_for(server: Any, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 30
    while not (found := re.search(pattern, server.output(), re.MULTILINE)):
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{server.output()}"
        time.sleep(0.1)
    return found


def test_serve_logs_requests_jobs_and_errors_with_their_ids(tmp_path: Path) -> None:
    with serve(tmp_path) as server, httpx.Client(base_url=server.base_url) as client:
        created = client.post(
            "/v2/images",
            json={"disk_format": "raw", "container_format": "bare"},
            headers={"X-Openstack-Request-Id": "create-1"},
        )
        image_id = created.json()["id"]
        client.put(f"/v2/images/{image_id}/file", content=b"x" * 5000, headers=OCTET)
        assert len(client.get(f"/v2/images/{image_id}/file").content) == 5000
        client.delete(f"/v2/images/{image_id}", headers={"X-Openstack-Request-Id": "delete-1"})
        # The embedded worker deletes the bytes, and says so in the request's name.
        job = _wait_for(
            server,
            rf"^.* INFO app\.jobs\.worker \[req-delete-1 image={image_id} "
            rf"job=image\.delete_data#\d+\]: job \d+ \(image\.delete_data\) attempt 1 succeeded$",
        )
        assert job
        # A fault no code path expects: the traceback names the request too.
        with sqlite3.connect(tmp_path / "data" / "glint.db") as database:
            database.execute("DROP TABLE image_tag")
        client.get("/v2/images?tag=x", headers={"X-Openstack-Request-Id": "broken-1"})
        server.stop()

    output = server.output()
    access = [
        (context, line.split(" "))
        for context, line in re.findall(r"^.* INFO glint\.access \[(.*)\]: (.*)$", output, re.M)
        if "/healthcheck" not in line
    ]
    assert access[0] == ("req-create-1", ["POST", "/v2/images", "201", ANY, "bytes", ANY, "ms"])
    upload, download, delete = ([context.split(" ")[1:], line[:5]] for context, line in access[1:4])
    assert upload == [
        [f"image={image_id}"],
        ["PUT", f"/v2/images/{image_id}/file", "204", "0", "bytes"],
    ]
    assert download == [
        [f"image={image_id}"],
        ["GET", f"/v2/images/{image_id}/file", "200", "5000", "bytes"],
    ]
    assert delete == [
        [f"image={image_id}"],
        ["DELETE", f"/v2/images/{image_id}", "204", "0", "bytes"],
    ]
    assert re.search(
        r"^.* ERROR app\.api\.middleware \[req-broken-1\]: unexpected error on GET /v2/images",
        output,
        re.MULTILINE,
    )
    # uvicorn's own lines, through the same format; none of its access lines; no set-up noise.
    assert re.search(r"^\S+ \S+ INFO uvicorn\.error: Application startup complete\.$", output, re.M)
    assert '" 200' not in output
    for noise in ("setup plugin", "Context impl", "Will assume"):
        assert noise not in output


def test_serve_logs_json_in_every_server_process(tmp_path: Path) -> None:
    settings = {"GLINT_LOGGING__FORMAT": "json", "GLINT_SERVER__WORKERS": "2"}
    with serve(tmp_path, settings=settings, options=["--log-level", "debug"]) as server:
        httpx.get(f"{server.base_url}/v2/images", headers={"X-Openstack-Request-Id": "json-1"})
        _wait_for(server, r'"request_id": "req-json-1"')
        server.stop()

    entries = [json.loads(line) for line in server.output().splitlines()]  # every line is JSON
    assert all(
        {"time", "level", "logger", "message", "request_id", "image_id"} <= entry.keys()
        for entry in entries
    )
    (access,) = [entry for entry in entries if entry["request_id"] == "req-json-1"]
    assert access["logger"] == logs.ACCESS_LOGGER
    assert (access["method"], access["path"], access["status"]) == ("GET", "/v2/images", 200)
    assert access["bytes"] > 0
    assert isinstance(access["duration_ms"], float)
    started = [entry for entry in entries if entry["message"] == "Application startup complete."]
    assert len({entry["process"] for entry in started}) == 2  # both server processes
    # `glint --log-level debug` reached them, and Alembic's set-up is there at debug.
    assert any(entry["level"] == "DEBUG" for entry in entries)
    assert any(
        entry["level"] == "DEBUG" and entry["message"] == "Context impl SQLiteImpl."
        for entry in entries
    )


def test_the_cli_log_level_reaches_every_server_process(tmp_path: Path) -> None:
    """`glint --log-level` wins over GLINT_LOGGING__LEVEL in the server processes uvicorn
    starts too (they read their settings from the environment, which says info)."""
    settings = {"GLINT_LOGGING__LEVEL": "info", "GLINT_SERVER__WORKERS": "2"}
    with serve(tmp_path, settings=settings, options=["--log-level", "warning"]) as server:
        assert httpx.get(f"{server.base_url}/v2/images").status_code == 200
        with sqlite3.connect(tmp_path / "data" / "glint.db") as database:
            database.execute("DROP TABLE image_tag")
        headers = {"X-Openstack-Request-Id": "broken-2"}
        assert httpx.get(f"{server.base_url}/v2/images?tag=x", headers=headers).status_code == 500
        _wait_for(server, r"ERROR app\.api\.middleware \[req-broken-2\]: unexpected error")
    output = server.output()
    assert " INFO " not in output  # no access lines, no uvicorn start-up lines
    assert "Traceback" in output


@pytest.mark.anyio
async def test_an_error_after_the_response_started_is_logged_in_the_requests_name(
    captured: Captured,
) -> None:
    """The edge cannot answer 500 any more; uvicorn logs the error from the request's task,
    which is still bound to the request. The access line says what was sent."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("the store went away")

    edge = EdgeMiddleware(
        app,
        v2_minors=frozenset({0}),
        versions_response=lambda request: Response(status_code=300),
        max_request_id_length=64,
        max_header_line=16384,
    )
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v2/images/img-3/file",
        "raw_path": b"/v2/images/img-3/file",
        "query_string": b"",
        "headers": [(b"x-openstack-request-id", b"mid-stream")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def request() -> logs.LogContext:
        """As uvicorn runs it: in a task of its own, which logs the error when it escapes."""
        with pytest.raises(RuntimeError):
            await edge(scope, receive, send)
        return logs.current()

    after = await asyncio.create_task(request())
    assert (after.request_id, after.image_id) == ("req-mid-stream", "img-3")
    assert logs.current() == logs.LogContext()
    (line,) = captured.named(logs.ACCESS_LOGGER)
    assert (line.status, line.bytes) == (200, 4)
