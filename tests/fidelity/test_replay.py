"""Replays whole recorded Glance sessions against Glint, in order, and compares every answer.

The recording created its images off-camera; `seed` recreates them with the same ids and the
state the first recorded answer shows (data fields, and a location in the `fast` store for an
image with data). The app has the recording's two file stores (tests/fidelity/conftest.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.engine import Database
from app.images.models import Image, ImageLocation
from app.images.repository import ImageRecord, ImageRepository
from app.images.status import ImageStatus
from tests.fidelity.samples import Exchange, exchanges

RAW = {"disk_format": "raw", "container_format": "bare"}
# The data facts the recording's 100,000-byte uploads left on its images.
HASHED = {
    "size": 100000,
    "virtual_size": 100000,
    "checksum": "f103b7a4ba9aee76332824911c770c0c",
    "os_hash_algo": "sha512",
    "os_hash_value": "f9e8656df079fdf7a18468b4022f47eefa0258522054b2eb4e3098649d02145863febba634"
    "f179badfde625d4cec1ce62bc425ce31caec2c7c99cc78a864a637",
}


def seed(
    db: Database,
    image_id: str,
    *,
    properties: dict[str, str] | None = None,
    tags: list[str] | None = None,
    created_at: str | None = None,
    updated_at: str | None = None,
    **fields: Any,
) -> None:
    fields.setdefault("owner", "project-a")
    fields.setdefault("visibility", "shared")
    if created_at:
        fields["created_at"] = datetime.fromisoformat(created_at.rstrip("Z"))
        fields["updated_at"] = datetime.fromisoformat((updated_at or created_at).rstrip("Z"))
    with db.session() as session:
        ImageRepository(session).add(
            ImageRecord(Image(id=image_id, **fields), properties or {}, tags or [])
        )
        if fields.get("size"):
            # Where the recording's upload put the data (never read by these sessions).
            url = f"file:///seeded/{image_id}"
            session.add(ImageLocation(image_id=image_id, store_id="fast", url=url))


_CORE = (
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "protected",
    "min_ram",
    "min_disk",
    "owner",
    "os_hidden",
)


def seed_recorded(db: Database, file_name: str, title: str) -> None:
    """An image another recorded session created, as Glance answered its creation."""
    image = json.loads(exchanges(file_name)[title].response_body)
    seed(
        db,
        image["id"],
        created_at=image["created_at"],
        updated_at=image["updated_at"],
        tags=image["tags"],
        **{key: image[key] for key in _CORE},
    )


def _comparable(value: Any, *, keep_times: bool) -> Any:
    if isinstance(value, dict):
        return {
            key: (sorted(item) if key == "tags" else _comparable(item, keep_times=keep_times))
            for key, item in value.items()
            if keep_times or key not in ("created_at", "updated_at")
        }
    if isinstance(value, list):
        return [_comparable(item, keep_times=keep_times) for item in value]
    return value


def replay(
    client: TestClient, file_name: str, *, skip: tuple[str, ...] = (), keep_times: bool = False
) -> int:
    compared = 0
    for title, sample in exchanges(file_name).items():
        if title in skip:
            continue
        response = client.request(
            sample.method, sample.path, headers=sample.headers, content=sample.body
        )
        assert response.status_code == sample.status, (title, response.text)
        _assert_same_body(sample, response.text, keep_times=keep_times)
        compared += 1
    return compared


def _assert_same_body(sample: Exchange, body: str, *, keep_times: bool) -> None:
    expected = sample.response_body
    if expected.startswith("{"):
        ours = _comparable(json.loads(body), keep_times=keep_times)
        theirs = _comparable(json.loads(expected), keep_times=keep_times)
        assert ours == theirs, sample.title
    else:
        assert body == expected, sample.title


def test_patch_session(client: TestClient, db: Database) -> None:
    seed(
        db,
        "52f03502-29e7-4ed1-8b07-2c1e2f9559bc",
        name="patch-me",
        disk_format="raw",
        container_format="bare",
        properties={"foo": "bar"},
    )
    assert replay(client, "05-patch-image.txt") == 24


def test_tags_session(client: TestClient, db: Database) -> None:
    seed(db, "30581f88-6ccb-46ab-959a-b6043a999972", name="tag-me")
    assert replay(client, "08-tags.txt") == 10


def test_delete_session(client: TestClient, db: Database) -> None:
    seed(db, "e19ec047-d6a5-4c90-9d9b-06d655ee7af7", name="delete-me")
    seed(db, "10c3a7a0-18e8-49d4-a7a5-d8447e797101", name="protected-one", protected=True)
    seed(
        db,
        "2a61354a-aea6-4cfa-b9fe-75618b44c195",
        name="deactivated",
        status=ImageStatus.DEACTIVATED,
        **RAW,
        **HASHED,
    )
    # Image data arrives with the data API; its 404 is covered there.
    assert replay(client, "11-delete.txt", skip=("download after delete -> 404",)) == 13


def test_members_session(client: TestClient, db: Database) -> None:
    # The recording's database still held these two from earlier sessions.
    seed_recorded(db, "02-create-image.txt", "visibility public as admin -> 201")
    seed_recorded(
        db, "01-auth-noauth-headers.txt", "admin can create an image owned by another project"
    )
    seed(db, "583e0f4a-c2ef-4f9b-a7b7-571a174897e8", name="private-one", visibility="private")
    seed(
        db,
        "57e47579-2580-41a1-bfc2-ac3099873ee0",
        name="share-me",
        status=ImageStatus.ACTIVE,
        **RAW,
        **HASHED,
    )
    assert replay(client, "09-members.txt", skip=("B can download (accepted member)",)) == 31


@pytest.fixture
def list_images(db: Database) -> None:
    for number, image_id, visibility, flavour, created, updated in (
        (1, "3b43d87f-ae46-40e9-8684-ec9897ceb2fe", "private", "f1", "14:52:36", "14:52:36"),
        (2, "cdfb2e81-c179-4d8a-b7c3-58be402d0b9e", "private", "f0", "14:52:37", "14:52:37"),
        (3, "66f27f3f-fd07-4dc3-b3d9-a81f6990c187", "private", "f1", "14:52:39", "14:52:42"),
        (4, "977ac958-5819-4b8e-95e3-03c0d19ed337", "shared", "f0", "14:52:40", "14:52:42"),
        (5, "b6f038c3-6887-4d4e-bc32-7118c009bdb2", "shared", "f1", "14:52:41", "14:52:41"),
    ):
        data = {**HASHED, "status": ImageStatus.ACTIVE} if number == 3 else {}
        seed(
            db,
            image_id,
            name=f"list-{number}",
            visibility=visibility,
            properties={"flavour": flavour},
            tags=["listtag", f"n{number}", *(["extra"] if number == 4 else [])],
            created_at=f"2026-11-24T{created}Z",
            updated_at=f"2026-11-24T{updated}Z",
            **RAW,
            **data,
        )


@pytest.mark.usefixtures("list_images")
def test_list_session(client: TestClient) -> None:
    # Glance's `first` (and `next`) keep only the last of repeated parameters, so following
    # its links drops all but one `tag` filter; Glint keeps them all (checked below).
    two_tags = "two tag filters (AND)"
    assert replay(client, "04-list-images.txt", skip=(two_tags,), keep_times=True) == 28
    sample = exchanges("04-list-images.txt")[two_tags]
    response = client.get(sample.path, headers=sample.headers)
    expected = json.loads(sample.response_body)
    assert _comparable(response.json()["images"], keep_times=True) == _comparable(
        expected["images"], keep_times=True
    )
    assert response.json()["first"] == "/v2/images?tag=listtag&tag=n4"
