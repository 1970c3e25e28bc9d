"""Image data: the upload flow around the ingest pipeline, downloads, and recovery.

Upload (v2 `PUT .../file`): one short transaction moves the image `queued -> saving` and takes
an upload lease; the bytes stream through `ingest` with no transaction open while the lease is
renewed; a second short transaction ends the lease and moves `saving -> active` with the data's
facts and location. On any failure the writer is cancelled and the image goes back to `queued`.
If the image was deleted meanwhile, the written object is deleted and the uploader gets 410.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

from anyio import to_thread

from app.config import LimitSettings, UploadSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import BadRequest, Forbidden, GlintError, NotFound
from app.images import policy
from app.images.errors import ImageChanged
from app.images.imports import running_import_keys
from app.images.ingest import (
    Expectations,
    ImageTooLarge,
    IngestFacts,
    Inspection,
    StoreFailure,
    Target,
    ingest,
)
from app.images.locations import by_weight, redact
from app.images.models import Image, ImageLocation
from app.images.repository import ImageRepository
from app.images.service import ImageService
from app.images.status import WITHOUT_DATA, ImageStatus
from app.images.uploads import UploadLease, UploadLeases, staging_row
from app.metrics import NO_METRICS, Metrics
from app.storage.base import Capability, Store
from app.storage.errors import ObjectNotFound, StoreError, UnknownStore
from app.storage.registry import StoreRegistry

log = logging.getLogger(__name__)


class UnknownStoreId(BadRequest):
    def __init__(self, store_id: str):
        super().__init__(f"Store for identifier {store_id} not found")


class StoreAddDisabled(GlintError):
    """An upload to a read-only store (the http store), as Glance answers it."""

    status_code = 410

    def __init__(self) -> None:
        super().__init__("Error in store configuration. Adding images to store is disabled.")


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
class Copy:
    """One location of an image's bytes and the store that holds it."""

    store: Store
    location: str


class ImageDataMissing(Exception):
    """No location of an image with data holds its object any more. Glance answers 204 (as
    if there were no data), which is what clients expect; the log names the broken locations."""

    def __init__(self, image_id: str):
        super().__init__(f"The data of image {image_id} is missing from every store.")


