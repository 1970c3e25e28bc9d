"""Delayed delete and the scrubber: a deleted image with data waits in `pending_delete`, hidden
with its bytes kept, until a pass scrubs it (its bytes then go by a job) or it is restored.

Jobs and sweeps run only when a test runs them (`run_once`, `run_sweeps_once`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.config import ScrubberSettings, Settings
from app.db.engine import Database
from app.images import scrubber as scrubber_module
from app.images.errors import ImageNotFound
from app.images.models import Image, ImageLocation
from app.images.scrubber import NotPendingDelete, Scrubber
from app.images.service import DELETE_DATA_JOB
from app.images.status import ImageStatus
from app.images.uploads import DISCARD_UPLOAD_JOB
from app.jobs.models import Job
from app.main import create_app
from tests.identities import ADMIN, A

OCTET = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(50_000)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with delayed delete on, scrubbing due at once."""
    return with_scrubber(settings, delayed_delete=True)


def with_scrubber(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update={"scrubber": ScrubberSettings(**values)})


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    body = {"disk_format": "raw", "container_format": "bare", **body}
    response = client.post("/v2/images", json=body, headers=A)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def create_with_data(client: TestClient, **body: Any) -> dict[str, Any]:
    image = create(client, **body)
    response = client.put(image["file"], content=DATA, headers={**A, **OCTET})
    assert response.status_code == 204, response.text
    return image


def store_files(settings: Settings) -> set[str]:
    """The images whose bytes the file store holds (objects are named `<image id>.<random>`)."""
    root = settings.data_dir / "images"
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {str(path).split(".", 1)[0] for path in files}


def row(db: Database, image_id: str) -> Image:
    with db.session(write=False) as session:
        image = session.get(Image, image_id)
        assert image is not None
        return image


def jobs(db: Database, name: str) -> list[Job]:
    with db.session(write=False) as session:
        return list(session.exec(select(Job).where(col(Job.name) == name)).all())


def location_rows(db: Database, image_id: str) -> int:
    with db.session(write=False) as session:
        return len(
            session.exec(select(ImageLocation).where(col(ImageLocation.image_id) == image_id)).all()
        )


def backdate_deletion(db: Database, image_id: str, by: timedelta) -> datetime:
    deleted_at = row(db, image_id).deleted_at
    assert deleted_at is not None
    with db.session() as session:
        session.execute(
            sa.update(Image).where(col(Image.id) == image_id).values(deleted_at=deleted_at - by)
        )
    return deleted_at - by


def run_jobs(app: FastAPI) -> int:
    async def drain() -> int:
        ran = 0
        while await app.state.worker.run_once():
            ran += 1
        return ran

    return asyncio.run(drain())


def sweep(app: FastAPI) -> None:
    asyncio.run(app.state.worker.run_sweeps_once())


