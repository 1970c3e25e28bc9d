"""Glance's multi-store API with two real file stores: discovery, the `stores` field and header,
deleting an image from one store, and downloads that fall over from a copy that fails to the
next one (heaviest store first)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import FileStoreSettings, Settings, StorageSettings
from app.db.engine import Database
from app.images.models import ImageLocation
from app.main import create_app
from app.storage.errors import StoreUnavailable
from app.storage.registry import StoreRegistry
from tests.identities import ADMIN, READER_A, A, identity
from tests.memory_store import FailingAfter, with_stores

OCTET = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(300_000)
CHUNK = 64 * 1024


def two_stores(tmp_path: Path, *, cheap_weight: int = 0) -> StorageSettings:
    return StorageSettings(
        default="fast",
        stores={
            "fast": FileStoreSettings(
                path=tmp_path / "fast", description="Fast file store", read_chunk_size=CHUNK
            ),
            "cheap": FileStoreSettings(
                path=tmp_path / "cheap", weight=cheap_weight, read_chunk_size=CHUNK
            ),
        },
    )


@pytest.fixture
def app(settings: Settings, db: Database, tmp_path: Path) -> FastAPI:
    return create_app(settings.model_copy(update={"storage": two_stores(tmp_path)}), database=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def create(client: TestClient) -> dict[str, Any]:
    response = client.post(
        "/v2/images", json={"disk_format": "raw", "container_format": "bare"}, headers=A
    )
    assert response.status_code == 201
    image: dict[str, Any] = response.json()
    return image


def upload(client: TestClient, image: dict[str, Any], **headers: str) -> None:
    response = client.put(image["file"], content=DATA, headers={**A, **OCTET, **headers})
    assert response.status_code == 204, response.text


def copy_to(app: FastAPI, image: dict[str, Any], store_id: str) -> Path:
    """What copy-image would do: the image's bytes in one more store, as its last location."""
    store = app.state.stores.get(store_id)

    async def write() -> str:
        writer = await store.open_writer(f"{image['id']}.copy")
        await writer.write(DATA)
        return (await writer.commit()).location

    location = asyncio.run(write())
    with app.state.db.session() as session:
        session.add(
            ImageLocation(image_id=image["id"], store_id=store_id, url=location, position=1)
        )
    return Path(location.removeprefix("file://"))


def run_jobs(app: FastAPI) -> None:
    while asyncio.run(app.state.worker.run_once()):
        pass


def test_versions_offer_the_multistore_minors(client: TestClient) -> None:
    listed = [version["id"] for version in client.get("/versions").json()["versions"]]
    assert {"v2.8", "v2.10", "v2.11", "v2.12", "v2.13"} <= set(listed)
    assert listed[0] == "v2.17"
    assert client.get("/v2.10/info/stores", headers=A).status_code == 200


def test_store_discovery(client: TestClient, tmp_path: Path) -> None:
    listed = client.get("/v2/info/stores", headers=READER_A)
    assert listed.status_code == 200
    assert listed.json() == {
        "stores": [
            {"id": "fast", "description": "Fast file store", "default": "true"},
            {"id": "cheap"},
        ]
    }
    refused = client.get("/v2/info/stores/detail", headers=A)
    assert refused.status_code == 403
    assert "You are not authorized to complete stores_info_detail action." in refused.text
    for caller in (ADMIN, identity("project-a", "service")):
        detail = client.get("/v2/info/stores/detail", headers=caller)
        assert detail.status_code == 200, detail.text
        assert detail.json()["stores"][1] == {
            "id": "cheap",
            "type": "file",
            "properties": {
                "data_dir": str((tmp_path / "cheap").resolve()),
                "chunk_size": CHUNK,
                "thin_provisioning": False,
            },
            "weight": 0,
        }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/info/stores"),
        ("GET", "/v2/info/stores/detail"),
        ("DELETE", "/v2/stores/local/" + "0" * 36),
    ],
)
def test_a_single_store_answers_404(
    settings: Settings, db: Database, method: str, path: str
) -> None:
    with TestClient(create_app(settings, database=db)) as client:
        response = client.request(method, path, headers=ADMIN)
        assert response.status_code == 404
        if "info" in path:
            assert "Multi backend is not supported at this site." in response.text
        created = client.post("/v2/images", json={}, headers=A)
        assert "openstack-image-store-ids" not in created.headers
        assert "stores" not in created.json()
        versions = {version["id"] for version in client.get("/versions").json()["versions"]}
        assert "v2.8" not in versions


def test_stores_header_and_field(client: TestClient) -> None:
    created = client.post("/v2/images", json={}, headers=A)
    assert created.headers["openstack-image-store-ids"] == "fast,cheap"
    assert "stores" not in created.json()
    image = create(client)
    upload(client, image, **{"X-Image-Meta-Store": "cheap"})
    assert client.get(image["self"], headers=A).json()["stores"] == "cheap"
    listed = client.get("/v2/images", headers=A).json()["images"]
    assert [i.get("stores") for i in listed if i["id"] == image["id"]] == ["cheap"]


def test_delete_from_one_store(app: FastAPI, client: TestClient, tmp_path: Path) -> None:
    image = create(client)
    upload(client, image)
    copy = copy_to(app, image, "cheap")
    assert client.get(image["self"], headers=A).json()["stores"] == "fast,cheap"
    not_admin = client.delete(f"/v2/stores/cheap/{image['id']}", headers=A)
    assert not_admin.status_code == 403
    assert "delete_image_location" in not_admin.text
    response = client.delete(f"/v2/stores/cheap/{image['id']}", headers=ADMIN)
    assert (response.status_code, response.content) == (204, b"")
    assert client.get(image["self"], headers=A).json()["stores"] == "fast"
    assert copy.exists()  # until the job ran
    run_jobs(app)
    assert not copy.exists()
    assert client.get(image["file"], headers=A).content == DATA
    again = client.delete(f"/v2/stores/cheap/{image['id']}", headers=ADMIN)
    assert again.status_code == 403
    assert "only store containing it" in again.text