@dataclass(frozen=True)
class ImageData:
    """An image's stored bytes, ready to be read whole or in part, from the first copy that
    delivers them."""

    image_id: str
    size: int
    checksum: str | None
    # The preferred copy first (the heaviest store's).
    copies: tuple[Copy, ...]

    async def open(self, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The bytes from `offset`, `length` of them (the rest when None). The first chunk is
        read before this returns: when no copy can deliver it, that is a StoreFailure here,
        not a broken stream later."""
        partial = offset != 0 or (length is not None and length != self.size)
        copies = [
            copy
            for copy in self.copies
            if not partial or Capability.READ_RANDOM in copy.store.capabilities
        ]
        if not copies:
            raise RangedReadUnsupported()
        chunks = self._read(copies, offset, self.size if length is None else offset + length)
        try:
            first = await anext(chunks, b"")
        except BaseException:
            await chunks.aclose()
            raise
        return _prepend(first, chunks)

    async def _read(self, copies: list[Copy], start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes `start` to `end` from the copies in turn: one that fails (or ends early)
        hands over to the next, which goes on from the same byte. Raises StoreFailure only
        when every copy failed before the first byte; after it, the last copy's StoreError,
        which aborts the response (a clean short body would pass for the whole image)."""
        position = start
        failure: StoreError | None = None
        # Whether every copy tried so far was simply not there (rather than unreachable).
        all_missing = True
        for copy in copies:
            # Going on from a byte other than the first needs ranged reads.
            if position != 0 and Capability.READ_RANDOM not in copy.store.capabilities:
                continue
            whole = position == 0 and end == self.size
            try:
                chunks = copy.store.open_reader(
                    copy.location, position, None if whole else end - position
                )
                try:
                    async for chunk in chunks:
                        position += len(chunk)
                        yield chunk
                finally:
                    await _close(chunks)
            except ObjectNotFound as error:
                failure = error
                # Not an outage: the object behind an active image is gone, and an operator
                # has to restore it or remove the location.
                log.error(
                    "image %s: its location in store %s is broken, the object is missing: %s",
                    self.image_id,
                    copy.store.store_id,
                    redact(error, copy.location),
                )
                continue
            except StoreError as error:
                failure = error
                all_missing = False
                log.warning(
                    "reading image %s from store %s failed at byte %d of %d: %s",
                    self.image_id,
                    copy.store.store_id,
                    position,
                    end,
                    redact(error, copy.location),
                )
                continue
            if position >= end:
                return
            failure = StoreError(f"the object ends at byte {position} of {end}")
            all_missing = False
            log.warning("image %s in store %s: %s", self.image_id, copy.store.store_id, failure)
        if position == start:
            if all_missing:
                raise ImageDataMissing(self.image_id)
            raise StoreFailure(f"No store could deliver the data of image {self.image_id}.")
        assert failure is not None, "the loop ends early only when a copy failed"
        raise failure


class ImageDataService:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        leases: UploadLeases,
        *,
        limits: LimitSettings,
        uploads: UploadSettings,
        staging_enabled: bool = True,
        metrics: Metrics = NO_METRICS,
    ):
        """`staging_enabled`: whether glance-direct import is on (else stage is a 404)."""
        self.db = db
        self.staging_enabled = staging_enabled
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
        lease, facts = await self._receive(
            ctx, image_id, body, store, ImageStatus.SAVING, expected_size=expected_size
        )
        await self._end(self._activate, lease, store, facts)

    async def stage(
        self,
        ctx: RequestContext,
        image_id: str,
        body: AsyncIterator[bytes],
        *,
        expected_size: int | None = None,
    ) -> None:
        """`PUT .../stage` (glance-direct): `queued -> uploading`, the data into the staging
        store (the default store: every worker can read it), measured and inspected on the way;
        the image stays `uploading` with the staged data recorded until it is imported. What
        the inspection finds is reported by the import, as Glance does."""
        if not self.staging_enabled:
            raise NotFound("The resource could not be found.")
        store = self._store(None)
        lease, facts = await self._receive(
            ctx, image_id, body, store, ImageStatus.UPLOADING, expected_size=expected_size
        )
        await self._end(self._record_staged, lease, store, facts)

    async def _end(
        self,
        record: Callable[[UploadLease, Store, IngestFacts], bool],
        lease: UploadLease,
        store: Store,
        facts: IngestFacts,
    ) -> None:
        """The upload's end recorded by `record`; if the upload no longer held the image
        (deleted, or reset after its lease ran out), its object goes and the uploader hears
        why."""
        if not await to_thread.run_sync(record, lease, store, facts):
            await store.delete(facts.stored[0].location)
            raise await to_thread.run_sync(self.leases.why_lost, lease)

    async def _receive(
        self,
        ctx: RequestContext,
        image_id: str,
        body: AsyncIterator[bytes],
        store: Store,
        status: ImageStatus,
        *,
        expected_size: int | None,
    ) -> tuple[UploadLease, IngestFacts]:
        """The image moved into `status` under a lease, and the body ingested into a new
        object of `store`; on failure the image is as it was (`queued`) and nothing is kept."""
        if expected_size is not None and expected_size > self.limits.image_size_cap:
            raise ImageTooLarge(self.limits.image_size_cap)
        image, lease = await self._begin(ctx, image_id, store, status)
        self.metrics.upload_started()
        try:
            facts = await self.leases.hold(
                lease,
                ingest(
                    body,
                    [Target(store, lease.object_key)],
                    size_cap=self.limits.image_size_cap,
                    expect=Expectations(size=expected_size),
                    inspection=_inspection(image, enforce=status == ImageStatus.SAVING),
                    idle_timeout=self.uploads.idle_timeout,
                ),
            )
        except BaseException as error:
            # Shielded: this must finish even when the request was cancelled (client gone), or
            # the image would stay in its upload status until its lease ran out.
            abort = functools.partial(
                self.leases.abort, lease, store_failed=isinstance(error, StoreFailure)
            )
            await asyncio.shield(to_thread.run_sync(abort))
            raise
        finally:
            self.metrics.upload_ended()
        return lease, facts

    async def _begin(
        self, ctx: RequestContext, image_id: str, store: Store, status: ImageStatus
    ) -> tuple[Image, UploadLease]:
        """`_begin_upload`; if the request is cancelled while its transaction commits, the
        upload it began is ended at once rather than when its lease runs out."""
        begun = asyncio.ensure_future(
            to_thread.run_sync(self._begin_upload, ctx, image_id, store, status)
        )
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
            store = self.stores.get(store_id) if store_id else self.stores.default
        except UnknownStore:
            raise UnknownStoreId(str(store_id)) from None
        if Capability.WRITE not in store.capabilities:
            raise StoreAddDisabled()
        return store

    def _begin_upload(
        self, ctx: RequestContext, image_id: str, store: Store, status: ImageStatus
    ) -> tuple[Image, UploadLease]:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, "upload_image")
            # Glance checks the formats before an upload, and before the import of staged data.
            if status == ImageStatus.SAVING and not (image.disk_format and image.container_format):
                raise FormatsNotSet()
            # The row lock (or SQLite's single writer) makes this the only claimant.
            if not repo.transition(image_id, from_=image.status, to=status):
                raise ImageChanged(image_id, "its upload started")
            return image, self.leases.take(session, image_id, status, store.store_id)

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
                **facts.image_columns(),
            )
            session.add(
                ImageLocation(
                    image_id=lease.image_id, store_id=store.store_id, url=facts.stored[0].location
                )
            )
            return True

    def _record_staged(self, lease: UploadLease, store: Store, facts: IngestFacts) -> bool:
        """The staged data recorded and the image's `size` set (as Glance shows it while
        `uploading`); False when the stage no longer holds the image."""
        with self.db.session() as session:
            if not self.leases.release(session, lease):
                return False
            ImageRepository(session).update_in_status(
                lease.image_id, ImageStatus.UPLOADING, size=facts.size
            )
            session.add(staging_row(lease.image_id, store.store_id, lease.object_key, facts))
            return True

    # --- recovery after a crash ----------------------------------------------------------------

    async def scrub(self, older_than: timedelta) -> tuple[int, int]:
        """What crashed servers leave behind, now rather than when the worker next looks:
        uploads whose lease ran out are recovered (image back to `queued`, partial bytes removed
        by a job), images left in `saving` without any lease for `older_than` too, and staged
        bytes untouched that long and held by no live upload or import are removed. Returns
        (images reset, staged objects removed)."""
        reset = await to_thread.run_sync(self.leases.recover_expired)
        reset += await to_thread.run_sync(
            lambda: self.leases.reset_unleased(ImageStatus.SAVING, before=utcnow() - older_than)
        )
        live = await to_thread.run_sync(self.leases.live_keys)
        live |= await to_thread.run_sync(running_import_keys, self.db)
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
        image, rows = found
        copies = []
        for row in by_weight(rows, self.stores.weight):
            try:
                copies.append(Copy(self.stores.for_location(row.url), row.url))
            except UnknownStore:
                log.warning(
                    "image %s has a location in store %s, which is not configured",
                    image_id,
                    row.store_id,
                )
        if not copies:
            raise StoreFailure(f"No configured store holds the data of image {image_id}.")
        return ImageData(image.id, image.size or 0, image.checksum, tuple(copies))

    def _locate(
        self, ctx: RequestContext, image_id: str
    ) -> tuple[Image, list[ImageLocation]] | None:
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
            return image, locations


async def _close(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        # A client that goes away mid-download must not leave the store's reader open.
        await _close(rest)


def _inspection(image: Image, *, enforce: bool) -> Inspection | None:
    """Only bare containers hold a disk image that can be inspected (as in Glance)."""
    if image.container_format != "bare":
        return None
    return Inspection(image.disk_format, enforce=enforce)
