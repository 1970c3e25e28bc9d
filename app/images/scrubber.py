"""Glance's delayed delete, second half: the scrubber, and the restore that undoes a deletion.

With `delayed_delete` on, deleting an image with data leaves it `pending_delete` (see
ImageService.delete): hidden like a deleted image, its locations and bytes kept. A pass (every
worker's sweep, every `wakeup_time`, and `glint scrub`) moves each image pending for longer than
`scrub_time` to `deleted` in its own short transaction, which also enqueues the job that deletes
its bytes. So the bytes go only once that commit made the deletion final, by the durable job
queue: a crash before the commit leaves the image pending (the next pass takes it again), one
after it leaves the job (another worker runs it).

Both moves are compare-and-set on `pending_delete`: a restore and a scrub of one image, or two
workers' passes, race cleanly (one wins, the other does nothing), so unlike Glance's
`glance-scrubber --restore` this needs no scrubber stopped first.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import col, select

from app.config import ScrubberSettings
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import Conflict
from app.images.errors import ImageChanged, ImageNotFound
from app.images.models import Image
from app.images.repository import ImageRepository
from app.images.service import DELETE_DATA_JOB
from app.images.status import ImageStatus
from app.jobs.queue import enqueue

log = logging.getLogger(__name__)

# Images read per query: a pass over a long backlog holds no long transaction or large result.
BATCH_SIZE = 100


class NotPendingDelete(Conflict):
    def __init__(self, status: str):
        # Glance's image_restore message.
        super().__init__(
            f"cannot restore the image from {status} to active (wanted from_state=pending_delete)"
        )


class Scrubber:
    def __init__(self, db: Database, settings: ScrubberSettings, *, batch_size: int = BATCH_SIZE):
        self.db = db
        self.scrub_time = timedelta(seconds=settings.scrub_time)
        self.batch_size = batch_size

    def scrub(self) -> int:
        """One pass: every image pending delete since before `scrub_time` ago becomes `deleted`,
        its bytes left to a job; returns how many."""
        # Fixed for the pass: images deleted while it runs wait for the next one, so it ends.
        due_before = utcnow() - self.scrub_time
        scrubbed = 0
        while True:
            # Every image of a batch leaves `pending_delete` (moved here, or by whoever won its
            # compare-and-set), so the next query starts after it.
            batch = self._due(due_before)
            scrubbed += sum(self._scrub_one(image_id, deleted_at) for image_id, deleted_at in batch)
            if len(batch) < self.batch_size:
                return scrubbed

    def _due(self, due_before: datetime) -> list[tuple[str, datetime]]:
        with self.db.session(write=False) as session:
            rows = session.exec(
                select(Image.id, Image.deleted_at)
                .where(
                    col(Image.status) == ImageStatus.PENDING_DELETE,
                    col(Image.deleted_at) <= due_before,
                )
                .order_by(col(Image.deleted_at), col(Image.id))
                .limit(self.batch_size)
            ).all()
        return [(image_id, deleted_at) for image_id, deleted_at in rows if deleted_at is not None]

    def _scrub_one(self, image_id: str, deleted_at: datetime) -> bool:
        with self.db.session() as session:
            repo = ImageRepository(session)
            # deleted_at kept: the image was deleted when its owner asked, not now.
            if not repo.transition(
                image_id,
                from_=ImageStatus.PENDING_DELETE,
                to=ImageStatus.DELETED,
                deleted_at=deleted_at,
            ):
                return False  # restored, or scrubbed by another pass, since it was read
            locations = [location.url for location in repo.locations(image_id)]
            enqueue(
                session,
                DELETE_DATA_JOB,
                {"image_id": image_id, "locations": locations, "partial": []},
                lock=image_id,
            )
        log.info("image %s scrubbed: its data is deleted by a job", image_id)
        return True

    def restore(self, image_id: str) -> None:
        """`pending_delete -> active`, as before the deletion (its locations were kept).
        ImageNotFound when there is no such image; NotPendingDelete when it is in another
        status (a deleted one: too late, its bytes are gone or going)."""
        with self.db.session() as session:
            # Not ImageRepository.find: it finds no hidden image, and this one is.
            image = session.get(Image, image_id, with_for_update=True)
            if image is None:
                raise ImageNotFound(image_id)
            if image.status != ImageStatus.PENDING_DELETE:
                raise NotPendingDelete(image.status)
            if not ImageRepository(session).transition(
                image_id,
                from_=ImageStatus.PENDING_DELETE,
                to=ImageStatus.ACTIVE,
                is_deleted=False,
                deleted_at=None,
            ):
                raise ImageChanged(image_id, "it was being restored")
        log.info("image %s restored from pending_delete to active", image_id)
