"""Upload leases: what a dead or stalled upload leaves is recovered, a live one is left alone.

A "crashed" upload here is exactly what a server killed mid-upload leaves in the database and
the store: the image in `saving`, its lease row, and a staging file of partial bytes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.images.errors import InvalidImageTransition
from app.images.models import Image, ImageUpload
from app.images.repository import ImageRepository
from app.images.status import IMAGE_TRANSITIONS, ImageStatus
from app.images.uploads import ImageGone, UploadLease, UploadLeaseLost, UploadLeases
from tests.identities import A

OCTET = {"Content-Type": "application/octet-stream"}


def create(client: TestClient) -> str:
    body = {"disk_format": "raw", "container_format": "bare"}
    response = client.post("/v2/images", json=body, headers=A)
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def status_of(client: TestClient, image_id: str) -> str:
    status: str = client.get(f"/v2/images/{image_id}", headers=A).json()["status"]
    return status


def staging(settings: Settings) -> list[Path]:
    root = settings.data_dir / "images"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def crashed_upload(app: FastAPI, image_id: str, *, expired: bool) -> UploadLease:
    """What a server killed mid-upload leaves: `saving`, the lease, partial staged bytes."""
    leases: UploadLeases = app.state.data_service.leases
    store = app.state.stores.default
    with app.state.db.session() as session:
        ImageRepository(session).transition(
            image_id, from_=ImageStatus.QUEUED, to=ImageStatus.SAVING
        )
        lease = leases.take(session, image_id, ImageStatus.SAVING, store.store_id)

    async def write_partially() -> None:
        writer = await store.open_writer(lease.object_key)
        await writer.write(b"half an image")  # never committed nor cancelled: the process died

    asyncio.run(write_partially())
    if expired:
        with app.state.db.session() as session:
            session.execute(
                sa.update(ImageUpload)
                .where(ImageUpload.image_id == image_id)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
    return lease


def run_jobs(app: FastAPI) -> None:
    async def drain() -> None:
        while await app.state.worker.run_once():
            pass

    asyncio.run(drain())


def test_an_expired_upload_is_recovered_by_the_worker(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image_id = create(client)
    crashed_upload(app, image_id, expired=True)
    assert status_of(client, image_id) == "saving"
    assert len(staging(settings)) == 1
    assert (
        client.put(f"/v2/images/{image_id}/file", content=b"x", headers={**A, **OCTET}).status_code
        == 409
    )

    asyncio.run(app.state.worker.run_sweeps_once())
    assert status_of(client, image_id) == "queued"
    run_jobs(app)  # the discard job the recovery enqueued
    assert staging(settings) == []
    retry = client.put(f"/v2/images/{image_id}/file", content=b"data", headers={**A, **OCTET})
    assert retry.status_code == 204
    assert status_of(client, image_id) == "active"


def test_a_live_upload_is_never_recovered_or_scrubbed(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image_id = create(client)
    crashed_upload(app, image_id, expired=False)
    asyncio.run(app.state.worker.run_sweeps_once())
    # Even a scrub that would remove anything of any age spares what a live lease holds.
    reset, removed = asyncio.run(app.state.data_service.scrub(timedelta(0)))
    assert (reset, removed) == (0, 0)
    assert status_of(client, image_id) == "saving"
    assert len(staging(settings)) == 1


def test_scrub_recovers_expired_uploads_at_once(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image_id = create(client)
    crashed_upload(app, image_id, expired=True)
    reset, _ = asyncio.run(app.state.data_service.scrub(timedelta(hours=24)))
    assert reset == 1
    assert status_of(client, image_id) == "queued"
    run_jobs(app)
    assert staging(settings) == []


def test_deleting_an_image_mid_upload_removes_its_partial_bytes(
    app: FastAPI, client: TestClient, settings: Settings, db: Database
) -> None:
    image_id = create(client)
    crashed_upload(app, image_id, expired=False)
    assert client.delete(f"/v2/images/{image_id}", headers=A).status_code == 204
    with db.session() as session:
        assert session.get(ImageUpload, image_id) is None
    run_jobs(app)
    assert staging(settings) == []


def test_an_upload_that_loses_its_lease_is_stopped(app: FastAPI, client: TestClient) -> None:
    leases = UploadLeases(app.state.db, lease_seconds=0.2)
    deleted, reset = create(client), create(client)

    def take(image_id: str) -> UploadLease:
        with app.state.db.session() as session:
            ImageRepository(session).transition(
                image_id, from_=ImageStatus.QUEUED, to=ImageStatus.SAVING
            )
            return leases.take(session, image_id, ImageStatus.SAVING, "local")

    async def uploading_forever() -> None:
        await asyncio.sleep(30)

    def hold(lease: UploadLease) -> None:
        asyncio.run(asyncio.wait_for(leases.hold(lease, uploading_forever()), 10))

    lease = take(deleted)
    assert client.delete(f"/v2/images/{deleted}", headers=A).status_code == 204
    started = time.monotonic()
    with pytest.raises(ImageGone):
        hold(lease)
    assert time.monotonic() - started < 5

    lease = take(reset)
    with app.state.db.session() as session:  # another process recovered it meanwhile
        session.execute(sa.delete(ImageUpload).where(ImageUpload.image_id == reset))
    with pytest.raises(UploadLeaseLost, match="upload the data again"):
        hold(lease)


def test_a_live_lease_is_renewed(app: FastAPI, client: TestClient, db: Database) -> None:
    leases = UploadLeases(app.state.db, lease_seconds=0.4)
    image_id = create(client)
    with db.session() as session:
        ImageRepository(session).transition(
            image_id, from_=ImageStatus.QUEUED, to=ImageStatus.SAVING
        )
        lease = leases.take(session, image_id, ImageStatus.SAVING, "local")

    async def upload_for_a_while() -> str:
        await asyncio.sleep(1.5)  # several lease periods
        return "done"

    assert asyncio.run(leases.hold(lease, upload_for_a_while())) == "done"
    assert leases.recover_expired() == 0
    with db.session() as session:
        row = session.get(ImageUpload, image_id)
        assert row is not None
        assert row.lease_until > utcnow()


@pytest.mark.parametrize(
    ("from_", "to"),
    [
        (from_, to)
        for from_ in ImageStatus
        for to in ImageStatus
        if to not in IMAGE_TRANSITIONS[from_]
    ],
)
def test_the_repository_refuses_every_forbidden_transition(
    client: TestClient, db: Database, from_: ImageStatus, to: ImageStatus
) -> None:
    image_id = create(client)
    with db.session() as session:
        session.execute(sa.update(Image).where(Image.id == image_id).values(status=from_))
    with db.session() as session, pytest.raises(InvalidImageTransition):
        ImageRepository(session).transition(image_id, from_=from_, to=to)
    with db.session() as session:
        image = session.get(Image, image_id)
        assert image is not None
        assert image.status == from_


def test_an_upload_cancelled_while_it_begins_is_ended_at_once(
    app: FastAPI, client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that goes away while the upload's first transaction commits: the image does
    not wait in `saving` for its lease to run out."""
    data = app.state.data_service
    begin = data._begin_upload
    committed = threading.Event()

    def slow_begin(*args: object) -> object:
        time.sleep(0.3)  # the request is cancelled meanwhile
        try:
            return begin(*args)
        finally:
            committed.set()

    monkeypatch.setattr(data, "_begin_upload", slow_begin)
    image_id = create(client)

    async def cancelled_upload() -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b"never read"

        owner = RequestContext("project-a", "user-a", frozenset({"member", "reader"}))
        task = asyncio.create_task(data.upload(owner, image_id, body()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(committed.wait, 5)
        await asyncio.sleep(0.5)  # the clean-up runs in a thread once the commit is done

    asyncio.run(cancelled_upload())
    assert status_of(client, image_id) == "queued"
    with db.session() as session:
        assert session.get(ImageUpload, image_id) is None
