"""Background handlers for images, run by app.jobs.worker."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, delete
from starlette.concurrency import run_in_threadpool

from app.db.engine import Database
from app.images.models import ImageLocation
from app.images.service import DELETE_DATA_JOB
from app.jobs.worker import Handler
from app.storage.registry import StoreRegistry


def handlers(db: Database, stores: StoreRegistry) -> dict[str, Handler]:
    async def delete_image_data(payload: dict[str, Any]) -> None:
        """Removes a deleted image's bytes from every store (deleting is idempotent, so a
        retried job is harmless), then forgets the locations."""
        for url in payload["locations"]:
            await stores.for_location(url).delete(url)

        def forget() -> None:
            with db.session() as session:
                session.execute(
                    delete(ImageLocation).where(col(ImageLocation.image_id) == payload["image_id"])
                )

        await run_in_threadpool(forget)

    return {DELETE_DATA_JOB: delete_image_data}
