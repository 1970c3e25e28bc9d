"""Background handlers for images, run by app.jobs.worker."""

from __future__ import annotations

import functools
import logging
from typing import Any

from anyio import to_thread
from sqlmodel import col, delete

from app.config import LimitSettings
from app.db.engine import Database
from app.errors import GlintError
from app.images.ingest import HASH_ALGORITHM, Expectations, IngestFacts, ingest
from app.images.locations import redact
from app.images.models import ImageLocation
from app.images.repository import ImageRepository
from app.images.service import ADD_LOCATION_JOB, DELETE_DATA_JOB, DELETE_LOCATION_JOB
from app.images.status import ImageStatus
from app.images.uploads import CLEARED_DATA_FACTS, DISCARD_UPLOAD_JOB
from app.jobs.worker import Handler
from app.storage.base import Capability
from app.storage.errors import StoreError, UnknownStore
from app.storage.registry import StoreRegistry

log = logging.getLogger(__name__)


def handlers(db: Database, stores: StoreRegistry, limits: LimitSettings) -> dict[str, Handler]:
    async def discard_upload(payload: dict[str, Any]) -> None:
        """Removes what an upload that will never finish wrote (idempotent, like every
        handler: a retried job is harmless)."""
        await stores.get(payload["store_id"]).discard(payload["key"])

    async def delete_object(url: str) -> None:
        """Deletes the bytes at `url`, unless they stay where they are (a read-only store)
        or no configured store holds them any more."""
        try:
            store = stores.for_location(url)
        except UnknownStore:
            log.warning("no configured store holds a location of a deleted image; kept")
            return
        if Capability.DELETE in store.capabilities:
            await store.delete(url)

    def referenced(
        url: str, *, location_id: int | None = None, image_id: str | None = None
    ) -> bool:
        with db.session(write=False) as session:
            return ImageRepository(session).is_referenced(
                url, besides_location=location_id, besides_image=image_id
            )

    async def delete_image_data(payload: dict[str, Any]) -> None:
        """Removes a deleted image's bytes from every store, and any upload's partial bytes,
        then forgets the locations. Bytes another image's location names stay (a client may
        have given that location to both)."""
        for url in payload["locations"]:
            kept = functools.partial(referenced, url, image_id=payload["image_id"])
            if not await to_thread.run_sync(kept):
                await delete_object(url)
        for partial in payload.get("partial", []):
            await discard_upload(partial)

        def forget() -> None:
            with db.session() as session:
                session.execute(
                    delete(ImageLocation).where(col(ImageLocation.image_id) == payload["image_id"])
                )

        await to_thread.run_sync(forget)

    async def delete_location(payload: dict[str, Any]) -> None:
        """Removes the bytes of a location that left its image (unless another location
        still names them), then the location."""
        location_id = payload["location_id"]

        def find() -> ImageLocation | None:
            with db.session(write=False) as session:
                return ImageRepository(session).find_location(location_id)

        row = await to_thread.run_sync(find)
        if row is None:
            return
        if not await to_thread.run_sync(lambda: referenced(row.url, location_id=location_id)):
            await delete_object(row.url)

        def forget() -> None:
            with db.session() as session:
                session.execute(delete(ImageLocation).where(col(ImageLocation.id) == location_id))

        await to_thread.run_sync(forget)

    async def add_location(payload: dict[str, Any]) -> None:
        """Hashes the bytes at a location given to an `importing` image: the image becomes
        `active` with that location and the data's facts, or `queued` again when they cannot
        be read or do not match the validation data."""
        image_id, url = payload["image_id"], payload["url"]
        validation: dict[str, str] = payload["validation_data"]
        store_id = None
        try:
            store = stores.for_location(url)
            store_id = store.store_id
            facts = await ingest(
                store.open_reader(url),
                [],
                size_cap=limits.image_size_cap,
                expect=Expectations(hash_value=validation.get("os_hash_value")),
                hash_algorithm=validation.get("os_hash_algo", HASH_ALGORITHM),
            )
        except (GlintError, StoreError) as error:
            log.warning(
                "the location given to image %s (store %s) could not be used: %s",
                image_id,
                store_id,
                redact(error, url),
            )
            await to_thread.run_sync(lambda: requeue(image_id))
            return
        await to_thread.run_sync(lambda: activate(image_id, store.store_id, url, facts))

    def requeue(image_id: str) -> None:
        with db.session() as session:
            ImageRepository(session, lock=True).transition(
                image_id, from_=ImageStatus.IMPORTING, to=ImageStatus.QUEUED, **CLEARED_DATA_FACTS
            )

    def activate(image_id: str, store_id: str, url: str, facts: IngestFacts) -> None:
        with db.session() as session:
            # Not importing any more: the image was deleted meanwhile, and keeps nothing.
            if ImageRepository(session, lock=True).transition(
                image_id,
                from_=ImageStatus.IMPORTING,
                to=ImageStatus.ACTIVE,
                size=facts.size,
                checksum=facts.checksum,
                os_hash_algo=facts.hash_algo,
                os_hash_value=facts.hash_value,
            ):
                session.add(ImageLocation(image_id=image_id, store_id=store_id, url=url))

    return {
        DELETE_DATA_JOB: delete_image_data,
        DISCARD_UPLOAD_JOB: discard_upload,
        DELETE_LOCATION_JOB: delete_location,
        ADD_LOCATION_JOB: add_location,
    }
