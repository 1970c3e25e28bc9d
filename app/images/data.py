"""Image data: the upload flow around the ingest pipeline, downloads, and recovery.

Upload (v2 `PUT .../file`): one short transaction moves the image `queued -> saving` and takes
an upload lease; the bytes stream through `ingest` with no transaction open while the lease is
renewed; a second short transaction ends the lease and moves `saving -> active` with the data's
facts and location. On any failure the writer is cancelled and the image goes back to `queued`.
If the image was deleted meanwhile, the written object is deleted and the uploader gets 410.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from anyio import to_thread

from app.config import LimitSettings, UploadSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import BadRequest, Forbidden
from app.images import policy
from app.images.errors import ImageChanged
from app.images.ingest import (
    Expectations,
    ImageTooLarge,
    IngestFacts,
    Inspection,
    StoreFailure,
    Target,
    ingest,
)
from app.images.models import Image, ImageLocation
from app.images.repository import ImageRepository
from app.images.service import ImageService
from app.images.status import WITHOUT_DATA, ImageStatus
from app.images.uploads import UploadLease, UploadLeases
from app.metrics import NO_METRICS, Metrics
from app.storage.base import Capability, Store
from app.storage.errors import StoreError, UnknownStore
from app.storage.registry import StoreRegistry


class UnknownStoreId(BadRequest):
    def __init__(self, store_id: str):
        super().__init__(f"Store for identifier {store_id} not found")


class FormatsNotSet(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "Properties disk_format, container_format must be set prior to saving data."
        )


class DownloadOfDeactivated(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "The requested image has been deactivated. Image data download is forbidden."
        )


class RangedReadUnsupported(BadRequest):
    def __init__(self) -> None:
        super().__init__("Ranged downloads are not supported by this image's store.")


@dataclass(frozen=True)
class ImageData:
    """An image's stored bytes, ready to be read whole or in part."""

    size: int
    checksum: str | None
    store: Store
    location: str

    async def open(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The bytes from `offset`, `length` of them (the rest when None). The first chunk is
        read before this returns: a store that fails at once is a StoreFailure here, not a
        broken stream later."""
        partial = offset != 0 or (length is not None and length != self.size)
        if partial and Capability.READ_RANDOM not in self.store.capabilities:
            raise RangedReadUnsupported()
        chunks = self.store.open_reader(self.location, offset, length)
        try:
            first = await anext(chunks, b"")
        except StoreError as error:
            raise StoreFailure(f"The image store failed: {error}") from error
        return _prepend(first, chunks)


class ImageDataService:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        leases: UploadLeases,
        *,
        limits: LimitSettings,
        uploads: UploadSettings,
        metrics: Metrics = NO_METRICS,
    ):
        self.db = db
        self.stores = stores
        self.leases = leases
        self.limits = limits
        self.uploads = uploads
        self.metrics = metrics

    # --- upload ------------------------------------------------------------------------------

    async def upload(
        self,
        ctx: RequestContext,
        image_id: str,
        body: AsyncIterator[bytes],
        *,
        expected_size: int | None = None,
        store_id: str | None = None,
    ) -> None:
        store = self._store(store_id)
        if expected_size is not None and expected_size > self.limits.image_size_cap:
            raise ImageTooLarge(self.limits.image_size_cap)
        image, lease = await self._begin(ctx, image_id, store)
        self.metrics.upload_started()
        try:
            facts = await self.leases.hold(
                lease,
                ingest(
                    body,
                    [Target(store, lease.object_key)],
                    size_cap=self.limits.image_size_cap,
                    expect=Expectations(size=expected_size),
                    # Only bare containers hold a disk image that can be inspected (as in Glance).
                    inspection=Inspection(image.disk_format)
                    if image.container_format == "bare"
                    else None,
                    idle_timeout=self.uploads.idle_timeout,
                ),
            )
        except BaseException:
            # Shielded: this must finish even when the request was cancelled (client gone), or
            # the image would stay in `saving` until its lease ran out.
            await asyncio.shield(to_thread.run_sync(self.leases.abort, lease))
            raise
        finally:
            self.metrics.upload_ended()
        if not await to_thread.run_sync(self._activate, lease, store, facts):
            await store.delete(facts.stored[0].location)
            raise await to_thread.run_sync(self.leases.why_lost, lease)

    async def _begin(
        self, ctx: RequestContext, image_id: str, store: Store
    ) -> tuple[Image, UploadLease]:
        """`_begin_upload`; if the request is cancelled while its transaction commits, the
        upload it began is ended at once rather than when its lease runs out."""
        begun = asyncio.ensure_future(to_thread.run_sync(self._begin_upload, ctx, image_id, store))
        try:
            return await asyncio.shield(begun)
        except asyncio.CancelledError:
            begun.add_done_callback(self._abort_begun)
            raise

    def _abort_begun(self, begun: asyncio.Future[tuple[Image, UploadLease]]) -> None:
        if not begun.cancelled() and begun.exception() is None:
            _, lease = begun.result()
            begun.get_loop().run_in_executor(None, self.leases.abort, lease)

    def _store(self, store_id: str | None) -> Store:
        try:
            return self.stores.get(store_id) if store_id else self.stores.default
        except UnknownStore:
            raise UnknownStoreId(str(store_id)) from None

    def _begin_upload(
        self, ctx: RequestContext, image_id: str, store: Store
    ) -> tuple[Image, UploadLease]:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, "upload_image")
            if not (image.disk_format and image.container_format):
                raise FormatsNotSet()
            # The row lock (or SQLite's single writer) makes this the only claimant.
            if not repo.transition(image_id, from_=image.status, to=ImageStatus.SAVING):
                raise ImageChanged(image_id, "its upload started")
            return image, self.leases.take(session, image_id, ImageStatus.SAVING, store.store_id)

    def _activate(self, lease: UploadLease, store: Store, facts: IngestFacts) -> bool:
        """`saving -> active` with the data's facts; False when the upload no longer holds
        the image (it was deleted, or the lease ran out and the image was reset)."""
        with self.db.session() as session:
            if not self.leases.release(session, lease):
                return False
            ImageRepository(session).transition(
                lease.image_id,
                from_=lease.status,
                to=ImageStatus.ACTIVE,
                size=facts.size,
                virtual_size=facts.virtual_size,
                checksum=facts.checksum,
                os_hash_algo=facts.hash_algo,
                os_hash_value=facts.hash_value,
            )
            session.add(
                ImageLocation(
                    image_id=lease.image_id, store_id=store.store_id, url=facts.stored[0].location
                )
            )
            return True

    # --- recovery after a crash ----------------------------------------------------------------

    async def scrub(self, older_than: timedelta) -> tuple[int, int]:
        """What crashed servers leave behind, now rather than when the worker next looks:
        uploads whose lease ran out are recovered (image back to `queued`, partial bytes removed
        by a job), images left in `saving` without any lease for `older_than` too, and staged
        bytes untouched that long and held by no live upload are removed. Returns (images
        reset, staged objects removed)."""
        reset = await to_thread.run_sync(self.leases.recover_expired)
        reset += await to_thread.run_sync(
            lambda: self.leases.reset_unleased(ImageStatus.SAVING, before=utcnow() - older_than)
        )
        live = await to_thread.run_sync(self.leases.live_keys)
        removed = 0
        for store_id in self.stores.ids():
            removed += await self.stores.get(store_id).purge_staging(
                older_than.total_seconds(), keep=live
            )
        return reset, removed

    # --- download ------------------------------------------------------------------------------

    async def find_data(self, ctx: RequestContext, image_id: str) -> ImageData | None:
        """The image's bytes, if the caller may read them; None when it has none yet (204)."""
        found = await to_thread.run_sync(self._locate, ctx, image_id)
        if found is None:
            return None
        image, location = found
        return ImageData(
            size=image.size or 0,
            checksum=image.checksum,
            store=self.stores.for_location(location.url),
            location=location.url,
        )

    def _locate(self, ctx: RequestContext, image_id: str) -> tuple[Image, ImageLocation] | None:
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_member(ctx, "download_image")
            if image.status == ImageStatus.DEACTIVATED and not ctx.is_admin:
                raise DownloadOfDeactivated()
            if image.status in WITHOUT_DATA:
                return None
            locations = repo.locations(image_id)
            if not locations:
                return None
            return image, locations[0]


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # A client that goes away mid-download must not leave the store's reader open.
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
