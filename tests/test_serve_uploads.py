"""Real `glint serve` processes: an upload never leaves its image stuck.

A server killed mid-upload, a client that goes silent, an image deleted while its bytes still
flow: each ends with the image uploadable again and no partial bytes left, without `glint scrub`.
The servers share the test database (SQLite, PostgreSQL or MariaDB) as a deployment would.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.db.engine import Database
from tests.serving import Server, serve

LEASE_SECONDS = 2
FAST = {
    "GLINT_SERVER__WORKERS": "1",  # one process: SIGKILL leaves no orphaned worker behind
    "GLINT_UPLOADS__LEASE_SECONDS": str(LEASE_SECONDS),
    "GLINT_JOBS__POLL_INTERVAL": "0.2",
}


@pytest.fixture
def settings_for(database_url: str, db: Database) -> Callable[..., dict[str, str]]:
    """Server settings on the test database (`db`: emptied after the test)."""
    del db

    def settings(**extra: str) -> dict[str, str]:
        return {**FAST, "GLINT_DATABASE__URL": database_url, **extra}

    return settings


def create(server: Server) -> str:
    response = httpx.post(
        f"{server.base_url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}
    )
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def status_of(server: Server, image_id: str) -> str:
    status: str = httpx.get(f"{server.base_url}/v2/images/{image_id}").json()["status"]
    return status


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "data" / "images"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@contextmanager
def partial_upload(server: Server, image_id: str, sent: int) -> Iterator[socket.socket]:
    """A PUT that announces 50 MB, sends `sent` bytes, then stays silent on an open socket."""
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        head = (
            f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: glint\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
        )
        connection.sendall(head.encode() + os.urandom(sent))
        assert wait_for(lambda: status_of(server, image_id) == "saving", 10)
        yield connection


def response_status(connection: socket.socket, seconds: float) -> str:
    connection.settimeout(seconds)
    return connection.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_an_upload_whose_server_was_killed_is_recovered_and_retried(
    tmp_path: Path, settings_for: Callable[..., dict[str, str]]
) -> None:
    with serve(tmp_path, settings=settings_for()) as first:
        image_id = create(first)
        with partial_upload(first, image_id, 3_000_000):
            assert wait_for(lambda: stored_files(tmp_path) != [], 10)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(timeout=10)
    assert len(stored_files(tmp_path)) == 1  # the partial bytes the dead server left

    with serve(tmp_path, settings=settings_for(), log_name="second.log") as second:
        # Still `saving` unless this server took longer than a lease to start: only its
        # worker can recover the image either way.
        assert status_of(second, image_id) in ("saving", "queued")
        # Recovered within about two lease periods (plus the worker's poll), no scrub run.
        assert wait_for(lambda: status_of(second, image_id) == "queued", 4 * LEASE_SECONDS + 2)
        assert wait_for(lambda: stored_files(tmp_path) == [], 5)
        data = os.urandom(1_000_000)
        retry = httpx.put(
            f"{second.base_url}/v2/images/{image_id}/file",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert retry.status_code == 204, retry.text
        assert status_of(second, image_id) == "active"
        assert httpx.get(f"{second.base_url}/v2/images/{image_id}/file").content == data


def test_a_silent_client_is_cut_off_and_its_bytes_removed(
    tmp_path: Path, settings_for: Callable[..., dict[str, str]]
) -> None:
    with serve(tmp_path, settings=settings_for(GLINT_UPLOADS__IDLE_TIMEOUT="1")) as server:
        image_id = create(server)
        with partial_upload(server, image_id, 65536) as connection:
            assert response_status(connection, 10) == "HTTP/1.1 408 Request Timeout"
        assert status_of(server, image_id) == "queued"
        assert stored_files(tmp_path) == []


def test_deleting_an_image_mid_upload_stops_the_upload_and_removes_its_bytes(
    tmp_path: Path, settings_for: Callable[..., dict[str, str]]
) -> None:
    with serve(tmp_path, settings=settings_for()) as server:
        image_id = create(server)
        with partial_upload(server, image_id, 3_000_000) as connection:
            assert wait_for(lambda: stored_files(tmp_path) != [], 10)
            assert httpx.delete(f"{server.base_url}/v2/images/{image_id}").status_code == 204
            # The upload notices at its next lease renewal.
            assert response_status(connection, 2 * LEASE_SECONDS) == "HTTP/1.1 410 Gone"
        assert wait_for(lambda: stored_files(tmp_path) == [], 5)
        shown = httpx.get(f"{server.base_url}/v2/images/{image_id}")
        assert shown.status_code == 404
