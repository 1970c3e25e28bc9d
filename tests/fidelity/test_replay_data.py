"""The recorded Glance data sessions (upload, download, deactivate), replayed in order.

The recording uploaded random bytes we do not have, so the replay uploads its own 100,000
random bytes wherever the recording sent a file; checksums are compared with this data's, and
downloads by status, length and range rather than by content.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import ImportSettings, Settings
from app.db.engine import Database
from app.main import create_app
from tests.fidelity.samples import Exchange, exchanges
from tests.fidelity.test_replay import _comparable

DATA = os.urandom(100_000)
# The recording's two files (small.bin is what it uploaded everywhere else).
MEDIUM = os.urandom(3_000_000)
OWN = {
    "X-Identity-Status": "Confirmed",
    "X-Project-Id": "project-a",
    "X-User-Id": "user-a",
    "X-Roles": "member,reader",
}


def create(client: TestClient, image_id: str, name: str, *, data: bool, **body: Any) -> None:
    body = {"id": image_id, "name": name, "disk_format": "raw", "container_format": "bare", **body}
    assert client.post("/v2/images", json=body, headers=OWN).status_code == 201
    if data:
        response = client.put(
            f"/v2/images/{image_id}/file",
            content=DATA,
            headers={**OWN, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 204


def ours(value: Any) -> Any:
    """Glance's recorded hashes of its data, swapped for the hashes of ours (of the file of
    that size)."""
    if isinstance(value, dict):
        value = dict(value)
        data = MEDIUM if value.get("size") == len(MEDIUM) else DATA
        if value.get("checksum"):
            value["checksum"] = hashlib.md5(data).hexdigest()
        if value.get("os_hash_value"):
            value["os_hash_value"] = hashlib.sha512(data).hexdigest()
    return value


def _payload(body: bytes) -> bytes:
    """The bytes of ours that stand for a file the recording's curl sent."""
    return MEDIUM if body.endswith(b"/medium.bin") else DATA


def replay(
    client: TestClient,
    file_name: str,
    *,
    skip: tuple[str, ...] = (),
    after: dict[str, Callable[[], None]] | None = None,
    moved: tuple[str, str] | None = None,
) -> int:
    """`after`: what the recording did off-camera after the exchange with that title.
    `moved`: (recorded URL, ours) of a web server the recording downloaded from."""
    compared = 0
    for title, sample in exchanges(file_name).items():
        if title in skip:
            continue
        if moved is not None:
            sample = _moved(sample, *moved)
        body = sample.body
        if body is not None and body.startswith(b"@"):
            body = _payload(body)
        headers = dict(sample.headers)
        if sample.method == "PUT" and "Transfer-Encoding" in headers:
            headers.pop("Transfer-Encoding")
            body = iter([DATA[:40_000], DATA[40_000:]])  # sent chunked
        response = client.request(sample.method, sample.path, headers=headers, content=body)
        assert response.status_code == sample.status, (title, response.text)
        _assert_same(sample, response)
        compared += 1
        if after and title in after:
            after[title]()
    return compared


def _moved(sample: Exchange, recorded: str, url: str) -> Exchange:
    body = None if sample.body is None else sample.body.replace(recorded.encode(), url.encode())
    return dataclasses.replace(
        sample, body=body, response_body=sample.response_body.replace(recorded, url)
    )


def _assert_same(sample: Exchange, response: Any) -> None:
    expected = sample.response_headers
    if expected.get("content-type") == "application/octet-stream":
        for name in ("content-length", "content-range"):
            assert response.headers.get(name) == expected.get(name), (sample.title, name)
        assert response.headers["content-md5"] == hashlib.md5(DATA).hexdigest()
        return
    if sample.response_body.startswith("{"):
        theirs = ours(_comparable(json.loads(sample.response_body), keep_times=False))
        assert _comparable(response.json(), keep_times=False) == theirs, sample.title
    else:
        assert response.text == sample.response_body, sample.title


def test_upload_session(client: TestClient) -> None:
    create(client, "98b0b37d-67ab-4c56-85a6-9e53124bfd1f", "upload-me", data=False)
    create(client, "dec6fc49-bb4c-481a-a015-ac99f768ff27", "upload-wrong-ct", data=False)
    create(client, "8e2abc26-b70c-40ef-be9d-9ade837a7f44", "upload-bad-store", data=False)
    create(
        client,
        "29b0b05c-4e97-4ee7-a518-e84594881ef6",
        "qcow2-claimed",
        data=False,
        disk_format="qcow2",
    )
    create(
        client,
        "740af89d-1ce3-435e-b3c2-5f1d996c7df2",
        "no-formats",
        data=False,
        disk_format=None,
        container_format=None,
    )
    create(client, "09c16e57-9756-4c9b-8338-2e0953b9f874", "upload-to-cheap", data=False)
    skipped = (
        # The recording's curl sent the body from a file that was not kept; covered in
        # tests/api/test_image_data.py (zero-byte image).
        "zero-byte upload",
        "image after zero-byte upload",
        # Glance leaves the rejected data's checksum and multihash on the queued image (only
        # size and virtual_size are reset); Glint resets them all. Checked below.
        "status after rejected upload",
    )
    assert replay(client, "06-upload.txt", skip=skipped) == 16
    rejected = client.get("/v2/images/29b0b05c-4e97-4ee7-a518-e84594881ef6", headers=OWN).json()
    assert rejected["status"] == "queued"
    assert (rejected["checksum"], rejected["os_hash_value"], rejected["size"]) == (None,) * 3


def test_download_session(client: TestClient) -> None:
    create(client, "98b0b37d-67ab-4c56-85a6-9e53124bfd1f", "upload-me", data=True)
    create(client, "8e2abc26-b70c-40ef-be9d-9ade837a7f44", "upload-bad-store", data=False)
    assert replay(client, "07-download.txt") == 14


