"""The image data API with a real object store as the default store: OpenStack Swift through its
Swift API and through its S3 API (tests/services.py starts it).

The store sits behind a forwarder the tests can cut (tests/faults.py), which is how the server
"stops" in the middle of an upload or a download. After every failure the image is `queued` and,
once the server is back and the worker ran, the store holds nothing but the objects of images
that have data: no segments, no multipart uploads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import swiftclient
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.config import S3StoreSettings, Settings, StorageSettings, SwiftStoreSettings
from app.db.engine import Database
from app.main import create_app
from tests.faults import Cuttable, cuttable
from tests.identities import ADMIN, A
from tests.services import SwiftService
from tests.serving import serve

MiB = 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}
# Several segments (Swift) or parts (S3) at the thresholds below, plus a ragged end.
BIG = os.urandom(11 * MiB + 12345)
SMALL = os.urandom(100_000)


@dataclass
class ObjectStore:
    """The test's view of the server: what it holds for this test's store, read directly."""

    kind: str
    name: str  # the container or bucket
    forwarder: Cuttable
    service: SwiftService

    def settings(self) -> SwiftStoreSettings | S3StoreSettings:
        if self.kind == "swift":
            return SwiftStoreSettings(
                auth_url=f"{self.forwarder.url}/auth/v1.0",
                user=self.service.user,
                key=self.service.key,
                container=self.name,
                large_object_size=4 * MiB,
                segment_size=2 * MiB,
                read_chunk_size=MiB,
                timeout=5,
            )
        return S3StoreSettings(
            endpoint_url=self.forwarder.url,
            access_key=self.service.s3_access_key,
            secret_key=self.service.s3_secret_key,
            region_name=self.service.region,
            bucket=self.name,
            addressing_style="path",
            large_object_size=5 * MiB,
            part_size=5 * MiB,
            read_chunk_size=MiB,
            timeout=5,
        )

    def held(self) -> list[str]:
        """Every object, segment and unfinished upload there is for this store."""
        if self.kind == "swift":
            swift = swiftclient.Connection(
                authurl=self.service.auth_url, user=self.service.user, key=self.service.key
            )
            _, containers = swift.get_account(prefix=self.name, full_listing=True)
            return sorted(
                f"{container['name']}/{entry['name']}"
                for container in containers
                for entry in swift.get_container(container["name"], full_listing=True)[1]
            )
        s3 = self.service.s3_client()
        try:
            objects = s3.list_objects_v2(Bucket=self.name).get("Contents", [])
            uploads = s3.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        except s3.exceptions.NoSuchBucket:
            return []
        return sorted(
            [entry["Key"] for entry in objects] + [f"upload:{up['Key']}" for up in uploads]
        )

    def image_ids(self) -> set[str]:
        """The images whose objects (of any kind) the store holds; keys start with the id."""
        if self.kind == "swift":  # "<container>/<key>...": objects, segments, markers
            return {entry.split("/", 1)[1][:36] for entry in self.held()}
        return {entry.removeprefix("upload:")[:36] for entry in self.held()}


@pytest.fixture(params=["swift", "s3"])
def object_store(
    request: pytest.FixtureRequest, swift_service: SwiftService
) -> Iterator[ObjectStore]:
    with cuttable(swift_service.host, swift_service.port) as forwarder:
        yield ObjectStore(
            request.param, f"glint-api-{uuid.uuid4().hex[:10]}", forwarder, swift_service
        )


@pytest.fixture
def app(settings: Settings, db: Database, object_store: ObjectStore) -> FastAPI:
    storage = StorageSettings(default="objects", stores={"objects": object_store.settings()})
    return create_app(settings.model_copy(update={"storage": storage}), database=db)


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v2/images", json={"disk_format": "raw", "container_format": "bare", **body}, headers=A
    )
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def upload(client: TestClient, image: dict[str, Any], data: Any, **headers: str) -> Any:
    return client.put(image["file"], content=data, headers={**A, **OCTET, **headers})


def in_pieces(data: bytes, piece: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def run_jobs(app: FastAPI) -> None:
    while asyncio.run(app.state.worker.run_once()):
        pass


def assert_only_images_with_data(client: TestClient, object_store: ObjectStore) -> None:
    listed = client.get("/v2/images?limit=1000&member_status=all", headers=ADMIN).json()["images"]
    with_data = {image["id"] for image in listed if image["status"] in ("active", "deactivated")}
    assert object_store.image_ids() == with_data, object_store.held()


def assert_queued_without_data(client: TestClient, image: dict[str, Any]) -> None:
    shown = client.get(image["self"], headers=A).json()
    assert shown["status"] == "queued"
    assert (shown["size"], shown["checksum"], shown["os_hash_value"]) == (None, None, None)


@pytest.mark.parametrize(
    ("data", "sized"),
    [
        pytest.param(SMALL, True, id="small"),
        pytest.param(BIG, True, id="large-known-size"),
        pytest.param(BIG, False, id="large-chunked"),
        pytest.param(b"", True, id="empty"),
    ],
)
def test_upload_then_download(
    client: TestClient, object_store: ObjectStore, data: bytes, sized: bool
) -> None:
    image = create(client)
    response = upload(client, image, data if sized else in_pieces(data))
    assert response.status_code == 204, response.text
    shown = client.get(image["self"], headers=A).json()
    assert (shown["status"], shown["size"]) == ("active", len(data))
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    download = client.get(image["file"], headers=A)
    assert download.status_code == 200
    assert download.headers["content-length"] == str(len(data))
    assert download.content == data
    assert_only_images_with_data(client, object_store)


def test_ranged_downloads(client: TestClient) -> None:
    image = create(client)
    assert upload(client, image, BIG).status_code == 204
    size = len(BIG)
    for header, first, last in [
        (f"bytes={size - MiB}-", size - MiB, size - 1),  # the last MiB
        ("bytes=2097000-4195000", 2097000, 4195000),  # across segment and part boundaries
        ("bytes=-10", size - 10, size - 1),
    ]:
        response = client.get(image["file"], headers={**A, "Range": header})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.content == BIG[first : last + 1]


def test_deleting_the_image_removes_every_piece(
    app: FastAPI, client: TestClient, object_store: ObjectStore
) -> None:
    image = create(client)
    assert upload(client, image, BIG).status_code == 204
    assert object_store.image_ids() == {image["id"]}
    assert client.delete(image["self"], headers=A).status_code == 204
    run_jobs(app)
    assert object_store.held() == []


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        # A qcow2 image whose bytes are not qcow2: refused by the inspector mid-stream.
        pytest.param(BIG, {}, 415, id="wrong-format"),
        # The declared size is more than the body brings.
        pytest.param(
            in_pieces(BIG), {"x-openstack-image-size": str(len(BIG) + 1)}, 400, id="short"
        ),
    ],
)
def test_refused_uploads_leave_nothing(
    client: TestClient,
    object_store: ObjectStore,
    body: Any,
    headers: dict[str, str],
    status: int,
) -> None:
    image = create(client, disk_format="qcow2" if status == 415 else "raw")
    response = upload(client, image, body, **headers)
    assert response.status_code == status, response.text
    assert_queued_without_data(client, image)
    assert object_store.held() == []


def test_the_store_stopping_mid_upload(
    app: FastAPI, client: TestClient, object_store: ObjectStore
) -> None:
    image = create(client)
    # Let the store authenticate and create its container first.
    assert upload(client, create(client), SMALL).status_code == 204
    object_store.forwarder.cut_after_upstream(5 * MiB)
    response = upload(client, image, in_pieces(BIG))
    assert response.status_code == 503, response.text
    assert "objects" in response.text  # the store is named
    assert_queued_without_data(client, image)
    # What the failed upload wrote is removed once the server is back.
    object_store.forwarder.mend()
    run_jobs(app)
    assert_only_images_with_data(client, object_store)
    # And the image takes a new upload.
    assert upload(client, image, BIG).status_code == 204
    assert client.get(image["file"], headers=A).content == BIG


def test_the_store_stopping_mid_download(object_store: ObjectStore, tmp_path: Path) -> None:
    # Through a real `glint serve`: a broken transfer must look broken to an HTTP client.
    store = object_store.settings().model_dump(exclude_none=True)
    lines = ["[storage]", 'default = "objects"', "[storage.stores.objects]"]
    lines += [f"{key} = {json.dumps(_plain(value))}" for key, value in store.items()]
    config = tmp_path / "glint.toml"
    config.write_text("\n".join(lines) + "\n")
    with (
        serve(tmp_path, settings={"GLINT_CONFIG": str(config)}) as server,
        httpx.Client(base_url=server.base_url, headers=A, timeout=30) as http,
    ):
        image = http.post(
            "/v2/images", json={"disk_format": "raw", "container_format": "bare"}
        ).json()
        assert http.put(image["file"], content=BIG, headers=OCTET).status_code == 204
        object_store.forwarder.cut_after_downstream(3 * MiB)
        with http.stream("GET", image["file"]) as response:
            assert response.status_code == 200
            received = bytearray()
            with pytest.raises(httpx.HTTPError):
                _read_into(received, response)
        # Some bytes went out before the store went away: the break is mid-body.
        assert 0 < len(received) < len(BIG)


def test_the_store_down_before_a_download(client: TestClient, object_store: ObjectStore) -> None:
    image = create(client)
    assert upload(client, image, SMALL).status_code == 204
    object_store.forwarder.cut()
    response = client.get(image["file"], headers=A)
    assert response.status_code == 503
    assert object_store.service.key not in response.text
    assert object_store.service.s3_secret_key not in response.text


def test_an_object_missing_behind_an_active_image(
    client: TestClient, object_store: ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    image = create(client)
    assert upload(client, image, SMALL).status_code == 204
    app_state = client.app.state  # type: ignore[attr-defined]
    (location,) = _locations(app_state.db, image["id"])
    asyncio.run(app_state.stores.default.delete(location))
    with caplog.at_level(logging.ERROR, logger="app.images.data"):
        response = client.get(image["file"], headers=A)
    # As Glance answers when its store says NotFound; the log names the broken location.
    assert (response.status_code, response.content) == (204, b"")
    assert f"image {image['id']}: its location in store objects is broken" in caplog.text


def test_bad_credentials_are_a_clear_503(
    settings: Settings, db: Database, object_store: ObjectStore
) -> None:
    store = object_store.settings()
    secret = "key" if object_store.kind == "swift" else "secret_key"
    wrong = type(store).model_validate({**store.model_dump(), secret: "wrong"})
    storage = StorageSettings(default="objects", stores={"objects": wrong})
    app = create_app(settings.model_copy(update={"storage": storage}), database=db)
    with TestClient(app) as client:
        image = create(client)
        response = upload(client, image, SMALL)
        assert response.status_code == 503, response.text
        assert "objects" in response.text
        assert "Traceback" not in response.text
        assert_queued_without_data(client, image)


def _plain(value: Any) -> Any:
    """A setting as TOML can hold it: secrets revealed (a JSON dump would mask them)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value) if isinstance(value, Path) else value


def _read_into(received: bytearray, response: httpx.Response) -> None:
    for chunk in response.iter_bytes():
        received += chunk


def _locations(db: Database, image_id: str) -> list[str]:
    from sqlmodel import col, select

    from app.images.models import ImageLocation

    with db.session(write=False) as session:
        return list(
            session.exec(select(ImageLocation.url).where(col(ImageLocation.image_id) == image_id))
        )