def test_delete_hides_the_image_and_keeps_its_bytes(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create_with_data(client)
    assert client.delete(image["self"], headers=A).status_code == 204

    assert client.get(image["self"], headers=A).status_code == 404
    assert client.get(image["self"], headers=ADMIN).status_code == 404
    assert client.get(image["file"], headers=A).status_code == 404
    for query in ("", "?status=pending_delete"):
        listed = client.get(f"/v2/images{query}", headers=ADMIN).json()["images"]
        assert image["id"] not in {shown["id"] for shown in listed}
    again = client.delete(image["self"], headers=A)
    assert again.status_code == 404
    assert f"Failed to find image {image['id']} to delete" in again.text

    stored = row(app.state.db, image["id"])
    assert (stored.status, stored.is_deleted) == (ImageStatus.PENDING_DELETE, True)
    assert stored.deleted_at is not None
    assert run_jobs(app) == 0  # nothing deletes the bytes yet
    assert store_files(settings) == {image["id"]}
    assert location_rows(app.state.db, image["id"]) == 1


def test_a_pass_scrubs_only_after_scrub_time(settings: Settings, db: Database) -> None:
    settings = with_scrubber(settings, delayed_delete=True, scrub_time=HOUR.total_seconds())
    app = create_app(settings, database=db)
    with TestClient(app) as client:
        image = create_with_data(client)
        assert client.delete(image["self"], headers=A).status_code == 204

        sweep(app)
        assert row(db, image["id"]).status == ImageStatus.PENDING_DELETE
        assert run_jobs(app) == 0
        assert store_files(settings) == {image["id"]}

        deleted_at = backdate_deletion(db, image["id"], by=HOUR + timedelta(seconds=1))
        sweep(app)
        scrubbed = row(db, image["id"])
        assert (scrubbed.status, scrubbed.is_deleted) == (ImageStatus.DELETED, True)
        assert scrubbed.deleted_at == deleted_at  # when its owner deleted it, not now
        # The deletion committed with its job; the bytes go when a worker runs it.
        assert len(jobs(db, DELETE_DATA_JOB)) == 1
        assert store_files(settings) == {image["id"]}
        assert run_jobs(app) == 1
        assert store_files(settings) == set()
        assert location_rows(db, image["id"]) == 0
        assert client.get(image["self"], headers=A).status_code == 404


def test_restore_brings_the_image_back_whole(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create_with_data(client, tags=["kept"])
    before = client.get(image["self"], headers=A).json()
    assert client.delete(image["self"], headers=A).status_code == 204

    Scrubber(app.state.db, settings.scrubber).restore(image["id"])

    shown = client.get(image["self"], headers=A).json()
    assert (shown["status"], shown["tags"]) == ("active", ["kept"])
    assert shown["checksum"] == before["checksum"] == hashlib.md5(DATA).hexdigest()
    download = client.get(image["file"], headers=A)
    assert (download.status_code, download.content) == (200, DATA)
    assert download.headers["content-md5"] == before["checksum"]
    listed = client.get("/v2/images", headers=A).json()["images"]
    assert image["id"] in {i["id"] for i in listed}
    restored = row(app.state.db, image["id"])
    assert (restored.is_deleted, restored.deleted_at) == (False, None)

    # Nothing was left to scrub, and it can be deleted again.
    sweep(app)
    assert run_jobs(app) == 0
    assert store_files(settings) == {image["id"]}
    assert client.delete(image["self"], headers=A).status_code == 204
    assert row(app.state.db, image["id"]).status == ImageStatus.PENDING_DELETE


def test_restore_refusals(app: FastAPI, client: TestClient, settings: Settings) -> None:
    scrubber = Scrubber(app.state.db, settings.scrubber)
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ImageNotFound, match=f"No image found with ID {unknown}"):
        scrubber.restore(unknown)

    image = create_with_data(client)
    with pytest.raises(NotPendingDelete, match="cannot restore the image from active to active"):
        scrubber.restore(image["id"])

    assert client.delete(image["self"], headers=A).status_code == 204
    assert scrubber.scrub() == 1
    with pytest.raises(NotPendingDelete, match="from deleted to active"):
        scrubber.restore(image["id"])
    assert row(app.state.db, image["id"]).status == ImageStatus.DELETED


def test_images_without_data_are_deleted_at_once(app: FastAPI, client: TestClient) -> None:
    image = create(client)
    assert client.delete(image["self"], headers=A).status_code == 204
    assert row(app.state.db, image["id"]).status == ImageStatus.DELETED
    assert jobs(app.state.db, DELETE_DATA_JOB) == []


def test_protected_and_deactivated_images_are_refused(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    protected = create_with_data(client, protected=True)
    refused = client.delete(protected["self"], headers=A)
    assert refused.status_code == 403
    assert "is protected and cannot be deleted" in refused.text
    assert client.get(protected["self"], headers=A).json()["status"] == "active"

    # Glance's status table has no deactivated -> pending_delete, and Glance answers 400.
    deactivated = create_with_data(client)
    actions = f"{deactivated['self']}/actions"
    assert client.post(f"{actions}/deactivate", headers=A).status_code == 204
    refused = client.delete(deactivated["self"], headers=A)
    assert refused.status_code == 400
    assert "transition from deactivated to pending_delete is not allowed" in refused.text
    assert client.get(deactivated["self"], headers=A).json()["status"] == "deactivated"
    assert client.post(f"{actions}/reactivate", headers=A).status_code == 204
    assert client.delete(deactivated["self"], headers=A).status_code == 204
    assert store_files(settings) == {protected["id"], deactivated["id"]}


def test_a_running_upload_still_loses_its_lease_and_partial_bytes(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create_with_data(client)
    leases = app.state.data_service.leases
    store = app.state.stores.default
    # A lease on an image that has data (what a copy to a second store would hold).
    with app.state.db.session() as session:
        lease = leases.take(session, image["id"], ImageStatus.ACTIVE, store.store_id)

    async def write_partially() -> None:
        writer = await store.open_writer(lease.object_key)
        await writer.write(b"part of a copy")

    asyncio.run(write_partially())
    assert client.delete(image["self"], headers=A).status_code == 204

    assert row(app.state.db, image["id"]).status == ImageStatus.PENDING_DELETE
    assert [job.name for job in jobs(app.state.db, DISCARD_UPLOAD_JOB)] == [DISCARD_UPLOAD_JOB]
    assert jobs(app.state.db, DELETE_DATA_JOB) == []
    assert run_jobs(app) == 1
    # The partial object is gone; the image's own stays for a restore.
    root = settings.data_dir / "images"
    assert not any(lease.object_key in str(path) for path in root.rglob("*"))
    assert store_files(settings) == {image["id"]}
    assert location_rows(app.state.db, image["id"]) == 1


def test_a_failed_pass_loses_nothing(
    app: FastAPI, client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move to `deleted` and its job commit together, or neither does."""
    image = create_with_data(client)
    assert client.delete(image["self"], headers=A).status_code == 204

    def enqueue_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(scrubber_module, "enqueue", enqueue_fails)
    with pytest.raises(RuntimeError):
        Scrubber(app.state.db, settings.scrubber).scrub()
    assert row(app.state.db, image["id"]).status == ImageStatus.PENDING_DELETE
    assert jobs(app.state.db, DELETE_DATA_JOB) == []

    monkeypatch.undo()
    assert Scrubber(app.state.db, settings.scrubber).scrub() == 1
    assert run_jobs(app) == 1
    assert store_files(settings) == set()


def test_concurrent_passes_scrub_each_image_once(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    images = [create_with_data(client) for _ in range(7)]
    for image in images:
        assert client.delete(image["self"], headers=A).status_code == 204
    # Small batches: a pass queries several times, and the passes race on every image.
    scrubbers = [Scrubber(app.state.db, settings.scrubber, batch_size=2) for _ in range(4)]
    counts: list[int] = []
    start = threading.Barrier(len(scrubbers))

    def run(scrubber: Scrubber) -> None:
        start.wait()
        counts.append(scrubber.scrub())

    threads = [threading.Thread(target=run, args=(scrubber,)) for scrubber in scrubbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == len(images)
    assert sorted(job.lock or "" for job in jobs(app.state.db, DELETE_DATA_JOB)) == sorted(
        image["id"] for image in images
    )
    assert run_jobs(app) == len(images)
    assert store_files(settings) == set()


def test_a_restore_wins_over_a_later_pass(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create_with_data(client)
    assert client.delete(image["self"], headers=A).status_code == 204
    scrubber = Scrubber(app.state.db, settings.scrubber)
    scrubber.restore(image["id"])
    assert scrubber.scrub() == 0
    assert jobs(app.state.db, DELETE_DATA_JOB) == []
    assert client.get(image["self"], headers=A).json()["status"] == "active"


def test_without_delayed_delete_images_are_deleted_at_once(
    settings: Settings, db: Database
) -> None:
    settings = with_scrubber(settings)
    app = create_app(settings, database=db)
    with TestClient(app) as client:
        image = create_with_data(client)
        assert client.delete(image["self"], headers=A).status_code == 204
        assert row(db, image["id"]).status == ImageStatus.DELETED
        assert run_jobs(app) == 1
        assert store_files(settings) == set()


def test_the_worker_runs_a_pass_every_wakeup_time_only_with_delayed_delete(
    settings: Settings, db: Database
) -> None:
    def intervals(**values: Any) -> list[float]:
        app = create_app(with_scrubber(settings, wakeup_time=42, **values), database=db)
        return sorted(interval for interval, _ in app.state.worker.sweeps)

    assert intervals(delayed_delete=True) == sorted([*intervals(), 42])
