"""Upload leases: an upload in progress holds a lease on its image, so none stays stuck.

The lease is taken in the transaction that moves the image into its upload status (`saving`,
later `uploading` for stage), renewed while the bytes flow and dropped in the transaction that
ends the upload. Its row names the object being written, so whoever ends an upload that cannot
end itself (the image was deleted, or the uploading process died and its lease ran out) can
remove the partial bytes: a durable job does it, after the change that orphaned them committed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from anyio import to_thread
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from app.db.base import utcnow
from app.db.engine import Database
from app.errors import Conflict, GlintError
from app.images.ingest import IngestFacts
from app.images.models import Image, ImageStaging, ImageUpload
from app.images.repository import ImageRepository
from app.images.status import ImageStatus
from app.jobs.queue import enqueue

log = logging.getLogger(__name__)

T = TypeVar("T")

DISCARD_UPLOAD_JOB = "image.discard_upload"
# What an image that goes back to `queued` must not keep from the data it did not get.
CLEARED_DATA_FACTS: dict[str, Any] = {
    "size": None,
    "virtual_size": None,
    "checksum": None,
    "os_hash_algo": None,
    "os_hash_value": None,
}


class ImageGone(GlintError):
    status_code = 410

    def __init__(self, image_id: str):
        super().__init__(
            f"Image {image_id} could not be found after upload. "
            "The image may have been deleted during the upload."
        )


class UploadLeaseLost(Conflict):
    def __init__(self, image_id: str, lease_seconds: float):
        super().__init__(
            f"The upload to image {image_id} stopped renewing its lease for more than "
            f"{lease_seconds:g} seconds and was reset; upload the data again."
        )


@dataclass(frozen=True)
class UploadLease:
    image_id: str
    status: ImageStatus  # the status the upload holds the image in
    store_id: str
    object_key: str
    holder: str  # this attempt's token: only its holder renews or releases a lease


def _lease_of(row: ImageUpload) -> UploadLease:
    return UploadLease(
        image_id=row.image_id,
        status=row.status,
        store_id=row.store_id,
        object_key=row.object_key,
        holder=row.holder,
    )


def _ours(lease: UploadLease) -> list[ColumnElement[bool]]:
    """The lease row, as long as it is still this upload's."""
    return [col(ImageUpload.image_id) == lease.image_id, col(ImageUpload.holder) == lease.holder]


def _one_row(result: Any) -> bool:
    return bool(getattr(result, "rowcount", 0) == 1)


def _requeue(session: Session, image_id: str, status: ImageStatus) -> bool:
    """The image back to `queued`, without the facts of data it did not get."""
    return ImageRepository(session).transition(
        image_id, from_=status, to=ImageStatus.QUEUED, **CLEARED_DATA_FACTS
    )


def discard_payload(store_id: str, object_key: str, image_id: str) -> dict[str, str]:
    # The image id only says what the job is about (its log lines name the image).
    return {"store_id": store_id, "key": object_key, "image_id": image_id}


def staging_row(image_id: str, store_id: str, object_key: str, facts: IngestFacts) -> ImageStaging:
    """The record of data staged under `object_key`, with what was measured as it arrived."""
    return ImageStaging(
        image_id=image_id,
        store_id=store_id,
        object_key=object_key,
        url=facts.stored[0].location,
        size=facts.size,
        checksum=facts.checksum,
        os_hash_algo=facts.hash_algo,
        os_hash_value=facts.hash_value,
        virtual_size=facts.virtual_size,
        format_problem=facts.format_problem,
    )


def release_staged(session: Session, image_id: str) -> dict[str, str] | None:
    """Forgets the data staged for `image_id`; the payload of the job that removes it, to be
    enqueued in the same transaction, or None when nothing was staged."""
    staged = session.get(ImageStaging, image_id, with_for_update=True)
    if staged is None:
        return None
    session.delete(staged)
    return discard_payload(staged.store_id, staged.object_key, image_id)


