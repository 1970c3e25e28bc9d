"""Image locations: JSON-patch of `/locations` (show_multiple_locations), `locations` and
`direct_url` on images, and the add/get location API, with Glance's codes and messages.

Clients point images at data in a test-only memory store (`mem://`), which stands in for a store
such as the http store whose objects stay where they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import LimitSettings, LocationSettings, Settings
from app.db.engine import Database
from app.main import create_app
from app.storage.registry import StoreRegistry
from tests.identities import ADMIN, PATCH_V21, READER_A, A, B, identity
from tests.memory_store import MemoryStore, with_stores

DATA = os.urandom(50_000)
OTHER = os.urandom(20_000)
# Nova acting for a user of project-a, with its service role.
SERVICE = identity("project-a", "service,member,reader", "nova")
VALIDATION = {
    "checksum": hashlib.md5(DATA).hexdigest(),
    "os_hash_algo": "sha512",
    "os_hash_value": hashlib.sha512(DATA).hexdigest(),
}


@pytest.fixture
def web() -> MemoryStore:
    """Read-only, as an http store is."""
    return MemoryStore("web")


@pytest.fixture
def bucket() -> MemoryStore:
    """Writable and deletable, as a swift or s3 store is."""
    return MemoryStore("bucket", writable=True)


def build(settings: Settings, db: Database, *extra: MemoryStore, quota: int = 10) -> FastAPI:
    settings = settings.model_copy(
        update={
            "locations": LocationSettings(show_multiple_locations=True, show_image_direct_url=True),
            "limits": LimitSettings(image_location_quota=quota),
        }
    )
    stores = StoreRegistry.from_settings(settings.storage, settings.data_dir)
    return create_app(settings, database=db, stores=with_stores(stores, *extra))


@pytest.fixture
def app(settings: Settings, db: Database, web: MemoryStore, bucket: MemoryStore) -> FastAPI:
    return build(settings, db, web, bucket)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def create(client: TestClient, headers: dict[str, str] = A) -> dict[str, Any]:
    body = {"disk_format": "raw", "container_format": "bare"}
    response = client.post("/v2/images", json=body, headers=headers)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def patch(
    client: TestClient, image: dict[str, Any], operations: list[Any], headers: dict[str, str] = A
) -> Any:
    return client.patch(
        image["self"],
        content=json.dumps(operations),
        headers={**headers, "Content-Type": PATCH_V21},
    )


def add(url: str, position: str = "-", **location: Any) -> dict[str, Any]:
    return {
        "op": "add",
        "path": f"/locations/{position}",
        "value": {"url": url, "metadata": {}, **location},
    }


def run_jobs(app: FastAPI) -> None:
    while asyncio.run(app.state.worker.run_once()):
        pass


def test_adding_a_location_to_a_queued_image_activates_it(
    client: TestClient, web: MemoryStore
) -> None:
    url = web.put("a.raw", DATA)
    image = create(client)
    assert (image["locations"], "direct_url" in image) == ([], False)
    response = patch(
        client, image, [add(url, metadata={"note": "mirror"}, validation_data=VALIDATION)]
    )
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["status"] == "active"
    assert shown["size"] == len(DATA)
    assert (shown["checksum"], shown["os_hash_value"]) == (
        VALIDATION["checksum"],
        VALIDATION["os_hash_value"],
    )
    assert shown["locations"] == [{"url": url, "metadata": {"note": "mirror"}}]
    assert shown["direct_url"] == url
    assert client.get(image["self"], headers=A).json() == shown
    download = client.get(image["file"], headers=A)
    assert (download.status_code, download.content) == (200, DATA)


def test_locations_keep_their_order(client: TestClient, web: MemoryStore) -> None:
    first, second, third = (web.put(name, DATA) for name in ("1", "2", "3"))
    image = create(client)
    assert patch(client, image, [add(first), add(third), add(second, "1")]).status_code == 200
    shown = client.get(image["self"], headers=A).json()
    assert [location["url"] for location in shown["locations"]] == [first, second, third]
    # The first of equally heavy stores' locations.
    assert shown["direct_url"] == first


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mem://web/missing", "Invalid location"),
        ("file:///etc/passwd", "Invalid location"),
        ("swift+config://ref/container/object", "Invalid location"),
        ("nosuch://host/object", "Invalid location"),
        ("mem://elsewhere/a.raw", "Invalid location"),
    ],
)
def test_locations_no_configured_store_holds_are_refused(
    client: TestClient, url: str, message: str
) -> None:
    image = create(client)
    response = patch(client, image, [add(url)])
    assert response.status_code == 400, response.text
    assert message in response.text
    assert client.get(image["self"], headers=A).json()["status"] == "queued"


def test_an_empty_object_is_no_location(client: TestClient, web: MemoryStore) -> None:
    image = create(client)
    assert patch(client, image, [add(web.put("empty", b""))]).status_code == 400


def test_duplicate_and_badly_placed_locations(client: TestClient, web: MemoryStore) -> None:
    url = web.put("a.raw", DATA)
    image = create(client)
    assert patch(client, image, [add(url)]).status_code == 200
    duplicate = patch(client, image, [add(url)])
    assert duplicate.status_code == 400
    assert f"The location {url} already exists" in duplicate.text
    # The same URL with other metadata is another location, as in Glance.
    assert patch(client, image, [add(url, metadata={"a": "b"})]).status_code == 200
    misplaced = patch(client, image, [add(web.put("b", DATA), "x")])
    assert misplaced.status_code == 400
    assert "Invalid position for adding a location." in misplaced.text


def test_the_location_quota(settings: Settings, db: Database, web: MemoryStore) -> None:
    with TestClient(build(settings, db, web, quota=2)) as client:
        image = create(client)
        urls = [web.put(str(n), DATA) for n in range(3)]
        assert patch(client, image, [add(urls[0]), add(urls[1])]).status_code == 200
        response = patch(client, image, [add(urls[2])])
        assert response.status_code == 413
        assert "allowed image locations. Attempted: 3, Maximum: 2" in response.text
        replaced = patch(
            client,
            image,
            [{"op": "replace", "path": "/locations", "value": [add(u)["value"] for u in urls]}],
        )
        assert replaced.status_code == 413


def test_locations_change_only_in_queued_or_active_images(
    client: TestClient, web: MemoryStore
) -> None:
    image = create(client)
    assert patch(client, image, [add(web.put("a", DATA))]).status_code == 200
    assert client.post(f"{image['self']}/actions/deactivate", headers=A).status_code == 204
    response = patch(client, image, [add(web.put("b", DATA))])
    assert response.status_code == 409
    assert "It&#x27;s not allowed to add locations if image status is deactivated." in response.text
    removal = patch(client, image, [{"op": "remove", "path": "/locations/0"}], ADMIN)
    assert removal.status_code == 409
    assert "remove locations if image status is deactivated" in removal.text


def test_validation_data_rules(client: TestClient, web: MemoryStore) -> None:
    url = web.put("a", DATA)
    queued = create(client)
    wrong_algorithm = {**VALIDATION, "os_hash_algo": "sha256"}
    response = patch(client, queued, [add(url, validation_data=wrong_algorithm)])
    assert response.status_code == 409
    assert "os_hash_algo must be sha512, not sha256" in response.text
    short = {**VALIDATION, "os_hash_value": "ab"}
    response = patch(client, queued, [add(url, validation_data=short)])
    assert response.status_code == 409
    assert "is not the correct size for sha512 (should be 64 bytes)" in response.text
    assert patch(client, queued, [add(url, validation_data=VALIDATION)]).status_code == 200
    other = {**VALIDATION, "checksum": hashlib.md5(b"other").hexdigest()}
    response = patch(client, queued, [add(web.put("b", DATA), validation_data=other)])
    assert response.status_code == 409
    assert "checksum is already set with a different value" in response.text
    # Values that match what the image has are accepted on an active image.
    assert (
        patch(client, queued, [add(web.put("c", DATA), validation_data=VALIDATION)]).status_code
        == 200
    )


def test_removing_locations(app: FastAPI, client: TestClient, bucket: MemoryStore) -> None:
    kept, removed = bucket.put("kept", DATA), bucket.put("removed", DATA)
    image = create(client)
    assert patch(client, image, [add(removed), add(kept)]).status_code == 200
    remove = [{"op": "remove", "path": "/locations/0"}]
    owner = patch(client, image, remove)
    assert owner.status_code == 403
    assert "You are not authorized to complete delete_image_location action." in owner.text
    out_of_range = patch(client, image, [{"op": "remove", "path": "/locations/5"}], ADMIN)
    assert out_of_range.status_code == 400
    assert "Invalid position for removing a location." in out_of_range.text
    response = patch(client, image, remove, ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["locations"] == [{"url": kept, "metadata": {}}]
    # The bytes go once the change committed, by a job.
    assert removed in bucket.objects
    run_jobs(app)
    assert removed not in bucket.objects
    assert kept in bucket.objects
    last = patch(client, image, [{"op": "remove", "path": "/locations/-"}], ADMIN)
    assert last.status_code == 403
    assert "Cannot remove last location in the image." in last.text


def test_bytes_another_image_names_are_kept(
    app: FastAPI, client: TestClient, bucket: MemoryStore
) -> None:
    shared = bucket.put("shared", DATA)
    mine, theirs = create(client), create(client, B)
    assert patch(client, mine, [add(shared)]).status_code == 200
    assert patch(client, theirs, [add(shared)], B).status_code == 200
    assert client.delete(mine["self"], headers=A).status_code == 204
    run_jobs(app)
    assert shared in bucket.objects
    assert client.get(theirs["file"], headers=B).content == DATA
    assert client.delete(theirs["self"], headers=B).status_code == 204
    run_jobs(app)
    assert shared not in bucket.objects


def test_read_only_stores_keep_their_bytes(
    app: FastAPI, client: TestClient, web: MemoryStore
) -> None:
    url = web.put("a", DATA)
    image = create(client)
    assert patch(client, image, [add(url)]).status_code == 200
    assert client.delete(image["self"], headers=A).status_code == 204
    run_jobs(app)
    assert url in web.objects


def test_replacing_locations(client: TestClient, web: MemoryStore) -> None:
    one, two = web.put("1", DATA), web.put("2", DATA)
    image = create(client)
    empty = patch(client, image, [{"op": "replace", "path": "/locations", "value": []}])
    assert empty.status_code == 403
    assert "Cannot set locations to empty list." in empty.text
    values = [{"url": one, "metadata": {}}, {"url": two, "metadata": {}}]
    replaced = patch(client, image, [{"op": "replace", "path": "/locations", "value": values}])
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["status"] == "active"
    # The same URLs: new metadata and order.
    values = [{"url": two, "metadata": {"k": "v"}}, {"url": one, "metadata": {}}]
    reordered = patch(client, image, [{"op": "replace", "path": "/locations", "value": values}])
    assert reordered.status_code == 200
    assert reordered.json()["locations"] == values
    other = [{"url": web.put("3", DATA), "metadata": {}}]
    refused = patch(client, image, [{"op": "replace", "path": "/locations", "value": other}])
    assert refused.status_code == 400
    assert "Original locations is not empty" in refused.text


def test_locations_need_the_option(settings: Settings, db: Database, web: MemoryStore) -> None:
    stores = StoreRegistry.from_settings(settings.storage, settings.data_dir)
    app = create_app(settings, database=db, stores=with_stores(stores, web))
    with TestClient(app) as client:
        image = create(client)
        assert "locations" not in image
        assert "direct_url" not in image
        for operation, message in (
            (add(web.put("a", DATA)), "add locations if locations are invisible"),
            ({"op": "replace", "path": "/locations", "value": [add("x")["value"]]}, "update"),
        ):
            response = patch(client, image, [operation])
            assert response.status_code == 403
            assert message in response.text
        assert web.objects  # and no store was asked anything for a refused change


def test_non_owners_cannot_change_locations(client: TestClient, web: MemoryStore) -> None:
    image = create(client)
    assert patch(client, image, [add(web.put("a", DATA))], B).status_code == 404
    reader = patch(client, image, [add(web.put("b", DATA))], READER_A)
    assert reader.status_code == 403
    assert "set_image_location" in reader.text


# --- the add/get location API ------------------------------------------------------------------


def post_location(
    client: TestClient, image: dict[str, Any], body: dict[str, Any], headers: dict[str, str] = A
) -> Any:
    return client.post(f"{image['self']}/locations", json=body, headers=headers)


def test_add_location_hashes_the_data_in_the_background(
    app: FastAPI, client: TestClient, web: MemoryStore
) -> None:
    url = web.put("a", DATA)
    image = create(client)
    body = {
        "url": url,
        "validation_data": {"os_hash_algo": "sha512", "os_hash_value": VALIDATION["os_hash_value"]},
    }
    response = post_location(client, image, body)
    assert (response.status_code, response.content) == (202, b"")
    assert client.get(image["self"], headers=A).json()["status"] == "importing"
    assert post_location(client, image, body).status_code == 409
    run_jobs(app)
    shown = client.get(image["self"], headers=A).json()
    assert shown["status"] == "active"
    assert (shown["size"], shown["checksum"], shown["os_hash_value"]) == (
        len(DATA),
        VALIDATION["checksum"],
        VALIDATION["os_hash_value"],
    )
    assert client.get(image["file"], headers=A).content == DATA
    listed = client.get(f"{image['self']}/locations", headers=SERVICE)
    assert listed.status_code == 200
    assert listed.json() == [{"url": url, "metadata": {}}]
    refused = client.get(f"{image['self']}/locations", headers=A)
    assert refused.status_code == 403
    assert "fetch_image_location" in refused.text


def test_add_location_with_another_algorithm(
    app: FastAPI, client: TestClient, web: MemoryStore
) -> None:
    image = create(client)
    digest = hashlib.sha256(DATA).hexdigest()
    body = {
        "url": web.put("a", DATA),
        "validation_data": {"os_hash_algo": "sha256", "os_hash_value": digest},
    }
    assert post_location(client, image, body).status_code == 202
    run_jobs(app)
    shown = client.get(image["self"], headers=A).json()
    assert (shown["status"], shown["os_hash_algo"], shown["os_hash_value"]) == (
        "active",
        "sha256",
        digest,
    )


@pytest.mark.parametrize(
    "validation_data",
    [{"os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(OTHER).hexdigest()}, None],
)
def test_data_that_does_not_match_or_is_gone_requeues_the_image(
    app: FastAPI, client: TestClient, web: MemoryStore, validation_data: Any
) -> None:
    url = web.put("a", DATA)
    image = create(client)
    body: dict[str, Any] = {"url": url}
    if validation_data is not None:
        body["validation_data"] = validation_data
    else:
        web.objects.clear()  # gone before the job reads it
    assert post_location(client, image, body).status_code == 202
    run_jobs(app)
    shown = client.get(image["self"], headers=A).json()
    assert (shown["status"], shown["checksum"], shown["locations"]) == ("queued", None, [])


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"url": "mem://bucket/a"}, A, 403, "http store must be enabled"),
        ({"url": "file:///etc/passwd"}, A, 403, "http store must be enabled"),
        ({"url": "file:///etc/passwd"}, SERVICE, 400, "Invalid location"),
        ({"url": "mem://web/a"}, READER_A, 403, "add_image_location"),
        (
            {
                "url": "mem://web/a",
                "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "zz"},
            },
            A,
            400,
            "os_hash_value (zz) is not a valid hexadecimal value",
        ),
        (
            {
                "url": "mem://web/a",
                "validation_data": {"os_hash_algo": "md5", "os_hash_value": "ab"},
            },
            A,
            400,
            "is not the correct size for (md5) (should be (16) bytes)",
        ),
        (
            {"url": "mem://web/a", "validation_data": {"os_hash_algo": "sha512"}},
            A,
            400,
            "dependency",
        ),
        ({"validation_data": {}}, A, 400, "&#x27;url&#x27; is a required property"),
    ],
)
def test_add_location_refusals(
    client: TestClient,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    image = create(client)
    response = post_location(client, image, body, headers)
    assert response.status_code == status, response.text
    assert message in response.text
    assert client.get(image["self"], headers=A).json()["status"] == "queued"


def test_services_may_name_any_store(app: FastAPI, client: TestClient, bucket: MemoryStore) -> None:
    image = create(client)
    assert post_location(client, image, {"url": bucket.put("a", DATA)}, SERVICE).status_code == 202
    run_jobs(app)
    assert client.get(image["self"], headers=A).json()["status"] == "active"


def test_add_location_needs_a_queued_image(client: TestClient, web: MemoryStore) -> None:
    image = create(client)
    assert patch(client, image, [add(web.put("a", DATA))]).status_code == 200
    response = post_location(client, image, {"url": web.put("b", DATA)})
    assert response.status_code == 409
    assert "not allowed to add locations if image status is active" in response.text
    assert (
        post_location(client, {"self": "/v2/images/" + "0" * 36}, {"url": "x"}).status_code == 404
    )
