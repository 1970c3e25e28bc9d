"""Interoperable import through the API: stage + glance-direct, copy-image and web-download,
on one file store and on two, with the job run deterministically (`worker.run_once`), every
failure ending the task and the image cleanly, and no byte left behind."""

from __future__ import annotations

import asyncio
import hashlib
import html
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.config import FileStoreSettings, ImportSettings, Settings, StorageSettings
from app.db.engine import Database
from app.images.imports import IMPORT_JOB
from app.images.models import ImageStaging
from app.jobs.models import Job
from app.main import create_app
from app.tasks.models import Task
from tests.identities import ADMIN, A, B

OCTET = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(300_000)
MD5 = hashlib.md5(DATA).hexdigest()
QCOW2_MAGIC = b"QFI\xfb"


def run_jobs(app: FastAPI) -> int:
    ran = 0
    while asyncio.run(app.state.worker.run_once()):
        ran += 1
    return ran


def said(response: Any) -> str:
    """An error response's text, as a client shows it (unescaped from Glance's HTML page)."""
    return html.unescape(response.text)


def files_in(root: Path) -> list[Path]:
    """The objects a file store holds, committed or staged."""
    return sorted(path for path in root.rglob("*") if path.is_file())


def create(client: TestClient, headers: dict[str, str] = A, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/v2/images",
        json={"disk_format": "raw", "container_format": "bare", **fields},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def stage(client: TestClient, image: dict[str, Any], data: bytes = DATA) -> None:
    response = client.put(f"/v2/images/{image['id']}/stage", content=data, headers={**A, **OCTET})
    assert response.status_code == 204, response.text


def start_import(
    client: TestClient, image: dict[str, Any], body: dict[str, Any], headers: dict[str, str] = A
) -> Any:
    return client.post(f"/v2/images/{image['id']}/import", json=body, headers=headers)


def show(client: TestClient, image: dict[str, Any], headers: dict[str, str] = A) -> Any:
    response = client.get(f"/v2/images/{image['id']}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def tasks_of(db: Database, image_id: str) -> list[Task]:
    with db.session(write=False) as session:
        query = select(Task).where(Task.image_id == image_id).order_by(col(Task.created_at))
        return list(session.exec(query))


GLANCE_DIRECT = {"method": {"name": "glance-direct"}}


class TestOneStore:
    @pytest.fixture
    def store_root(self, settings: Settings) -> Path:
        return settings.data_dir / "images"

    def test_stage_then_import(
        self, client: TestClient, app: FastAPI, db: Database, store_root: Path
    ) -> None:
        image = create(client)
        assert (
            "glance-direct"
            in client.post("/v2/images", json={}, headers=A).headers[
                "OpenStack-image-import-methods"
            ]
        )
        stage(client, image)
        staged = show(client, image)
        assert (staged["status"], staged["size"], staged["checksum"]) == (
            "uploading",
            300_000,
            None,
        )
        assert client.get(image["file"], headers=A).status_code == 204

        response = start_import(client, image, GLANCE_DIRECT)
        assert response.status_code == 202
        assert response.content == b""
        importing = show(client, image)
        assert importing["status"] == "importing"
        assert importing["os_glance_importing_to_stores"] == ""
        task_id = importing["os_glance_import_task"]

        assert run_jobs(app) == 1
        done = show(client, image)
        assert (done["status"], done["checksum"], done["size"]) == ("active", MD5, 300_000)
        assert done["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
        assert done["virtual_size"] == 300_000
        assert "os_glance_import_task" not in done
        assert (done["os_glance_importing_to_stores"], done["os_glance_failed_import"]) == ("", "")
        assert client.get(image["file"], headers=A).content == DATA
        (task,) = tasks_of(db, image["id"])
        assert (task.id, task.status, task.result) == (
            task_id,
            "success",
            {"image_id": image["id"]},
        )
        assert task.type == "api_image_import"
        assert task.expires_at is not None
        # The staged object became the image's: one object, nothing staged any more.
        assert len(files_in(store_root)) == 1
        with db.session(write=False) as session:
            assert session.get(ImageStaging, image["id"]) is None

    def test_stage_and_import_refusals(self, client: TestClient) -> None:
        image = create(client)
        refused = start_import(client, image, GLANCE_DIRECT)
        assert refused.status_code == 409
        assert "Image needs to be staged before 'glance-direct' method can be used" in said(refused)
        stage(client, image)
        again = client.put(f"/v2/images/{image['id']}/stage", content=b"x", headers={**A, **OCTET})
        assert again.status_code == 409
        assert "Image status transition from uploading to uploading is not allowed" in said(again)
        wrong_type = client.put(f"/v2/images/{image['id']}/stage", content=b"x", headers=A)
        assert wrong_type.status_code == 415
        unknown = start_import(client, image, {"method": {"name": "teleport"}})
        assert unknown.status_code == 400
        assert "Unknown import method name 'teleport'." in said(unknown)
        no_name = start_import(client, image, {"method": {}})
        assert no_name.status_code == 400
        assert "requires a 'name' field" in said(no_name)
        assert start_import(client, image, {"stores": []}).status_code == 400
        flag = start_import(client, image, {**GLANCE_DIRECT, "all_stores": "yes"})
        assert flag.status_code == 400
        assert "'all_stores' must be boolean value only" in said(flag)
        single = start_import(client, image, {**GLANCE_DIRECT, "all_stores_must_succeed": False})
        assert single.status_code == 400
        assert "All_stores_must_succeed can only be set with enabled_backends" in said(single)
        other = start_import(client, image, GLANCE_DIRECT, headers=B)
        assert other.status_code == 404

    def test_import_needs_formats(self, client: TestClient) -> None:
        image = create(client, disk_format=None, container_format=None)
        stage(client, image)
        response = start_import(client, image, GLANCE_DIRECT)
        assert response.status_code == 409
        assert "'container_format' needs to be set before import" in said(response)

    def test_an_import_holds_the_image(self, client: TestClient, app: FastAPI) -> None:
        image = create(client)
        stage(client, image)
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        # The image is importing (409 for the status) and locked by a pending task.
        response = start_import(client, image, {"method": {"name": "copy-image"}}, ADMIN)
        assert response.status_code == 409
        run_jobs(app)
        active = start_import(client, image, GLANCE_DIRECT)
        assert active.status_code == 409
        assert "Image with status active cannot be target for import" in said(active)

    def test_mismatched_disk_image_fails_the_import_cleanly(
        self, client: TestClient, app: FastAPI, db: Database, store_root: Path
    ) -> None:
        image = create(client, disk_format="qcow2")
        stage(client, image)  # accepted, as in Glance: the import reports the problem
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        run_jobs(app)
        failed = show(client, image)
        assert failed["status"] == "queued"
        assert (failed["size"], failed["checksum"]) == (None, None)
        assert "os_glance_import_task" not in failed
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert task.message == "Image disk_format qcow2 does not match stream data raw."
        assert files_in(store_root) == []
        # Queued again: it can be staged and imported anew.
        stage(client, image, QCOW2_MAGIC + DATA[4:])
        assert show(client, image)["status"] == "uploading"

    def test_unsafe_disk_image_is_refused_by_the_import(
        self, client: TestClient, app: FastAPI, db: Database, tmp_path: Path
    ) -> None:
        image = create(client, disk_format="qcow2")
        stage(client, image, _qcow2_with_backing_file(tmp_path, "/etc/passwd"))
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        run_jobs(app)
        assert show(client, image)["status"] == "queued"
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert "backing file" in task.message.lower()

    def test_deleting_a_staged_image_removes_its_staged_bytes(
        self, client: TestClient, app: FastAPI, store_root: Path
    ) -> None:
        image = create(client)
        stage(client, image)
        assert len(files_in(store_root)) == 1
        assert client.delete(f"/v2/images/{image['id']}", headers=A).status_code == 204
        run_jobs(app)
        assert files_in(store_root) == []

    def test_deleting_an_importing_image_ends_its_task(
        self, client: TestClient, app: FastAPI, db: Database, store_root: Path
    ) -> None:
        image = create(client)
        stage(client, image)
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        assert client.delete(f"/v2/images/{image['id']}", headers=A).status_code == 204
        run_jobs(app)
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert files_in(store_root) == []

    def test_a_dead_workers_attempt_is_cleaned_up_and_retried(
        self, client: TestClient, app: FastAPI, db: Database, store_root: Path
    ) -> None:
        """The job of a worker that died is claimed again after its lease: that attempt
        first removes what the dead one wrote."""
        image = create(client)
        stage(client, image)
        assert start_import(client, image, {"method": {"name": "glance-direct"}}).status_code == 202
        task_id = show(client, image)["os_glance_import_task"]
        leftover = store_root / f"{image['id']}.{task_id[:8]}.1"
        leftover.write_bytes(b"half an image")
        _pretend_attempts(db, 1)
        run_jobs(app)
        assert show(client, image)["status"] == "active"
        assert not leftover.exists()

    def test_an_import_whose_worker_keeps_dying_gives_up(
        self, client: TestClient, app: FastAPI, db: Database, store_root: Path
    ) -> None:
        image = create(client)
        stage(client, image)
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        _pretend_attempts(db, 3)
        run_jobs(app)
        assert show(client, image)["status"] == "queued"
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert task.message.startswith("The import was interrupted 3 times")
        assert files_in(store_root) == []

    def test_scrub_spares_what_a_running_import_writes(
        self, client: TestClient, app: FastAPI, store_root: Path
    ) -> None:
        """A slow source leaves an import's staged bytes untouched for long: the scrub's purge
        of staged files must not take them while the import's job holds its lease."""
        image = create(client)
        stage(client, image)
        assert start_import(client, image, GLANCE_DIRECT).status_code == 202
        task_id = show(client, image)["os_glance_import_task"]
        claimed = app.state.worker.queue.claim("a worker busy with the import")
        assert claimed is not None
        writing = store_root / "_staging" / f"{image['id']}.{task_id[:8]}.{claimed.attempts}"
        writing.parent.mkdir(parents=True, exist_ok=True)
        writing.write_bytes(b"the first batches")
        os.utime(writing, (0, 0))
        assert asyncio.run(app.state.data_service.scrub(timedelta(0))) == (0, 0)
        assert writing.exists()


def _pretend_attempts(db: Database, attempts: int) -> None:
    """As if `attempts` workers had claimed the import job and died."""
    with db.session() as session:
        job = session.exec(select(Job).where(Job.name == IMPORT_JOB)).one()
        job.attempts = attempts
        session.add(job)


def _qcow2_with_backing_file(tmp_path: Path, backing: str) -> bytes:
    """A qcow2 made by qemu-img that names a host file as its backing file."""
    path = tmp_path / "backed.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", path, "1M"],
        check=True,
    )
    return path.read_bytes()


def two_stores(tmp_path: Path) -> StorageSettings:
    return StorageSettings(
        default="fast",
        stores={
            "fast": FileStoreSettings(path=tmp_path / "fast"),
            "cheap": FileStoreSettings(path=tmp_path / "cheap"),
        },
    )


class TestTwoStores:
    @pytest.fixture
    def app(self, settings: Settings, db: Database, tmp_path: Path) -> FastAPI:
        return create_app(
            settings.model_copy(update={"storage": two_stores(tmp_path)}), database=db
        )

    def test_glance_direct_into_both_stores(
        self, client: TestClient, app: FastAPI, tmp_path: Path
    ) -> None:
        image = create(client)
        stage(client, image)
        body = {**GLANCE_DIRECT, "stores": ["fast", "cheap"]}
        assert start_import(client, image, body).status_code == 202
        assert show(client, image)["os_glance_importing_to_stores"] == "cheap,fast"
        run_jobs(app)
        done = show(client, image)
        assert (done["status"], done["stores"]) == ("active", "fast,cheap")
        assert (done["os_glance_importing_to_stores"], done["os_glance_failed_import"]) == ("", "")
        assert len(files_in(tmp_path / "fast")) == 1
        assert len(files_in(tmp_path / "cheap")) == 1

    def test_store_choice_refusals(self, client: TestClient) -> None:
        image = create(client)
        stage(client, image)
        unknown = start_import(client, image, {**GLANCE_DIRECT, "stores": ["nosuch"]})
        assert unknown.status_code == 409
        assert "Store for identifier nosuch not found" in said(unknown)
        both = start_import(
            client, image, {**GLANCE_DIRECT, "all_stores": True, "stores": ["fast"]}
        )
        assert both.status_code == 400
        header_and_body = client.post(
            f"/v2/images/{image['id']}/import",
            json={**GLANCE_DIRECT, "stores": ["fast"]},
            headers={**A, "X-Image-Meta-Store": "cheap"},
        )
        assert header_and_body.status_code == 400

    def test_copy_image(self, client: TestClient, app: FastAPI, db: Database) -> None:
        image = create(client)
        response = client.put(image["file"], content=DATA, headers={**A, **OCTET})
        assert response.status_code == 204
        copy = {"method": {"name": "copy-image"}, "stores": ["cheap"]}
        forbidden = start_import(client, image, copy)
        assert forbidden.status_code == 403
        assert "You are not authorized to complete copy_image action." in said(forbidden)
        assert start_import(client, image, copy, ADMIN).status_code == 202
        assert show(client, image)["status"] == "active"
        run_jobs(app)
        done = show(client, image)
        assert (done["status"], done["stores"]) == ("active", "fast,cheap")
        again = start_import(client, image, copy, ADMIN)
        assert again.status_code == 400
        assert "Image is already present at store 'cheap'" in said(again)
        everywhere = {"method": {"name": "copy-image"}, "all_stores": True}
        assert start_import(client, image, everywhere, ADMIN).status_code == 202
        assert len(tasks_of(db, image["id"])) == 1  # nothing left to copy: no task
        queued = create(client)
        refused = start_import(client, queued, copy, ADMIN)
        assert refused.status_code == 409
        assert "Only images with status active can be targeted for copying" in said(refused)


RELEASE_SLOW_SERVER = threading.Event()


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.partition("=")[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow.raw":  # a little, then nothing until the test ends
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA[:10_000])
            self.wfile.flush()
            RELEASE_SLOW_SERVER.wait(30)
            return
        if self.path != "/image.raw":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(DATA)))
        self.end_headers()
        self.wfile.write(DATA)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    RELEASE_SLOW_SERVER.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        RELEASE_SLOW_SERVER.set()
        server.shutdown()
        server.server_close()


