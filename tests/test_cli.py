"""The `glint` command: in-process with click's runner, and `glint serve` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import os
import pickle
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import logs
from app.api.header_timeout import HeaderTimeoutProtocol
from app.api.openapi import render_document
from app.cli import MULTIPROC_DIR, main
from app.config import ScrubberSettings, Settings
from app.db.engine import Database
from app.jobs.heartbeat import GRACE_SECONDS, why_unhealthy
from app.jobs.queue import enqueue
from app.main import create_app
from app.tables import metadata
from tests.identities import A
from tests.serving import free_port, serve

ROOT = Path(__file__).resolve().parent.parent

# CLI commands run in-process set logging up for this process.
pytestmark = pytest.mark.usefixtures("isolated_logging")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GLINT_") and not name.startswith("GLINT_TEST_"):
            monkeypatch.delenv(name)


def test_version_is_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"glint {importlib.metadata.version('glint')}\n"


def _commands(group: click.Group, prefix: str = "glint") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")


def test_the_readme_lists_every_command_and_global_option() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The `glint` command", 1)[1].split("\n## ", 1)[0]
    for path, command in _commands(main):
        if not isinstance(command, click.Group):
            assert f"`{path}" in section, path
    for option in ("--log-level", "--version"):
        assert option in section


def test_db_upgrade_says_only_what_it_did(tmp_path: Path) -> None:
    env = {"GLINT_DATABASE__URL": f"sqlite:///{tmp_path / 'glint.db'}"}

    first = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert first.exit_code == 0, first.output
    assert "Running upgrade" in first.output  # the migrations it applied, at INFO
    again = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert again.output == "database at revision head\n"  # Alembic's set-up chatter is debug
    debug = CliRunner().invoke(main, ["--log-level", "DEBUG", "db", "upgrade"], env=env)
    assert "DEBUG alembic.runtime.migration: Context impl SQLiteImpl." in debug.output
    json_env = {**env, "GLINT_LOGGING__FORMAT": "json"}
    debug = CliRunner().invoke(main, ["--log-level", "debug", "db", "upgrade"], env=json_env)
    assert json.loads(debug.output.splitlines()[0])["level"] == "DEBUG"


def test_serve_hands_each_server_process_its_logging_and_a_fresh_metrics_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:
        directory = Path(os.environ[MULTIPROC_DIR])
        given.update(kwargs, directory=directory, listing=list(directory.iterdir()))
        given["mode"] = directory.stat().st_mode & 0o777

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.delenv(MULTIPROC_DIR, raising=False)
    env = {"GLINT_DATA_DIR": str(tmp_path / "data"), "GLINT_LOGGING__FORMAT": "json"}

    result = CliRunner().invoke(main, ["--log-level", "warning", "serve"], env=env)

    assert result.exit_code == 0, result.output
    assert given["log_config"] == logs.dict_config("warning", "json")
    assert given["log_level"] == "warning"
    assert given["access_log"] is False  # Glint's access log replaces uvicorn's
    assert given["listing"] == []
    assert given["mode"] == 0o700
    # Gone once the servers stopped, and so is the variable.
    assert not given["directory"].exists()
    assert MULTIPROC_DIR not in os.environ

    given.clear()
    env["GLINT_METRICS__ENABLED"] = "false"
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: given.update(kwargs))
    assert CliRunner().invoke(main, ["serve"], env=env).exit_code == 0
    assert given["log_config"] == logs.dict_config("info", "json")
    assert MULTIPROC_DIR not in os.environ


def test_worker_check_without_a_worker(tmp_path: Path) -> None:
    env = {"GLINT_DATABASE__URL": f"sqlite:///{tmp_path / 'glint.db'}"}
    heartbeat = tmp_path / "heartbeat"
    result = CliRunner().invoke(main, ["worker", "--check", "--heartbeat", str(heartbeat)], env=env)
    assert result.exit_code == 1
    assert f"no heartbeat file {heartbeat}" in result.output

    # A worker that promised a sign of life long ago is not alive.
    heartbeat.touch()
    past = time.time() - GRACE_SECONDS - 5
    os.utime(heartbeat, (past, past))
    result = CliRunner().invoke(main, ["worker", "--check", "--heartbeat", str(heartbeat)], env=env)
    assert result.exit_code == 1
    assert "overdue" in result.output
    assert why_unhealthy(heartbeat, now=past + GRACE_SECONDS - 1) is None


def test_worker_metrics_need_metrics_on(tmp_path: Path) -> None:
    env = {
        "GLINT_DATABASE__URL": f"sqlite:///{tmp_path / 'glint.db'}",
        "GLINT_METRICS__ENABLED": "false",
    }
    result = CliRunner().invoke(main, ["worker", "--metrics-port", "9"], env=env)
    assert result.exit_code == 1
    assert "GLINT_METRICS__ENABLED" in result.output


def test_worker_process_heartbeat_metrics_and_sigterm(tmp_path: Path) -> None:
    """A real `glint worker`: healthy by --check while it runs, its failures on its metrics
    port, and after SIGTERM (`docker stop`) unhealthy at once."""
    url = f"sqlite:///{tmp_path / 'glint.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env |= {"GLINT_DATABASE__URL": url, "GLINT_DATA_DIR": str(tmp_path / "data")}
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    heartbeat, port = tmp_path / "heartbeat", free_port()
    check = [sys.executable, "-m", "app.cli", "worker", "--check", "--heartbeat", str(heartbeat)]
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*check[:4], "--heartbeat", str(heartbeat), "--metrics-port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _until(lambda: subprocess.run(check, env=env, capture_output=True).returncode == 0, log)
        database = Database(url)
        try:
            with database.session() as session:
                enqueue(session, "test.no_such_handler", {"image_id": "img-1"}, max_attempts=1)
        finally:
            database.dispose()
        failures = 'glint_job_failures_total{job="test.no_such_handler"} 1.0'
        _until(lambda: failures in _text(f"http://127.0.0.1:{port}/metrics"), log)
        assert 'glint_jobs{job="test.no_such_handler",status="failed"} 1.0' in _text(
            f"http://127.0.0.1:{port}/metrics"
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    after = subprocess.run(check, env=env, capture_output=True, text=True)
    assert after.returncode == 1
    assert "no heartbeat file" in after.stderr
    output = log.read_text()
    assert "worker stopping (SIGTERM)" in output
    assert "[image=img-1 job=test.no_such_handler#1]" in output


def _text(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return ""


def _until(condition: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'glint.db'}"

    result = CliRunner().invoke(main, ["db", "upgrade"], env={"GLINT_DATABASE__URL": url})

    assert result.exit_code == 0, result.output
    assert "database at revision head" in result.output
    assert _table_names(url) == {*metadata.tables, "alembic_version"}


def test_openapi_prints_the_document() -> None:
    result = CliRunner().invoke(main, ["openapi"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["openapi"].startswith("3.")
    assert "/v2/images" in document["paths"]
    assert result.output == render_document()


def test_openapi_writes_a_file(tmp_path: Path) -> None:
    output = tmp_path / "v2.json"
    result = CliRunner().invoke(main, ["openapi", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_text() == render_document()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GLINT_SERVER__PORT": "99999"}, "server.port"),
        ({"GLINT_DATABASE__URL": "oracle://scott@db.invalid/orcl"}, "database.url"),
        ({"GLINT_CONFIG": "/nonexistent/glint.toml"}, "GLINT_CONFIG"),
        ({"GLINT_DATABSE__URL": "sqlite:///x.db"}, "GLINT_DATABSE__URL"),
        ({"GLINT_SERVER__HEADER_TIMOUT": "1"}, "GLINT_SERVER__HEADER_TIMOUT"),
    ],
)
def test_bad_setting_stops_serve_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], named: str
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn.run was called despite a bad setting")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    env = {"GLINT_DATA_DIR": str(tmp_path / "data"), **env}

    result = CliRunner().invoke(main, ["serve", "--port", "9"], env=env)

    assert result.exit_code != 0
    assert named in result.output
    assert not isinstance(result.exception, AssertionError)
    assert not (tmp_path / "data").exists()


def test_serve_runs_uvicorn_with_the_header_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: given.update(kwargs))
    env = {
        "GLINT_DATA_DIR": str(tmp_path / "data"),
        "GLINT_SERVER__HEADER_TIMEOUT": "7.5",
        # The suite's own variables are no settings, and no reason to refuse to start either.
        "GLINT_TEST_DB": "sqlite",
    }

    result = CliRunner().invoke(main, ["serve", "--port", "9"], env=env)

    assert result.exit_code == 0, result.output
    protocol = given["http"]
    assert isinstance(protocol, functools.partial)
    assert protocol.func is HeaderTimeoutProtocol
    assert issubclass(HeaderTimeoutProtocol, HttpToolsProtocol)  # httptools' parser, not h11's
    assert protocol.keywords == {"header_timeout": 7.5, "max_head_bytes": 4 * 16384}
    assert pickle.loads(pickle.dumps(protocol)).keywords == protocol.keywords


# --- `glint serve` as a real process -------------------------------------------------------


def test_serve_end_to_end(tmp_path: Path) -> None:
    with serve(tmp_path, "127.0.0.1") as server:
        health = httpx.get(f"{server.base_url}/healthcheck")
        assert health.text == "OK"

        created = httpx.post(
            f"{server.base_url}/v2/images",
            json={"name": "e2e", "disk_format": "raw", "container_format": "bare"},
        )
        assert created.status_code == 201, created.text
        image = created.json()
        assert image["name"] == "e2e"
        assert image["status"] == "queued"
        assert created.headers["location"].endswith(f"/v2/images/{image['id']}")

        shown = httpx.get(f"{server.base_url}/v2/images/{image['id']}")
        assert shown.status_code == 200
        assert shown.json()["id"] == image["id"]
        listed = httpx.get(f"{server.base_url}/v2/images")
        assert [item["id"] for item in listed.json()["images"]] == [image["id"]]

        server.stop()

    # The embedded default: SQLite in the data directory, migrated at start.
    database = tmp_path / "data" / "glint.db"
    assert database.is_file()
    assert {*metadata.tables} <= _table_names(f"sqlite:///{database}")
    assert "noauth on" not in server.output()


def test_serve_on_all_interfaces_warns_loudly_about_noauth(tmp_path: Path) -> None:
    with serve(tmp_path, "0.0.0.0") as server:
        server.stop()
    output = server.output()
    assert "WARNING" in output
    assert "!!! noauth on 0.0.0.0" in output
    assert "X-Identity-Status" in output


def test_scrub_on_a_fresh_database(tmp_path: Path) -> None:
    env = {
        "GLINT_DATABASE__URL": f"sqlite:///{tmp_path / 'glint.db'}",
        "GLINT_DATA_DIR": str(tmp_path / "data"),
    }
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0

    result = CliRunner().invoke(main, ["scrub", "--older-than-hours", "1"], env=env)

    assert result.exit_code == 0, result.output
    assert "0 stalled uploads reset to queued, 0 staging files removed" in result.output


def test_scrub_scrubs_images_pending_delete_and_restores_one(
    settings: Settings, db: Database, database_url: str
) -> None:
    """On the suite's database (GLINT_TEST_DB), which the app and the command share."""
    settings = settings.model_copy(update={"scrubber": ScrubberSettings(delayed_delete=True)})
    app = create_app(settings, database=db)
    env = {"GLINT_DATABASE__URL": database_url, "GLINT_DATA_DIR": str(settings.data_dir)}
    with TestClient(app) as client:
        ids = []
        for _ in range(2):
            image = client.post(
                "/v2/images", json={"disk_format": "raw", "container_format": "bare"}, headers=A
            ).json()
            put = client.put(
                image["file"],
                content=b"data",
                headers={**A, "Content-Type": "application/octet-stream"},
            )
            assert put.status_code == 204
            assert client.delete(image["self"], headers=A).status_code == 204
            ids.append(image["id"])
        kept, scrubbed = ids

        restored = CliRunner().invoke(main, ["scrub", "--restore", kept], env=env)
        assert restored.exit_code == 0, restored.output
        assert f"image {kept} restored to active" in restored.output.splitlines()
        assert client.get(f"/v2/images/{kept}/file", headers=A).content == b"data"
        for image_id, why in (
            (kept, "cannot restore the image from active to active"),
            ("no-such-image", "No image found with ID no-such-image"),
        ):
            refused = CliRunner().invoke(main, ["scrub", "--restore", image_id], env=env)
            assert refused.exit_code == 1
            assert f"Error: {why}" in refused.output

        result = CliRunner().invoke(main, ["scrub"], env=env)
        assert result.exit_code == 0, result.output
        assert "1 images pending delete scrubbed (a worker deletes their data)" in result.output
        # The command left the bytes to the job queue.
        assert client.get(f"/v2/images/{scrubbed}", headers=A).status_code == 404
        assert asyncio.run(app.state.worker.run_once()) is True
        assert asyncio.run(app.state.worker.run_once()) is False
        again = CliRunner().invoke(main, ["scrub"], env=env)
        assert "0 images pending delete scrubbed" in again.output
        assert client.get(f"/v2/images/{kept}", headers=A).json()["status"] == "active"


