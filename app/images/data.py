"""Image data: streaming upload and download, above the store drivers.

Upload: a short transaction moves the image `queued -> saving`; the body streams in batches
through md5 + the multihash (two threads) and the format inspector into a store writer, with no
transaction open; the object is committed; a second short transaction moves `saving -> active`.
On any failure the writer is cancelled and the image goes back to `queued`. If the image was
deleted meanwhile, the written object is deleted and the uploader gets 410.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.config import LimitSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GlintError,
    PayloadTooLarge,
)
from app.images import policy
from app.images.formats import FormatInspector, check
from app.images.models import Image, ImageLocation
from app.images.repository import ImageRepository
from app.images.service import ImageService
from app.images.status import WITHOUT_DATA, ImageStatus, check_transition
from app.storage.base import Capability, Store, StoredObject, StoreWriter
from app.storage.errors import StoreError, StoreFull, UnknownStore
from app.storage.registry import StoreRegistry

log = logging.getLogger(__name__)

# Hash and write in batches this large: per-call overhead vanishes, memory stays bounded
# (MAX_IN_FLIGHT batches being hashed and written, one more being received).
BATCH_SIZE = 8 * 1024 * 1024
MAX_IN_FLIGHT = 4
HASH_ALGORITHM = "sha512"


class ImageGone(GlintError):
    status_code = 410

    def __init__(self, image_id: str):
        super().__init__(
            f"Image {image_id} could not be found after upload. "
            "The image may have been deleted during the upload."
        )


class RangeNotSatisfiable(GlintError):
    status_code = 416
    message = "The Range requested is not available."


class StoreFailure(GlintError):
    status_code = 503


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int


@dataclass(frozen=True)
class Download:
    size: int
    checksum: str | None
    byte_range: ByteRange | None  # None: the whole image
    chunks: AsyncIterator[bytes]


class _Upload:
    """One upload's stream state: counts, checks limits, hashes, inspects and writes.

    md5 (Glance's `checksum`), the multihash and the store write are three lanes, each taking
    batches in order on its own thread: hashlib and file writes release the GIL, so the lanes
    run in parallel, and a lane that finishes a batch starts the next one without waiting for
    the others. At most MAX_IN_FLIGHT batches are queued, which bounds memory.
    """

    def __init__(
        self,
        writer: StoreWriter,
        *,
        declared_format: str | None,
        expected_size: int | None,
        size_cap: int,
    ):
        self.writer = writer
        self.expected_size = expected_size
        self.size_cap = size_cap
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.multihash = hashlib.new(HASH_ALGORITHM)
        self.inspector = FormatInspector(declared_format)
        self._md5_lane = ThreadPoolExecutor(1, thread_name_prefix="upload-md5")
        self._multihash_lane = ThreadPoolExecutor(1, thread_name_prefix="upload-hash")
        self._last_write: asyncio.Future[None] | None = None
        self._in_flight: deque[asyncio.Future[Any]] = deque()
        # Batches are filled into a few reused buffers: no allocation (and no page faults, and
        # no memory the allocator keeps afterwards) per batch, and a fixed footprint.
        self._free: asyncio.Queue[bytearray] = asyncio.Queue()
        for _ in range(MAX_IN_FLIGHT + 1):
            self._free.put_nowait(bytearray(BATCH_SIZE))
        self._buffer: bytearray | None = None
        self._filled = 0

    def count(self, received: int) -> None:
        self.size += received
        if self.size > self.size_cap:
            raise PayloadTooLarge(f"Image exceeds the maximum image size of {self.size_cap} bytes.")
        if self.expected_size is not None and self.size > self.expected_size:
            raise BadRequest(
                f"Image data is longer than the declared size of {self.expected_size} bytes."
            )

    async def receive(self, chunk: bytes) -> None:
        """Copies `chunk` into the current batch; full batches go to the lanes."""
        self.count(len(chunk))
        view = memoryview(chunk)
        while view:
            if self._buffer is None:
                self._buffer = await self._next_free_buffer()
            room = BATCH_SIZE - self._filled
            taken = view[:room]
            self._buffer[self._filled : self._filled + len(taken)] = taken
            self._filled += len(taken)
            view = view[len(taken) :]
            if self._filled == BATCH_SIZE:
                self._dispatch()

    async def finish(self) -> None:
        """Sends the last, partial batch and waits until every batch is hashed and written."""
        if self._filled:
            self._dispatch()
        while self._in_flight:
            await self._in_flight.popleft()

    async def _next_free_buffer(self) -> bytearray:
        while self._free.empty() and self._in_flight:
            # Surfaces a failed batch now rather than at the end of the upload.
            await self._in_flight.popleft()
        return await self._free.get()

    def _dispatch(self) -> None:
        """Queues the current batch on the three lanes; its buffer returns to the pool when
        all three are done with it."""
        buffer, filled = self._buffer, self._filled
        assert buffer is not None
        self._buffer, self._filled = None, 0
        batch = memoryview(buffer)[:filled]
        self.inspector.feed(batch)
        loop = asyncio.get_running_loop()
        write = asyncio.ensure_future(self._write_after(self._last_write, batch))
        self._last_write = write
        done = asyncio.gather(
            loop.run_in_executor(self._md5_lane, self.md5.update, batch),
            loop.run_in_executor(self._multihash_lane, self.multihash.update, batch),
            write,
        )

        def recycle(_: asyncio.Future[Any]) -> None:
            batch.release()
            self._free.put_nowait(buffer)

        done.add_done_callback(recycle)
        self._in_flight.append(done)

    async def _write_after(self, previous: asyncio.Future[None] | None, batch: memoryview) -> None:
        if previous is not None:
            await previous
        await self.writer.write(batch)

    async def abandon(self) -> None:
        pending = list(self._in_flight)
        self._in_flight.clear()
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._last_write is not None:
            await asyncio.gather(self._last_write, return_exceptions=True)

    def close(self) -> None:
        self._md5_lane.shutdown(wait=False)
        self._multihash_lane.shutdown(wait=False)


class ImageDataService:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        *,
        limits: LimitSettings,
    ):
        self.db = db
        self.stores = stores
        self.limits = limits

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
            raise PayloadTooLarge(
                f"Image exceeds the maximum image size of {self.limits.image_size_cap} bytes."
            )
        image = await run_in_threadpool(self._begin_upload, ctx, image_id)
        stored: StoredObject | None = None
        try:
            stored, values = await self._receive(image, store, body, expected_size)
            activated = await run_in_threadpool(self._activate, image.id, store, stored, values)
        except BaseException:
            # Shielded: this must finish even when the request was cancelled (client gone), or
            # the image would stay in `saving` and the bytes orphaned.
            if stored is not None:
                await asyncio.shield(store.delete(stored.location))
            await asyncio.shield(run_in_threadpool(self._restore, image_id))
            raise
        if not activated:
            await store.delete(stored.location)
            raise ImageGone(image.id)

    def _store(self, store_id: str | None) -> Store:
        try:
            return self.stores.get(store_id) if store_id else self.stores.default
        except UnknownStore:
            raise BadRequest(f"Store for identifier {store_id} not found") from None

    def _begin_upload(self, ctx: RequestContext, image_id: str) -> Image:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, "upload_image")
            check_transition(image.status, ImageStatus.SAVING)
            if not (image.disk_format and image.container_format):
                raise BadRequest(
                    "Properties disk_format, container_format must be set prior to saving data."
                )
            # The row lock (or SQLite's single writer) makes this the only claimant.
            if not repo.transition(image_id, from_=image.status, to=ImageStatus.SAVING):
                raise Conflict(f"Image {image_id} changed while its upload started; retry.")
            return image

    async def _receive(
        self,
        image: Image,
        store: Store,
        body: AsyncIterator[bytes],
        expected_size: int | None,
    ) -> tuple[StoredObject, dict[str, Any]]:
        """Streams the body into a new object; returns it and the image values it yields."""
        # A fresh name per upload: an object orphaned by a crash can never block a retry.
        writer = await store.open_writer(f"{image.id}.{secrets.token_hex(6)}", expected_size)
        upload = _Upload(
            writer,
            declared_format=image.disk_format if image.container_format == "bare" else None,
            expected_size=expected_size,
            size_cap=self.limits.image_size_cap,
        )
        try:
            async for chunk in body:
                await upload.receive(chunk)
            await upload.finish()
            if expected_size is not None and upload.size != expected_size:
                raise BadRequest(
                    f"Image data is {upload.size} bytes, not the declared {expected_size}."
                )
            # Only bare containers hold a disk image that can be inspected (as in Glance).
            virtual_size = None
            if image.container_format == "bare":
                inspection = upload.inspector.finish(upload.size)
                check(inspection, image.disk_format)
                virtual_size = inspection.virtual_size
            values = {
                "size": upload.size,
                "virtual_size": virtual_size,
                "checksum": upload.md5.hexdigest(),
                "os_hash_algo": HASH_ALGORITHM,
                "os_hash_value": upload.multihash.hexdigest(),
            }
            return await writer.commit(), values
        except BaseException as error:
            await upload.abandon()
            await writer.cancel()
            if isinstance(error, StoreFull):
                raise PayloadTooLarge("Image storage media is full.") from error
            if isinstance(error, StoreError):
                raise StoreFailure(f"The image store failed: {error}") from error
            raise
        finally:
            upload.close()

    def _activate(
        self, image_id: str, store: Store, stored: StoredObject, values: dict[str, Any]
    ) -> bool:
        """`saving -> active` with the data's facts; False when the image was deleted."""
        with self.db.session() as session:
            repo = ImageRepository(session)
            if not repo.transition(
                image_id, from_=ImageStatus.SAVING, to=ImageStatus.ACTIVE, **values
            ):
                return False
            session.add(
                ImageLocation(image_id=image_id, store_id=store.store_id, url=stored.location)
            )
            return True

    def _restore(self, image_id: str) -> None:
        """A failed upload leaves the image as it was: `queued`, with no data facts."""
        with self.db.session() as session:
            ImageRepository(session).transition(
                image_id,
                from_=ImageStatus.SAVING,
                to=ImageStatus.QUEUED,
                size=None,
                virtual_size=None,
                checksum=None,
                os_hash_algo=None,
                os_hash_value=None,
            )

    # --- recovery after a crash ----------------------------------------------------------------

    async def scrub(self, older_than: timedelta) -> tuple[int, int]:
        """What a crashed server leaves behind: images stuck in `saving` longer than
        `older_than` go back to `queued` (so they can be uploaded again), and staging files
        untouched that long are removed. Returns (images restored, files removed)."""

        def restore_stalled() -> int:
            cutoff = utcnow() - older_than
            with self.db.session() as session:
                repo = ImageRepository(session)
                stalled = repo.stalled(ImageStatus.SAVING, before=cutoff)
            for image_id in stalled:
                self._restore(image_id)
            return len(stalled)

        restored = await run_in_threadpool(restore_stalled)
        removed = 0
        for store_id in self.stores.ids():
            purge = getattr(self.stores.get(store_id), "purge_staging", None)
            if purge is not None:
                removed += await purge(older_than.total_seconds())
        return restored, removed

    # --- download ------------------------------------------------------------------------------

    async def download(
        self, ctx: RequestContext, image_id: str, range_header: str | None
    ) -> Download | None:
        """None when the image has no data yet (204)."""
        found = await run_in_threadpool(self._locate, ctx, image_id)
        if found is None:
            return None
        image, location = found
        size = image.size or 0
        byte_range = parse_range(range_header, size)
        store = self.stores.for_location(location.url)
        if byte_range is not None and Capability.READ_RANDOM not in store.capabilities:
            raise BadRequest("Ranged downloads are not supported by this image's store.")
        offset, length = (byte_range.start, byte_range.length) if byte_range else (0, size)
        chunks = store.open_reader(location.url, offset, length)
        try:
            # Fetch the first chunk now: a store that fails before any byte is sent is a 503,
            # not a 200 with a broken body.
            first = await anext(chunks, b"")
        except StoreError as error:
            raise StoreFailure(f"The image store failed: {error}") from error
        return Download(size, image.checksum, byte_range, _prepend(first, chunks))

    def _locate(self, ctx: RequestContext, image_id: str) -> tuple[Image, ImageLocation] | None:
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_member(ctx, "download_image")
            if image.status == ImageStatus.DEACTIVATED and not ctx.is_admin:
                raise Forbidden(
                    "The requested image has been deactivated. Image data download is forbidden."
                )
            if image.status in WITHOUT_DATA:
                return None
            locations = repo.locations(image_id)
            if not locations:
                return None
            return image, locations[0]

    # --- status actions -------------------------------------------------------------------------

    def deactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._toggle(ctx, image_id, "deactivate", ImageStatus.ACTIVE, ImageStatus.DEACTIVATED)

    def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._toggle(ctx, image_id, "reactivate", ImageStatus.DEACTIVATED, ImageStatus.ACTIVE)

    def _toggle(
        self,
        ctx: RequestContext,
        image_id: str,
        action: str,
        from_: ImageStatus,
        to: ImageStatus,
    ) -> None:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = ImageService.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, action)
            if image.status == to:
                return
            if image.status != from_ or not repo.transition(image_id, from_=from_, to=to):
                raise Forbidden(f"Not allowed to {action} image in status '{image.status}'")


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


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A single `bytes=` range, as Glance accepts it; None for the whole image."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        raise RangeNotSatisfiable(detail="Invalid Range header.")
    if "," in spec:
        raise BadRequest(
            "Requests with multiple ranges are not supported in Glance. "
            "You may make multiple single-range requests instead."
        )
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError(spec)
        if not first:  # suffix: the last N bytes
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise RangeNotSatisfiable(detail="Invalid Range header.")
            start, end = max(size - suffix, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
            if start < 0 or end < start:
                raise RangeNotSatisfiable(detail="Invalid Range header.")
    except ValueError:
        raise RangeNotSatisfiable(detail="Invalid Range header.") from None
    if start >= size:
        raise RangeNotSatisfiable(
            detail="Invalid start position in Range header. Start position MUST be in the "
            f"inclusive range [0, {size - 1}]."
        )
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)


def legacy_content_range(header: str | None) -> str | None:
    """Glance also honours a request `Content-Range: bytes a-b/*` as a range request."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition(" ")
    return f"{unit}={spec.split('/', 1)[0]}"