def reaching(settings: Settings, web_server: str, **changes: Any) -> Settings:
    """`settings`, with web-download allowed to fetch from the test's web server."""
    port = int(web_server.rsplit(":", 1)[1])
    allowed = ImportSettings(allowed_hosts=["127.0.0.1"], allowed_ports=[port])
    return settings.model_copy(update={"import_": allowed, **changes})


class TestWebDownload:
    @pytest.fixture
    def app(self, settings: Settings, db: Database, web_server: str) -> FastAPI:
        return create_app(reaching(settings, web_server), database=db)

    def test_download(self, client: TestClient, app: FastAPI, web_server: str) -> None:
        image = create(client)
        body = {"method": {"name": "web-download", "uri": f"{web_server}/image.raw"}}
        assert start_import(client, image, body).status_code == 202
        assert show(client, image)["status"] == "importing"
        run_jobs(app)
        done = show(client, image)
        assert (done["status"], done["checksum"]) == ("active", MD5)
        assert client.get(image["file"], headers=A).content == DATA

    def test_a_missing_file_fails_with_the_servers_answer(
        self, client: TestClient, app: FastAPI, db: Database, web_server: str
    ) -> None:
        image = create(client)
        uri = f"{web_server}/missing.raw"
        assert (
            start_import(
                client, image, {"method": {"name": "web-download", "uri": uri}}
            ).status_code
            == 202
        )
        run_jobs(app)
        assert show(client, image)["status"] == "queued"
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert f"HTTP 404 from {uri}" in task.message

    def test_refused_uris_are_a_400(self, client: TestClient, web_server: str) -> None:
        image = create(client)
        for uri in ("ftp://127.0.0.1/x", "http://127.0.0.2/x", "http://127.0.0.1:1/x", None):
            method: dict[str, Any] = {"name": "web-download"}
            if uri is not None:
                method["uri"] = uri
            response = start_import(client, image, {"method": method})
            assert response.status_code == 400, uri
            assert f"URI for web-download does not pass filtering: {uri}" in said(response)
        assert show(client, image)["status"] == "queued"

    def test_legacy_import_task(
        self, client: TestClient, app: FastAPI, db: Database, web_server: str
    ) -> None:
        body = {
            "type": "import",
            "input": {
                "import_from": f"{web_server}/image.raw",
                "import_from_format": "raw",
                "image_properties": {
                    "name": "legacy",
                    "disk_format": "raw",
                    "container_format": "bare",
                },
            },
        }
        response = client.post("/v2/tasks", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        task = response.json()
        assert (task["type"], task["status"], task["input"]) == ("import", "pending", body["input"])
        assert response.headers["Location"].endswith(f"/v2/tasks/{task['id']}")
        run_jobs(app)
        done = client.get(f"/v2/tasks/{task['id']}", headers=ADMIN).json()
        assert done["status"] == "success", done
        image = client.get(f"/v2/images/{done['result']['image_id']}", headers=ADMIN).json()
        assert (image["name"], image["status"], image["checksum"]) == ("legacy", "active", MD5)

    def test_legacy_import_task_refusals(self, client: TestClient) -> None:
        refused = {
            "Task 'input' is required": {"type": "import"},
            "Invalid type value: teleport": {"type": "teleport", "input": {}},
            "URI for legacy import task does not pass filtering: ftp://127.0.0.1/x": {
                "type": "import",
                "input": {
                    "import_from": "ftp://127.0.0.1/x",
                    "image_properties": {"disk_format": "raw", "container_format": "bare"},
                },
            },
            "need a disk_format and a container_format": {
                "type": "import",
                "input": {"import_from": "http://127.0.0.1/x", "image_properties": {}},
            },
        }
        for message, body in refused.items():
            response = client.post("/v2/tasks", json=body, headers=ADMIN)
            assert response.status_code == 400, (message, response.text)
            assert message in said(response)
        assert (
            client.post(
                "/v2/tasks", json=refused["Task 'input' is required"], headers=A
            ).status_code
            == 403
        )

    def test_redirects_inside_the_network_fail_the_task(
        self, client: TestClient, app: FastAPI, db: Database, web_server: str, settings: Settings
    ) -> None:
        inside = (
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://0x7f000001/x",
        )
        for target in inside:
            image = create(client)
            uri = f"{web_server}/redirect?to={target}"
            assert (
                start_import(
                    client, image, {"method": {"name": "web-download", "uri": uri}}
                ).status_code
                == 202
            )
            run_jobs(app)
            assert show(client, image)["status"] == "queued"
            (task,) = tasks_of(db, image["id"])
            assert task.status == "failure"
            assert "which does not pass filtering" in task.message, task.message
        assert files_in(settings.data_dir / "images") == []

    def test_more_than_the_size_cap_fails_the_task(
        self, settings: Settings, db: Database, web_server: str
    ) -> None:
        limits = settings.limits.model_copy(update={"image_size_cap": len(DATA) - 1})
        app = create_app(reaching(settings, web_server, limits=limits), database=db)
        with TestClient(app) as client:
            image = create(client)
            body = {"method": {"name": "web-download", "uri": f"{web_server}/image.raw"}}
            assert start_import(client, image, body).status_code == 202
            run_jobs(app)
            assert show(client, image)["status"] == "queued"
        (task,) = tasks_of(db, image["id"])
        assert task.status == "failure"
        assert f"more than the maximum image size of {len(DATA) - 1} bytes" in task.message
        assert files_in(settings.data_dir / "images") == []

    def test_deleting_the_image_stops_a_running_import(
        self, client: TestClient, app: FastAPI, db: Database, web_server: str, settings: Settings
    ) -> None:
        image = create(client)
        body = {"method": {"name": "web-download", "uri": f"{web_server}/slow.raw"}}
        assert start_import(client, image, body).status_code == 202
        running = threading.Thread(target=lambda: asyncio.run(app.state.worker.run_once()))
        running.start()
        deadline = time.monotonic() + 10
        while tasks_of(db, image["id"])[0].status != "processing":
            assert time.monotonic() < deadline, "the import did not start"
            time.sleep(0.05)
        assert client.delete(f"/v2/images/{image['id']}", headers=A).status_code == 204
        # It notices at its next progress report (every 2 s) and stops downloading.
        running.join(timeout=10)
        assert not running.is_alive()
        (task,) = tasks_of(db, image["id"])
        assert (task.status, task.message) == ("failure", "The import was stopped.")
        run_jobs(app)
        assert files_in(settings.data_dir / "images") == []
