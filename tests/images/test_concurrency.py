"""Many writers at once: no "database is locked", no lost update, exactly one winner per race.

Runs against whichever database GLINT_TEST_DB names; on SQLite this is what Glance gets wrong
(it answers 500 to a share of concurrent writes).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.config import Settings
from app.context import RequestContext
from app.db.engine import Database
from app.errors import GlintError
from app.images.errors import ImageIdTaken
from app.images.repository import ImageRepository
from app.images.service import ImageService, NewImage, SetAttribute
from app.images.status import ImageStatus
from app.main import create_app

OWNER = RequestContext("project-a", "user-a", frozenset({"member", "reader"}))
WORKERS = 16


@pytest.fixture
def images(settings: Settings, db: Database) -> ImageService:
    service: ImageService = create_app(settings, database=db).state.image_service
    return service


def run_all(work: Any, count: int) -> list[Any]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(work, range(count)))


def test_concurrent_creates_updates_and_reads(images: ImageService) -> None:
    created = run_all(
        lambda i: images.create(OWNER, NewImage(OWNER.project_id, name=f"n{i}", tags=["t"])), 64
    )
    ids = [record.image.id for record in created]

    def mixed(i: int) -> Any:
        image_id = ids[i % len(ids)]
        if i % 3 == 0:
            return asyncio.run(images.update(OWNER, image_id, [SetAttribute(f"p{i}", "v")]))
        if i % 3 == 1:
            images.add_tag(OWNER, image_id, f"tag{i}")
            return None
        return images.get(OWNER, image_id)

    run_all(mixed, 192)
    for record in created:
        shown = images.get(OWNER, record.image.id)
        index = ids.index(record.image.id)
        expected_properties = {f"p{i}" for i in range(192) if i % 3 == 0 and i % 64 == index}
        expected_tags = {"t"} | {f"tag{i}" for i in range(192) if i % 3 == 1 and i % 64 == index}
        assert set(shown.properties) == expected_properties
        assert set(shown.tags) == expected_tags


def test_racing_creates_of_one_id_have_one_winner(images: ImageService) -> None:
    image_id = "2c1b2d6f-0000-4000-8000-00000000abcd"

    def attempt(_: int) -> str:
        try:
            images.create(OWNER, NewImage(OWNER.project_id, id=image_id))
        except ImageIdTaken:
            return "taken"
        return "created"

    outcomes = run_all(attempt, WORKERS)
    assert outcomes.count("created") == 1
    assert outcomes.count("taken") == WORKERS - 1


def test_status_writes_are_compare_and_set(images: ImageService, db: Database) -> None:
    image_id = images.create(
        OWNER, NewImage(OWNER.project_id, disk_format="raw", container_format="bare")
    ).image.id

    def claim(_: int) -> bool:
        with db.session() as session:
            return ImageRepository(session).transition(
                image_id, from_=ImageStatus.QUEUED, to=ImageStatus.SAVING
            )

    assert sorted(run_all(claim, WORKERS)) == [False] * (WORKERS - 1) + [True]
    with db.session() as session:
        image = ImageRepository(session).find(image_id)
        assert image is not None
        assert image.status == ImageStatus.SAVING


def test_concurrent_deletes_delete_once(images: ImageService) -> None:
    image_id = images.create(OWNER, NewImage(OWNER.project_id)).image.id

    def delete(_: int) -> str:
        try:
            images.delete(OWNER, image_id)
        except GlintError as error:
            return str(error.status_code)
        return "deleted"

    outcomes = run_all(delete, 8)
    assert outcomes.count("deleted") == 1
    assert set(outcomes) <= {"deleted", "404", "409"}


def test_racing_changes_to_one_image_all_apply(images: ImageService) -> None:
    image_id = images.create(OWNER, NewImage(OWNER.project_id)).image.id

    def change(i: int) -> None:
        images.add_tag(OWNER, image_id, "same")
        images.add_tag(OWNER, image_id, f"t{i}")
        asyncio.run(images.update(OWNER, image_id, [SetAttribute("shared", str(i))]))
        asyncio.run(images.update(OWNER, image_id, [SetAttribute(f"p{i}", "v")]))

    run_all(change, WORKERS)
    shown = images.get(OWNER, image_id)
    assert sorted(shown.tags) == sorted(["same", *(f"t{i}" for i in range(WORKERS))])
    assert set(shown.properties) == {"shared", *(f"p{i}" for i in range(WORKERS))}