def test_deactivate_session(client: TestClient) -> None:
    image_id = "9f399592-a0a4-46c7-ada1-5331a0c0f880"
    create(client, image_id, "deactivate-me", data=False)

    def upload() -> None:
        response = client.put(
            f"/v2/images/{image_id}/file",
            content=DATA,
            headers={**OWN, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 204

    assert (
        replay(client, "10-deactivate.txt", after={"deactivate a queued image -> 403": upload})
        == 16
    )


def test_store_discovery_session(client: TestClient, settings: Settings) -> None:
    """As recorded, but with the data directories of this run's stores."""
    recorded = {
        f"/srv/glance/images/{name}/": str((settings.data_dir / name).resolve())
        for name in ("fast", "cheap")
    }
    for title in (
        "GET /v2/info/stores",
        "GET /v2/info/stores/detail as member -> 403",
        "GET /v2/info/stores/detail as admin",
    ):
        sample = exchanges("14-info.txt")[title]
        response = client.request(sample.method, sample.path, headers=sample.headers)
        assert response.status_code == sample.status, title
        expected = sample.response_body
        for theirs, ours in recorded.items():
            expected = expected.replace(theirs, ours)
        assert response.text == expected, title


def stage(client: TestClient, image_id: str, data: bytes = DATA) -> None:
    response = client.put(
        f"/v2/images/{image_id}/stage",
        content=data,
        headers={**OWN, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 204


def run_jobs(app: FastAPI) -> None:
    while asyncio.run(app.state.worker.run_once()):
        pass


def test_glance_direct_session(client: TestClient, app: FastAPI) -> None:
    create(client, "966b07fe-a8e0-4d6e-b2a4-68c9a2105b17", "gd-import", data=False)
    create(client, "3f5f918d-5d75-4d4f-bac4-a9ce7d8e881a", "gd-default-store", data=False)
    qcow2_lie = "7ebb9059-a53a-4dca-a66d-1ca602604a3c"
    create(client, qcow2_lie, "gd-qcow2-lie", data=False, disk_format="qcow2")
    no_formats = "3cfc8666-e0a2-4231-bc49-2170647d0ff1"
    create(
        client,
        no_formats,
        "gd-no-formats",
        data=False,
        disk_format=None,
        container_format=None,
    )
    for staged in ("3f5f918d-5d75-4d4f-bac4-a9ce7d8e881a", qcow2_lie, no_formats):
        stage(client, staged)
    skipped = (
        # Glance leaves a failed glance-direct import `importing` for ever, with a task that
        # says "Internal Error"; Glint puts the image back to `queued` and says why (below).
        "image after failed import",
        "tasks of that image",
    )
    jobs = functools.partial(run_jobs, app)
    after = {
        "import glance-direct into both stores -> 202": jobs,
        "import glance-direct without a stores list -> 202, default backend": jobs,
        "import random bytes claiming qcow2 -> 202, then the task fails": jobs,
    }
    assert replay(client, "15-import-glance-direct.txt", skip=skipped, after=after) == 17
    failed = client.get(f"/v2/images/{qcow2_lie}", headers=OWN).json()
    assert (failed["status"], failed["os_glance_failed_import"]) == ("queued", "fast")
    (task,) = client.get(f"/v2/images/{qcow2_lie}/tasks", headers=OWN).json()["tasks"]
    assert task["message"] == "Image disk_format qcow2 does not match stream data raw."


def test_copy_image_session(client: TestClient, app: FastAPI) -> None:
    create(client, "98b0b37d-67ab-4c56-85a6-9e53124bfd1f", "upload-me", data=True)
    create(client, "8e2abc26-b70c-40ef-be9d-9ade837a7f44", "upload-bad-store", data=False)
    after = {"copy-image as admin -> 202": functools.partial(run_jobs, app)}
    assert replay(client, "17-import-copy-image.txt", after=after) == 8


class _Files(http.server.BaseHTTPRequestHandler):
    """The recording's web server: medium.bin, and 404 for anything else."""

    def do_GET(self) -> None:
        if self.path != "/medium.bin":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(MEDIUM)))
        self.end_headers()
        self.wfile.write(MEDIUM)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_web_download_session(settings: Settings, db: Database, web_server: int) -> None:
    # As the recording's Glance was configured: its web server's host and port allowed.
    filtering = ImportSettings(allowed_hosts=["127.0.0.1"], allowed_ports=[web_server])
    app = create_app(settings.model_copy(update={"import_": filtering}), database=db)
    with TestClient(app) as client:
        create(client, "b9a14804-ca2d-43c1-b3fa-6ecc61f89d95", "web-import", data=False)
        create(client, "decc6736-d75a-4913-b241-be54f4d3234f", "web-import-404", data=False)
        create(client, "322e2b2a-912c-4c31-9bf4-0a6b7d66b594", "web-filtered", data=False)
        jobs = functools.partial(run_jobs, app)
        after = {
            "web-download import -> 202": jobs,
            "web-download of a URL that 404s -> 202 then failure": jobs,
        }
        moved = ("http://127.0.0.1:18080", f"http://127.0.0.1:{web_server}")
        # The task's message differs on purpose: Glance says "Internal Error".
        skipped = ("tasks of that image",)
        assert (
            replay(client, "16-import-web-download.txt", skip=skipped, after=after, moved=moved)
            == 8
        )
        (task,) = client.get(
            "/v2/images/decc6736-d75a-4913-b241-be54f4d3234f/tasks", headers=OWN
        ).json()["tasks"]
        assert task["message"] == f"HTTP 404 from http://127.0.0.1:{web_server}/missing.bin."