@pytest.mark.parametrize(
    ("store", "status", "message"),
    [
        ("nosuch", 409, "The selected store nosuch is not available on this node."),
        ("cheap", 404, "is not stored in store cheap."),
    ],
)
def test_delete_from_store_refusals(
    app: FastAPI, client: TestClient, store: str, status: int, message: str
) -> None:
    image = create(client)
    upload(client, image)
    copy_to(app, image, "fast")  # two copies, both in fast
    response = client.delete(f"/v2/stores/{store}/{image['id']}", headers=ADMIN)
    assert response.status_code == status
    assert message in response.text


def test_delete_from_store_of_an_image_without_data(client: TestClient) -> None:
    image = create(client)
    response = client.delete(f"/v2/stores/fast/{image['id']}", headers=ADMIN)
    assert response.status_code == 409
    assert "if image status is not &#x27;active&#x27;" in response.text
    missing = client.delete("/v2/stores/fast/" + "0" * 36, headers=ADMIN)
    assert missing.status_code == 404
    assert "Failed to find image" in missing.text


# --- downloads over several locations ---------------------------------------------------------


@pytest.fixture
def weighted(settings: Settings, db: Database, tmp_path: Path) -> FastAPI:
    """`cheap` weighs more: its copy is read first."""
    storage = two_stores(tmp_path, cheap_weight=10)
    return create_app(settings.model_copy(update={"storage": storage}), database=db)


def test_downloads_prefer_the_heaviest_store(weighted: FastAPI, tmp_path: Path) -> None:
    with TestClient(weighted) as client:
        image = create(client)
        upload(client, image)
        copy = copy_to(weighted, image, "cheap")
        copy.write_bytes(b"x" * len(DATA))  # so the copy that was read shows
        assert client.get(image["file"], headers=A).content == b"x" * len(DATA)


def test_a_missing_copy_is_skipped(
    weighted: FastAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(weighted) as client:
        image = create(client)
        upload(client, image)
        copy_to(weighted, image, "cheap").unlink()
        with caplog.at_level(logging.WARNING, logger="app.images.data"):
            response = client.get(image["file"], headers=A)
        assert (response.status_code, response.content) == (200, DATA)
        assert f"image {image['id']}: its location in store cheap is broken" in caplog.text
        ranged = client.get(image["file"], headers={**A, "Range": "bytes=1000-1999"})
        assert (ranged.status_code, ranged.content) == (206, DATA[1000:2000])


def test_a_truncated_copy_hands_over_at_the_same_byte(weighted: FastAPI) -> None:
    with TestClient(weighted) as client:
        image = create(client)
        upload(client, image)
        copy = copy_to(weighted, image, "cheap")
        copy.write_bytes(DATA[:100_000])
        response = client.get(image["file"], headers=A)
        assert (response.status_code, response.content) == (200, DATA)


def test_a_copy_failing_mid_read_hands_over(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    storage = two_stores(tmp_path, cheap_weight=10)
    settings = settings.model_copy(update={"storage": storage})
    real = StoreRegistry.from_settings(storage, settings.data_dir)
    failing = FailingAfter(real.get("cheap"), budget=CHUNK + 123)
    app = create_app(settings, database=db, stores=with_stores(real, cheap=failing))
    with TestClient(app) as client:
        image = create(client)
        upload(client, image)
        copy_to(app, image, "cheap")
        response = client.get(image["file"], headers=A)
        assert (response.status_code, response.content) == (200, DATA)
        assert response.headers["content-length"] == str(len(DATA))
        ranged = client.get(image["file"], headers={**A, "Range": "bytes=10-200009"})
        assert (ranged.status_code, ranged.content) == (206, DATA[10:200010])


def test_when_every_copy_fails(settings: Settings, db: Database, tmp_path: Path) -> None:
    storage = two_stores(tmp_path)
    settings = settings.model_copy(update={"storage": storage})
    real = StoreRegistry.from_settings(storage, settings.data_dir)
    broken = {
        store_id: FailingAfter(real.get(store_id), budget=CHUNK) for store_id in ("fast", "cheap")
    }
    app = create_app(settings, database=db, stores=with_stores(real, **broken))
    with TestClient(app) as client:
        image = create(client)
        upload(client, image)
        cheap_copy = copy_to(app, image, "cheap")
        with pytest.raises(StoreUnavailable):
            # Bytes went out: the transfer breaks (a real client sees the connection close
            # before Content-Length bytes), never a clean short body.
            client.get(image["file"], headers=A)
        for path in [*(tmp_path / "fast").glob(f"{image['id']}*"), cheap_copy]:
            path.unlink()
        # Every object gone: Glance's answer to its store's NotFound.
        response = client.get(image["file"], headers=A)
        assert (response.status_code, response.content) == (204, b"")


def test_upload_to_a_read_only_store_is_gone(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    from app.config import HttpStoreSettings

    storage = two_stores(tmp_path)
    storage.stores["web"] = HttpStoreSettings()
    app = create_app(settings.model_copy(update={"storage": storage}), database=db)
    with TestClient(app) as client:
        image = create(client)
        response = client.put(
            image["file"], content=DATA, headers={**A, **OCTET, "X-Image-Meta-Store": "web"}
        )
        assert response.status_code == 410
        assert "Adding images to store is disabled." in response.text
        assert client.get(image["self"], headers=A).json()["status"] == "queued"
        stores = client.get("/v2/info/stores", headers=A).json()["stores"]
        assert {"id": "web", "read-only": "true"} in stores