def test_a_500_closes_the_connection_cleanly(tmp_path: Path) -> None:
    """A keep-alive client is told the connection ends, instead of having its next request on
    it reset; and the 500 says which request it was."""
    with serve(tmp_path) as server:
        # A fault no code path expects: the database loses a table under the running server.
        with sqlite3.connect(tmp_path / "data" / "glint.db") as database:
            database.execute("DROP TABLE image_tag")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /v2/images?tag=x HTTP/1.1\r\nHost: glint\r\n"
                b"X-Openstack-Request-Id: keep-alive-500\r\nAccept: application/json\r\n\r\n"
            )
            answer = _read_until_closed(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        assert lines[0] == "http/1.1 500 internal server error", answer
        assert "connection: close" in lines
        assert "x-openstack-request-id: req-keep-alive-500" in lines
        assert f"content-length: {len(body)}" in lines  # complete, then closed
        assert json.loads(body)["title"] == "Internal Server Error"

        with httpx.Client(base_url=server.base_url) as client:
            assert client.get("/v2/images?tag=x").status_code == 500
            assert client.get("/healthcheck").status_code == 200  # on a new connection
        assert "unexpected error on GET /v2/images (req-keep-alive-500)" in server.output()


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _read_response(sock: socket.socket) -> bytes:
    """One whole response, on a connection that stays open after it."""
    received = b""
    while b"\r\n\r\n" not in received or len(received) < _response_length(received):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    return received


def _response_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    return len(head) + 4 + (int(length.group(1)) if length else 0)


def _seconds_until_closed(sock: socket.socket) -> float:
    """How long the server takes to close `sock` (it must not answer meanwhile)."""
    started = time.monotonic()
    assert sock.recv(1) == b""
    return time.monotonic() - started


def test_serve_refuses_a_request_head_beyond_its_cap(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        address = ("127.0.0.1", server.port)
        with socket.create_connection(address, timeout=10) as huge:
            # Never finished: only the cap, not the 30 s header timeout, can end this.
            huge.sendall(b"GET /v2/images HTTP/1.1\r\nHost: glint\r\nX-Huge: ")
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                for _ in range(64):
                    huge.sendall(b"a" * 4096)
            answer = huge.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        # A head of a normal size, with a body larger than the cap, is fine.
        created = httpx.post(
            f"{server.base_url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}
        )
        upload = httpx.put(
            f"{server.base_url}/v2/images/{created.json()['id']}/file",
            content=os.urandom(1024 * 1024),
            headers={"Content-Type": "application/octet-stream", "X-Token": "t" * 8192},
        )
        assert upload.status_code == 204


def test_serve_cuts_off_a_client_that_never_finishes_its_headers(tmp_path: Path) -> None:
    # Two workers: the setting must reach the server processes uvicorn spawns, too.
    settings = {"GLINT_SERVER__HEADER_TIMEOUT": "1", "GLINT_SERVER__WORKERS": "2"}
    with serve(tmp_path, settings=settings) as server:
        address = ("127.0.0.1", server.port)
        with socket.create_connection(address, timeout=10) as silent:
            assert 0.5 < _seconds_until_closed(silent) < 5
        with socket.create_connection(address, timeout=10) as slow:
            slow.sendall(b"GET /v2/images HTTP/1.1\r\nHost: glint\r\nX-Half: a")
            assert 0.5 < _seconds_until_closed(slow) < 5
        with socket.create_connection(address, timeout=10) as kept_alive:
            kept_alive.sendall(b"GET /healthcheck HTTP/1.1\r\nHost: glint\r\n\r\n")
            assert _read_response(kept_alive).startswith(b"HTTP/1.1 200 OK\r\n")
            kept_alive.sendall(b"GET /healthcheck HTTP/1.1\r\nHo")
            assert 0.5 < _seconds_until_closed(kept_alive) < 5

        # Headers that trickle in within the deadline are served, and a body may take longer.
        with socket.create_connection(address, timeout=10) as trickling:
            for piece in (b"GET /healthcheck HTTP/1.1\r\n", b"Host: glint\r\n", b"\r\n"):
                trickling.sendall(piece)
                time.sleep(0.3)
            assert _read_response(trickling).startswith(b"HTTP/1.1 200 OK\r\n")
        created = httpx.post(
            f"{server.base_url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}
        )
        with socket.create_connection(address, timeout=10) as uploading:
            uploading.sendall(
                f"PUT /v2/images/{created.json()['id']}/file HTTP/1.1\r\nHost: glint\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nda".encode()
            )
            time.sleep(1.5)
            uploading.sendall(b"ta")
            assert _read_response(uploading).startswith(b"HTTP/1.1 204 No Content\r\n")