class UploadLeases:
    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float,
        on_job_enqueued: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.lease_seconds = lease_seconds
        self.on_job_enqueued = on_job_enqueued

    def _until(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease_seconds)

    # --- inside the caller's transaction --------------------------------------------------

    def take(
        self, session: Session, image_id: str, status: ImageStatus, store_id: str
    ) -> UploadLease:
        """A lease for an upload that moved `image_id` into `status` in this transaction."""
        lease = UploadLease(
            image_id=image_id,
            status=status,
            store_id=store_id,
            # A fresh object per attempt: leftovers of one attempt can never block the next.
            object_key=f"{image_id}.{secrets.token_hex(6)}",
            holder=uuid.uuid4().hex,
        )
        session.add(
            ImageUpload(
                image_id=image_id,
                status=status,
                store_id=store_id,
                object_key=lease.object_key,
                holder=lease.holder,
                lease_until=self._until(),
            )
        )
        session.flush()
        return lease

    @staticmethod
    def release(session: Session, lease: UploadLease) -> bool:
        """Drops the lease; False when it was no longer this upload's (recovered or deleted)."""
        return _one_row(session.execute(sa.delete(ImageUpload).where(*_ours(lease))))

    @staticmethod
    def release_any(session: Session, image_id: str) -> dict[str, str] | None:
        """Ends whatever upload holds `image_id` (the image is being deleted), or forgets the
        data it staged; the payload of the job that removes those bytes, or None when there
        are none. (An image has a running upload or staged data, never both: a stage holds
        the image `uploading` until it is imported.)"""
        lease = session.get(ImageUpload, image_id, with_for_update=True)
        if lease is not None:
            session.delete(lease)
            return discard_payload(lease.store_id, lease.object_key, lease.image_id)
        return release_staged(session, image_id)

    def abort(self, lease: UploadLease, *, store_failed: bool = False) -> None:
        """A failed upload leaves its image as it was: `queued`, with no data facts (unless
        it no longer held the image).

        When the store itself failed, the upload's clean-up (deleting segments, aborting a
        multipart upload) most likely failed with it: a job retries it once the store is back.
        """
        with self.db.session() as session:
            if self.release(session, lease):
                _requeue(session, lease.image_id, lease.status)
            if store_failed:
                enqueue(
                    session,
                    DISCARD_UPLOAD_JOB,
                    discard_payload(lease.store_id, lease.object_key, lease.image_id),
                    lock=lease.image_id,
                )
        if store_failed:
            self.on_job_enqueued()

    # --- while the bytes flow -------------------------------------------------------------

    def renew(self, lease: UploadLease) -> bool:
        with self.db.session() as session:
            return _one_row(
                session.execute(
                    sa.update(ImageUpload).where(*_ours(lease)).values(lease_until=self._until())
                )
            )

    async def hold(self, lease: UploadLease, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` while renewing the lease; cancels it when the lease is lost (the image
        was deleted, or the lease ran out and the upload was recovered) and says which."""
        task = asyncio.ensure_future(work)
        lost: list[GlintError] = []

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / 4)
                try:
                    held = await to_thread.run_sync(self.renew, lease)
                except Exception:  # a database hiccup: the next renewal may still be in time
                    log.exception("renewing the upload lease of image %s failed", lease.image_id)
                    continue
                if not held:
                    lost.append(await to_thread.run_sync(self.why_lost, lease))
                    task.cancel()
                    return

        keeper = asyncio.create_task(keep())
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lost and (current is None or not current.cancelling()):
                raise lost[0] from None
            raise
        finally:
            keeper.cancel()

    def why_lost(self, lease: UploadLease) -> GlintError:
        """The error for an upload that no longer holds its image."""
        with self.db.session(write=False) as session:
            image = ImageRepository(session).find(lease.image_id)
        if image is None:
            return ImageGone(lease.image_id)
        return UploadLeaseLost(lease.image_id, self.lease_seconds)

    # --- after a crash ----------------------------------------------------------------------

    def recover_expired(self) -> int:
        """Images whose upload lease ran out (their process died, or stalled past the lease)
        go back to `queued`, and a job removes their partial bytes; returns how many."""
        now = utcnow()
        with self.db.session(write=False) as session:
            expired = [
                _lease_of(row)
                for row in session.exec(
                    select(ImageUpload).where(col(ImageUpload.lease_until) < now).limit(100)
                )
            ]
        recovered = 0
        for lease in expired:
            with self.db.session() as session:
                taken = session.execute(
                    sa.delete(ImageUpload).where(*_ours(lease), col(ImageUpload.lease_until) < now)
                )
                if not _one_row(taken):
                    continue  # renewed or ended meanwhile
                _requeue(session, lease.image_id, lease.status)
                enqueue(
                    session,
                    DISCARD_UPLOAD_JOB,
                    discard_payload(lease.store_id, lease.object_key, lease.image_id),
                    lock=lease.image_id,
                )
            log.warning(
                "upload to image %s (%s) lost its lease: image reset to queued",
                lease.image_id,
                lease.object_key,
            )
            recovered += 1
        if recovered:
            self.on_job_enqueued()
        return recovered

    def reset_unleased(self, status: ImageStatus, *, before: datetime) -> int:
        """Images in an upload status with no lease at all (left by a version of Glint that
        had no leases) and unchanged since `before` go back to `queued`."""
        with self.db.session() as session:
            stalled = session.exec(
                select(Image.id).where(
                    col(Image.status) == status,
                    col(Image.updated_at) < before,
                    col(Image.is_deleted).is_(False),
                    ~sa.exists().where(col(ImageUpload.image_id) == col(Image.id)),
                )
            ).all()
            return sum(_requeue(session, image_id, status) for image_id in stalled)

    def live_keys(self) -> set[str]:
        """Object keys of uploads whose lease is live: their staged bytes are in use."""
        with self.db.session(write=False) as session:
            return set(
                session.exec(
                    select(ImageUpload.object_key).where(col(ImageUpload.lease_until) >= utcnow())
                ).all()
            )
