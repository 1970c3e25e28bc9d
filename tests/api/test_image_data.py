"""PUT/GET /v2/images/{id}/file: streaming upload and download, and every way they fail.

After every failure the image is `queued` again and the store holds nothing that no image
references (checked by `assert_store_clean`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.images.ingest import BATCH_SIZE
from tests.identities import ADMIN, READER_A, A, B

OCTET = {"Content-Type": "application/octet-stream"}
DATA = os.urandom(100_000)


def create(client: TestClient, headers: dict[str, str] = A, **body: Any) -> dict[str, Any]:
    body = {"disk_format": "raw", "container_format": "bare", **body}
    response = client.post("/v2/images", json=body, headers=headers)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def upload(client: TestClient, image: dict[str, Any], data: Any = DATA, **headers: str) -> Any:
    return client.put(image["file"], content=data, headers={**A, **OCTET, **headers})


def store_files(settings: Settings) -> set[str]:
    """What the file store holds, by image id (objects are named `<image id>.<random>`)."""
    root = settings.data_dir / "images"
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {str(path).split(".", 1)[0] for path in files}


def assert_store_clean(client: TestClient, settings: Settings) -> None:
    """Every stored object belongs to an active or deactivated image; nothing is staged."""
    listed = client.get("/v2/images?limit=1000&member_status=all", headers=ADMIN).json()["images"]
    with_data = {i["id"] for i in listed if i["status"] in ("active", "deactivated")}
    assert store_files(settings) == with_data


def assert_queued_without_data(client: TestClient, image: dict[str, Any]) -> None:
    shown = client.get(image["self"], headers=A).json()
    assert shown["status"] == "queued"
    assert (shown["size"], shown["checksum"], shown["os_hash_value"]) == (None, None, None)


def test_upload_then_download(client: TestClient, settings: Settings) -> None:
    image = create(client)
    response = upload(client, image)
    assert response.status_code == 204
    assert response.content == b""
    shown = client.get(image["self"], headers=A).json()
    assert shown["status"] == "active"
    assert shown["size"] == shown["virtual_size"] == len(DATA)
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    download = client.get(image["file"], headers=A)
    assert download.status_code == 200
    assert download.content == DATA
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-length"] == str(len(DATA))
    assert download.headers["content-md5"] == shown["checksum"]
    assert_store_clean(client, settings)


def test_chunked_upload_larger_than_a_batch(client: TestClient) -> None:
    data = os.urandom(BATCH_SIZE * 2 + 12345)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 1024 * 1024):
            yield data[start : start + 1024 * 1024]

    image = create(client)
    response = client.put(
        image["file"],
        content=chunks(),
        headers={**A, **OCTET, "x-openstack-image-size": str(len(data))},
    )
    assert response.status_code == 204, response.text
    shown = client.get(image["self"], headers=A).json()
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert client.get(image["file"], headers=A).content == data


def test_zero_byte_image(client: TestClient) -> None:
    image = create(client)
    assert upload(client, image, b"").status_code == 204
    shown = client.get(image["self"], headers=A).json()
    assert (shown["status"], shown["size"]) == ("active", 0)
    assert shown["checksum"] == hashlib.md5(b"").hexdigest()
    download = client.get(image["file"], headers=A)
    assert (download.status_code, download.content) == (200, b"")


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("application/json", "application/json"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        (None, "None"),
    ],
)
def test_wrong_media_type(
    client: TestClient, settings: Settings, content_type: str | None, shown: str
) -> None:
    image = create(client)
    headers = {**A} if content_type is None else {**A, "Content-Type": content_type}
    response = client.put(image["file"], content=DATA, headers=headers)
    assert response.status_code == 415
    assert f"The request media type {shown} is not supported by this server." in response.text
    assert_queued_without_data(client, image)
    assert_store_clean(client, settings)


def test_upload_refusals(client: TestClient, settings: Settings) -> None:
    unknown = {"file": "/v2/images/00000000-0000-0000-0000-000000000000/file"}
    assert upload(client, unknown).status_code == 404
    image = create(client)
    reader = client.put(image["file"], content=DATA, headers={**READER_A, **OCTET})
    assert reader.status_code == 403
    assert "upload_image" in reader.text
    shared = create(client)
    client.post(f"{shared['self']}/members", json={"member": "project-b"}, headers=A)
    member = client.put(shared["file"], content=DATA, headers={**B, **OCTET})
    assert member.status_code == 403
    no_formats = create(client, disk_format=None, container_format=None)
    response = upload(client, no_formats)
    assert response.status_code == 400
    assert "Properties disk_format, container_format must be set prior to saving data." in (
        response.text
    )
    assert_queued_without_data(client, no_formats)
    assert upload(client, image).status_code == 204
    again = upload(client, image)
    assert again.status_code == 409
    assert "Image status transition from active to saving is not allowed" in again.text
    assert_store_clean(client, settings)


@pytest.mark.parametrize(
    ("headers", "data"),
    [
        ({"x-openstack-image-size": "10"}, DATA),
        ({"x-openstack-image-size": str(len(DATA) + 1)}, DATA),
        ({"x-openstack-image-size": "ten"}, DATA),
        ({"x-openstack-image-size": "-5"}, DATA),
    ],
)
def test_declared_size_must_match(
    client: TestClient, settings: Settings, headers: dict[str, str], data: bytes
) -> None:
    image = create(client)
    response = upload(client, image, data, **headers)
    assert response.status_code == 400, response.text
    assert_queued_without_data(client, image)
    assert_store_clean(client, settings)


def test_size_cap(app: FastAPI, client: TestClient, settings: Settings) -> None:
    app.state.data_service.limits = settings.limits.model_copy(update={"image_size_cap": 5000})
    image = create(client)
    too_big = upload(client, image)
    assert too_big.status_code == 413
    declared = upload(client, image, DATA[:6000], **{"x-openstack-image-size": "6000"})
    assert declared.status_code == 413
    assert_queued_without_data(client, image)
    assert upload(client, image, DATA[:5000]).status_code == 204
    assert_store_clean(client, settings)


def test_racing_uploads_have_one_winner(client: TestClient, settings: Settings) -> None:
    image = create(client)

    async def race() -> list[int]:
        import httpx

        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            responses = await asyncio.gather(
                *(http.put(image["file"], content=DATA, headers={**A, **OCTET}) for _ in range(4))
            )
        return sorted(r.status_code for r in responses)

    assert asyncio.run(race()) == [204, 409, 409, 409]
    shown = client.get(image["self"], headers=A).json()
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert_store_clean(client, settings)


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "body"),
    [
        ("bytes=0-9", 206, "bytes 0-9/100000", DATA[:10]),
        ("bytes=99990-", 206, "bytes 99990-99999/100000", DATA[99990:]),
        ("bytes=-10", 206, "bytes 99990-99999/100000", DATA[-10:]),
        ("bytes=99990-200000", 206, "bytes 99990-99999/100000", DATA[99990:]),
        ("bytes=200000-300000", 416, None, None),
        ("bytes=0-1,5-6", 400, None, None),
        ("items=0-1", 416, None, None),
        ("bytes=5-2", 416, None, None),
        ("bytes=-0", 416, None, None),
        ("bytes=999999999999-", 416, None, None),
        ("bytes=abc", 416, None, None),
    ],
)
def test_ranges(
    client: TestClient,
    range_header: str,
    status: int,
    content_range: str | None,
    body: bytes | None,
) -> None:
    image = create(client)
    upload(client, image)
    response = client.get(image["file"], headers={**A, "Range": range_header})
    assert response.status_code == status, response.text
    if body is not None:
        assert response.content == body
        assert response.headers["content-range"] == content_range
        assert response.headers["content-length"] == str(len(body))
        assert response.headers["content-md5"] == hashlib.md5(DATA).hexdigest()


def test_legacy_content_range_request_header(client: TestClient) -> None:
    image = create(client)
    upload(client, image)
    response = client.get(image["file"], headers={**A, "Content-Range": "bytes 0-9/*"})
    assert response.status_code == 206
    assert response.content == DATA[:10]
    assert response.headers["content-range"] == "bytes 0-9/100000"


def test_download_rules(client: TestClient) -> None:
    image = create(client)
    assert client.get(image["file"], headers=A).status_code == 204
    upload(client, image)
    reader = client.get(image["file"], headers=READER_A)
    assert reader.status_code == 403
    assert "download_image" in reader.text
    assert client.get(image["file"], headers=B).status_code == 404
    assert client.head(image["file"], headers=A).status_code == 405


def test_deactivate_and_reactivate(client: TestClient) -> None:
    image = create(client)
    actions = f"{image['self']}/actions"
    queued = client.post(f"{actions}/deactivate", headers=A)
    assert queued.status_code == 403
    assert "Not allowed to deactivate image in status &#x27;queued&#x27;" in queued.text
    upload(client, image)
    assert client.post(f"{actions}/deactivate", headers=A).status_code == 204
    assert client.post(f"{actions}/deactivate", headers=ADMIN).status_code == 204
    assert client.get(image["self"], headers=A).json()["status"] == "deactivated"
    forbidden = client.get(image["file"], headers=A)
    assert forbidden.status_code == 403
    assert "The requested image has been deactivated." in forbidden.text
    assert client.get(image["file"], headers=ADMIN).content == DATA
    assert upload(client, image).status_code == 409
    assert client.post(f"{actions}/reactivate", headers=A).status_code == 204
    assert client.post(f"{actions}/reactivate", headers=A).status_code == 204
    assert client.get(image["file"], headers=A).content == DATA
    assert client.post(f"{actions}/reactivate", headers=READER_A).status_code == 403
    assert client.post(f"{actions}/bogus", headers=A).status_code == 404
    assert client.get(f"{actions}/deactivate", headers=A).status_code == 405


def test_delete_removes_bytes_only_after_commit(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create(client)
    upload(client, image)
    assert store_files(settings) == {image["id"]}
    assert client.delete(image["self"], headers=A).status_code == 204
    # The deletion committed; its job has not run yet, so the bytes are still there.
    assert store_files(settings) == {image["id"]}
    assert asyncio.run(app.state.worker.run_once()) is True
    assert store_files(settings) == set()
    assert asyncio.run(app.state.worker.run_once()) is False
    assert client.get(image["file"], headers=A).status_code == 404
    assert upload(client, image).status_code == 404


def test_image_deleted_during_upload_is_gone(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    image = create(client)

    def body() -> Iterator[bytes]:
        yield DATA[:50_000]
        # Another client deletes the image while the upload streams.
        assert TestClient(app).delete(image["self"], headers=A).status_code == 204
        yield DATA[50_000:]

    response = client.put(image["file"], content=body(), headers={**A, **OCTET})
    assert response.status_code == 410
    assert store_files(settings) == set()


def test_store_failures(app: FastAPI, client: TestClient, settings: Settings) -> None:
    from app.storage.errors import StoreFull, StoreUnavailable

    store = app.state.stores.default
    real_open_writer = store.open_writer

    def failing_with(error: Exception) -> Any:
        async def open_writer(key: str, size_hint: int | None = None) -> Any:
            writer = await real_open_writer(key, size_hint)

            async def write(chunk: Any) -> None:
                raise error

            writer.write = write
            return writer

        return open_writer

    image = create(client)
    store.open_writer = failing_with(StoreFull("disk full"))
    assert upload(client, image).status_code == 413
    store.open_writer = failing_with(StoreUnavailable("backend down"))
    assert upload(client, image).status_code == 503
    assert_queued_without_data(client, image)
    store.open_writer = real_open_writer
    assert_store_clean(client, settings)

    assert upload(client, image).status_code == 204

    def broken_reader(location: str, offset: int = 0, length: int | None = None) -> Any:
        async def chunks() -> Any:
            raise StoreUnavailable("backend down")
            yield b""

        return chunks()

    store.open_reader = broken_reader
    assert client.get(image["file"], headers=A).status_code == 503


def test_a_store_failure_mid_download_is_a_short_read(app: FastAPI, client: TestClient) -> None:
    from app.storage.errors import StoreUnavailable

    store = app.state.stores.default
    image = create(client)
    upload(client, image)

    def half_then_fail(location: str, offset: int = 0, length: int | None = None) -> Any:
        async def chunks() -> Any:
            yield DATA[:1000]
            raise StoreUnavailable("backend went away")

        return chunks()

    store.open_reader = half_then_fail
    with pytest.raises(StoreUnavailable):
        # The test client surfaces the broken stream; a real client sees the connection close
        # before Content-Length bytes arrived.
        client.get(image["file"], headers=A)


def test_upload_leaves_nothing_on_disk_after_a_failed_inspection(
    client: TestClient, settings: Settings
) -> None:
    image = create(client, disk_format="qcow2")
    response = upload(client, image)
    assert response.status_code == 415
    assert "does not match" in response.text
    assert_queued_without_data(client, image)
    assert_store_clean(client, settings)


def test_multipart_form_upload(client: TestClient, settings: Settings) -> None:
    image = create(client)
    response = client.put(
        image["file"],
        files={"file": ("disk.raw", DATA, "application/octet-stream")},
        data={"note": "a form field that is not the image"},
        headers=A,
    )
    assert response.status_code == 204, response.text
    shown = client.get(image["self"], headers=A).json()
    assert shown["checksum"] == hashlib.md5(DATA).hexdigest()
    assert shown["size"] == len(DATA)
    assert client.get(image["file"], headers=A).content == DATA
    assert_store_clean(client, settings)


def form(*parts: tuple[str, str | None, bytes], end: bool = True) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--b0undary\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + (b"--b0undary--\r\n" if end else b"")


@pytest.mark.parametrize(
    "body",
    [
        form(("file", "a.raw", b"aaaa"), ("other", "b.raw", b"bbbb")),
        form(("x", None, b"no file here")),
        form(("file", "a.raw", b"truncated"), end=False),
        b"not multipart at all",
    ],
)
def test_multipart_needs_exactly_one_whole_file(
    client: TestClient, settings: Settings, body: bytes
) -> None:
    image = create(client)
    response = client.put(
        image["file"],
        content=body,
        headers={**A, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 400, response.text
    assert_queued_without_data(client, image)
    assert_store_clean(client, settings)


def test_upload_to_a_chosen_store(settings: Settings, db: Any, tmp_path: Any) -> None:
    from app.config import FileStoreSettings, StorageSettings
    from app.main import create_app

    two_stores = StorageSettings(
        default="fast",
        stores={
            "fast": FileStoreSettings(path=tmp_path / "fast"),
            "cheap": FileStoreSettings(path=tmp_path / "cheap"),
        },
    )
    app = create_app(settings.model_copy(update={"storage": two_stores}), database=db)
    with TestClient(app) as client:
        default, chosen, unknown = create(client), create(client), create(client)
        assert upload(client, default).status_code == 204
        assert upload(client, chosen, **{"X-Image-Meta-Store": "cheap"}).status_code == 204
        refused = upload(client, unknown, **{"X-Image-Meta-Store": "nosuch"})
        assert refused.status_code == 400
        assert "Store for identifier nosuch not found" in refused.text
        assert_queued_without_data(client, unknown)
        for image in (default, chosen):
            assert client.get(image["file"], headers=A).content == DATA
    assert [p.name.split(".")[0] for p in (tmp_path / "fast").glob("*-*")] == [default["id"]]
    assert [p.name.split(".")[0] for p in (tmp_path / "cheap").glob("*-*")] == [chosen["id"]]


def test_scrub_recovers_what_a_crash_leaves(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    from datetime import timedelta

    from app.db.base import utcnow
    from app.images.models import Image
    from app.images.status import ImageStatus

    stalled, recent = create(client), create(client)
    db = app.state.db
    with db.session() as session:
        for image, age in ((stalled, timedelta(hours=30)), (recent, timedelta(minutes=5))):
            row = session.get(Image, image["id"])
            assert row is not None
            row.status = ImageStatus.SAVING  # as a server that died mid-upload leaves it
            row.updated_at = utcnow() - age
            session.add(row)
    staging = settings.data_dir / "images" / "_staging"
    staging.mkdir(parents=True)
    abandoned = staging / f"{stalled['id']}.abc.def"
    abandoned.write_bytes(b"half an image")
    old = time.time() - 30 * 3600
    os.utime(abandoned, (old, old))
    live = staging / f"{recent['id']}.abc.def"
    live.write_bytes(b"still uploading")

    restored, removed = asyncio.run(app.state.data_service.scrub(timedelta(hours=24)))
    assert (restored, removed) == (1, 1)
    assert client.get(stalled["self"], headers=A).json()["status"] == "queued"
    assert client.get(recent["self"], headers=A).json()["status"] == "saving"
    assert not abandoned.exists()
    assert live.exists()
    assert upload(client, stalled).status_code == 204


def test_base64_upload_stores_the_decoded_image(client: TestClient, settings: Settings) -> None:
    """`base64 disk.img | curl -H 'Content-Transfer-Encoding: base64' -T - ...`: what is stored,
    counted and hashed is the image, not its text (76-character lines, as `base64` wraps)."""
    text = base64.encodebytes(DATA)
    image = create(client)
    # Pieces that split quanta and line breaks anywhere.
    pieces = iter([text[:1001], text[1001:1002], text[1002:50_003], text[50_003:]])
    response = upload(client, image, pieces, **{"Content-Transfer-Encoding": "base64"})
    assert response.status_code == 204, response.text
    shown = client.get(image["self"], headers=A).json()
    assert (shown["size"], shown["checksum"]) == (len(DATA), hashlib.md5(DATA).hexdigest())
    assert client.get(image["file"], headers=A).content == DATA
    staged = create(client)
    response = client.put(
        f"/v2/images/{staged['id']}/stage",
        content=base64.b64encode(DATA),
        headers={**A, **OCTET, "Content-Transfer-Encoding": "BASE64"},
    )
    assert response.status_code == 204, response.text
    assert client.get(staged["self"], headers=A).json()["size"] == len(DATA)


@pytest.mark.parametrize(
    "text",
    [
        b"not base64!",  # outside the alphabet
        base64.b64encode(b"ab") + base64.b64encode(b"cd"),  # padding before the end
        [base64.b64encode(b"ab"), base64.b64encode(b"cd")],  # ... of an earlier chunk
        base64.b64encode(DATA)[:-1],  # cut short
    ],
)
def test_invalid_base64_is_refused(
    client: TestClient, settings: Settings, text: bytes | list[bytes]
) -> None:
    image = create(client)
    body = iter(text) if isinstance(text, list) else text
    response = upload(client, image, body, **{"Content-Transfer-Encoding": "base64"})
    assert response.status_code == 400
    assert "not valid base64" in response.text
    assert_queued_without_data(client, image)
    assert_store_clean(client, settings)


def test_transfer_encodings(client: TestClient) -> None:
    image = create(client)
    unknown = upload(client, image, **{"Content-Transfer-Encoding": "quoted-printable"})
    assert unknown.status_code == 400
    assert "Unsupported Content-Transfer-Encoding: quoted-printable" in unknown.text
    assert upload(client, image, **{"Content-Transfer-Encoding": "binary"}).status_code == 204
    assert client.get(image["file"], headers=A).content == DATA
