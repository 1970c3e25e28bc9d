"""Background handlers for images, run by app.jobs.worker."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from sqlmodel import col, delete

from app.db.engine import Database
from app.images.models import ImageLocation
from app.images.service import DELETE_DATA_JOB
from app.images.uploads import DISCARD_UPLOAD_JOB
from app.jobs.worker import Handler
from app.storage.registry import StoreRegistry


def handlers(db: Database, stores: StoreRegistry) -> dict[str, Handler]:
    async def discard_upload(payload: dict[str, Any]) -> None:
        """Removes what an upload that will never finish wrote (idempotent, like every
        handler: a retried job is harmless)."""
        await stores.get(payload["store_id"]).discard(payload["key"])

    async def delete_image_data(payload: dict[str, Any]) -> None:
        """Removes a deleted image's bytes from every store, and any upload's partial bytes,
        then forgets the locations."""
        for url in payload["locations"]:
            await stores.for_location(url).delete(url)
        for partial in payload.get("partial", []):
            await discard_upload(partial)

        def forget() -> None:
            with db.session() as session:
                session.execute(
                    delete(ImageLocation).where(col(ImageLocation.image_id) == payload["image_id"])
                )

        await to_thread.run_sync(forget)

    return {DELETE_DATA_JOB: delete_image_data, DISCARD_UPLOAD_JOB: discard_upload}
