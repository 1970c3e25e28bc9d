"""The ingest pipeline: image bytes in, facts out. No database, no image row, no HTTP.

Every way bytes enter Glint (v2 upload and stage, import workers, v1 create) is a short flow
around `ingest`: its own begin status, then `ingest` from its source into one or more stores,
then its own success or failure status.

md5 (Glance's `checksum`), the multihash and each store write are lanes, each taking batches in
order on its own thread: hashlib and the drivers release the GIL over large blocks, so the lanes
run in parallel, and a lane that finishes a batch starts the next without waiting for the others.
Batches are filled into a few reused buffers (no allocation per batch, a fixed footprint): a
store writer must therefore copy or consume a chunk before its `write` returns, as the store
contract says.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.errors import GlintError
from app.images.formats import FormatInspector, UnsafeImage, check
from app.storage.base import Store, StoredObject, StoreWriter
from app.storage.errors import StoreError, StoreFull

# Hash and write in batches this large: per-call overhead vanishes, memory stays bounded
# (MAX_IN_FLIGHT batches being hashed and written, one more being received).
BATCH_SIZE = 8 * 1024 * 1024
MAX_IN_FLIGHT = 4
HASH_ALGORITHM = "sha512"


class IngestError(GlintError):
    """Why ingesting failed; every writer was cancelled and nothing was stored."""


class ImageTooLarge(IngestError):
    status_code = 413

    def __init__(self, cap: int):
        super().__init__(f"Image exceeds the maximum image size of {cap} bytes.")


class SizeMismatch(IngestError):
    status_code = 400


class ChecksumMismatch(IngestError):
    status_code = 400

    def __init__(self, kind: str, expected: str, actual: str):
        super().__init__(f"The image data's {kind} is {actual}, not the expected {expected}.")


class SourceStalled(IngestError):
    status_code = 408

    def __init__(self, seconds: float):
        super().__init__(f"No image data arrived for {seconds:g} seconds; the upload was stopped.")


class StorageFull(IngestError):
    status_code = 413

    def __init__(self) -> None:
        super().__init__("Image storage media is full.")


class StoreFailure(IngestError):
    status_code = 503


@dataclass(frozen=True)
class Target:
    """Where to write: a store and the key of the new object (unique per attempt)."""

    store: Store
    key: str


@dataclass(frozen=True)
class Expectations:
    """What the data must turn out to be; None: not checked."""

    size: int | None = None
    checksum: str | None = None  # md5, hex
    hash_value: str | None = None  # the multihash, hex


@dataclass(frozen=True)
class Inspection:
    """Whether and how to inspect the data as a disk image.

    `declared_format` None checks only safety and ambiguity (Glance inspects only data in a
    `bare` container; the caller decides). `enforce` False reports what the data fails in the
    facts' `format_problem` instead of refusing it (staging: Glance's import reports it).
    """

    declared_format: str | None
    enforce: bool = True


@dataclass(frozen=True)
class IngestFacts:
    size: int
    checksum: str
    hash_algo: str
    hash_value: str
    # None when not inspected, or when the format's size is unknown or zero.
    virtual_size: int | None
    detected_format: str | None
    # One committed object per target, in the targets' order.
    stored: tuple[StoredObject, ...]
    # Why the data fails inspection, when the inspection did not enforce it.
    format_problem: str | None = None

    def image_columns(self) -> dict[str, Any]:
        """What an image that takes this data records of it, by column."""
        return {
            "size": self.size,
            "virtual_size": self.virtual_size,
            "checksum": self.checksum,
            "os_hash_algo": self.hash_algo,
            "os_hash_value": self.hash_value,
        }


async def ingest(
    source: AsyncIterator[bytes],
    targets: Sequence[Target],
    *,
    size_cap: int,
    expect: Expectations = Expectations(),
    inspection: Inspection | None = None,
    idle_timeout: float | None = None,
    hash_algorithm: str = HASH_ALGORITHM,
) -> IngestFacts:
    """Streams `source` into a new object in every target; commits them only if every check
    passed. Raises an IngestError (or the source's own error, or CancelledError) after
    cancelling every writer; then nothing of this call remains in any store. With no targets
    the data is only measured (bytes already stored elsewhere)."""
    if expect.size is not None and expect.size > size_cap:
        raise ImageTooLarge(size_cap)
    writers: list[StoreWriter] = []
    pipeline: _Pipeline | None = None
    stored: list[tuple[Store, StoredObject]] = []
    watchdog = _Watchdog(idle_timeout)
    try:
        for target in targets:
            writers.append(await target.store.open_writer(target.key, expect.size))
        pipeline = _Pipeline(
            writers,
            hash_algorithm=hash_algorithm,
            size_cap=size_cap,
            expected_size=expect.size,
            inspector=FormatInspector(inspection.declared_format) if inspection else None,
        )
        while True:
            watchdog.waiting()
            chunk = await anext(source, None)
            watchdog.received()
            if chunk is None:
                break
            await pipeline.receive(chunk)
        await pipeline.finish()
        facts = pipeline.facts(expect, inspection)
        for target, writer in zip(targets, writers, strict=True):
            stored.append((target.store, await writer.commit()))
    except BaseException as error:
        stalled = watchdog.stalled(error)
        if pipeline is not None:
            await pipeline.abandon()
        await asyncio.shield(_undo(writers, stored))
        translated = stalled or _as_ingest_error(error)
        if translated is error:
            raise
        raise translated from error
    finally:
        watchdog.stop()
        if pipeline is not None:
            pipeline.close()
    return IngestFacts(**facts, stored=tuple(obj for _, obj in stored))


async def _undo(writers: list[StoreWriter], stored: list[tuple[Store, StoredObject]]) -> None:
    """Every writer cancelled (a no-op for committed ones) and every committed object removed."""
    await asyncio.gather(*(writer.cancel() for writer in writers), return_exceptions=True)
    await asyncio.gather(
        *(store.delete(obj.location) for store, obj in stored), return_exceptions=True
    )


def _as_ingest_error(error: BaseException) -> BaseException:
    if isinstance(error, StoreFull):
        return StorageFull()
    if isinstance(error, StoreError):
        return StoreFailure(f"The image store failed: {error}")
    return error


class _Watchdog:
    """Cancels the ingesting task when the source keeps it waiting for `idle_timeout` seconds.

    One timer per ingest instead of one per chunk (`asyncio.timeout` around every read costs
    microseconds per chunk, and a GiB arrives in tens of thousands of them). Time spent waiting
    for the stores (back-pressure) does not count: only waits for the source do. With
    `idle_timeout` None it never fires.
    """

    def __init__(self, idle_timeout: float | None):
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.waiting_since: float | None = None
        self.fired = False
        self.idle_timeout = idle_timeout or 0.0
        self._timer: asyncio.TimerHandle | None = None
        if idle_timeout is not None:
            self._timer = self.loop.call_later(idle_timeout, self._check)

    def waiting(self) -> None:
        self.waiting_since = self.loop.time()

    def received(self) -> None:
        self.waiting_since = None

    def _check(self) -> None:
        if self.waiting_since is None:
            self._timer = self.loop.call_later(self.idle_timeout, self._check)
            return
        left = self.waiting_since + self.idle_timeout - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check)
            return
        self.fired = True
        if self.task is not None:
            self.task.cancel()

    def stalled(self, error: BaseException) -> SourceStalled | None:
        """The stall, if `error` is this watchdog's cancellation (then consumed)."""
        if not (self.fired and isinstance(error, asyncio.CancelledError)):
            return None
        if self.task is not None:
            self.task.uncancel()
        return SourceStalled(self.idle_timeout)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Pipeline:
    """One ingest's stream state: counts, checks limits, hashes, inspects and writes."""

    def __init__(
        self,
        writers: Sequence[StoreWriter],
        *,
        hash_algorithm: str,
        size_cap: int,
        expected_size: int | None,
        inspector: FormatInspector | None,
    ):
        self.writers = writers
        self.size_cap = size_cap
        self.expected_size = expected_size
        self.inspector = inspector
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.multihash = hashlib.new(hash_algorithm)
        self._md5_lane = ThreadPoolExecutor(1, thread_name_prefix="ingest-md5")
        self._multihash_lane = ThreadPoolExecutor(1, thread_name_prefix="ingest-hash")
        self._last_writes: list[asyncio.Future[None] | None] = [None] * len(writers)
        self._in_flight: deque[asyncio.Future[Any]] = deque()
        self._free: asyncio.Queue[bytearray] = asyncio.Queue()
        for _ in range(MAX_IN_FLIGHT + 1):
            self._free.put_nowait(bytearray(BATCH_SIZE))
        self._buffer: bytearray | None = None
        self._filled = 0

    def _count(self, received: int) -> None:
        self.size += received
        if self.size > self.size_cap:
            raise ImageTooLarge(self.size_cap)
        if self.expected_size is not None and self.size > self.expected_size:
            raise SizeMismatch(
                f"Image data is longer than the declared size of {self.expected_size} bytes."
            )

    async def receive(self, chunk: bytes) -> None:
        """Copies `chunk` into the current batch; full batches go to the lanes."""
        self._count(len(chunk))
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

    def facts(self, expect: Expectations, inspection: Inspection | None) -> dict[str, Any]:
        """The data's facts once everything arrived; raises when they are not as expected."""
        if expect.size is not None and self.size != expect.size:
            raise SizeMismatch(f"Image data is {self.size} bytes, not the declared {expect.size}.")
        checksum, hash_value = self.md5.hexdigest(), self.multihash.hexdigest()
        if expect.checksum is not None and expect.checksum.lower() != checksum:
            raise ChecksumMismatch("md5 checksum", expect.checksum, checksum)
        if expect.hash_value is not None and expect.hash_value.lower() != hash_value:
            raise ChecksumMismatch(self.multihash.name, expect.hash_value, hash_value)
        virtual_size = detected = problem = None
        if self.inspector is not None and inspection is not None:
            result = self.inspector.finish(self.size)
            try:
                check(result, inspection.declared_format)
            except UnsafeImage as unsafe:
                if inspection.enforce:
                    raise
                problem = unsafe.reason
            detected = result.detected_format
            # What a format's header claims is no size when the data fails inspection.
            virtual_size = None if problem else result.virtual_size
        return {
            "format_problem": problem,
            "size": self.size,
            "checksum": checksum,
            "hash_algo": self.multihash.name,
            "hash_value": hash_value,
            "virtual_size": virtual_size,
            "detected_format": detected,
        }

    async def _next_free_buffer(self) -> bytearray:
        while self._free.empty() and self._in_flight:
            # Surfaces a failed batch now rather than at the end of the stream.
            await self._in_flight.popleft()
        return await self._free.get()

    def _dispatch(self) -> None:
        """Queues the current batch on every lane; its buffer returns to the pool when all of
        them are done with it."""
        buffer, filled = self._buffer, self._filled
        assert buffer is not None
        self._buffer, self._filled = None, 0
        batch = memoryview(buffer)[:filled]
        if self.inspector is not None:
            self.inspector.feed(batch)
        loop = asyncio.get_running_loop()
        writes = []
        for index, writer in enumerate(self.writers):
            write = asyncio.ensure_future(_write_after(self._last_writes[index], writer, batch))
            self._last_writes[index] = write
            writes.append(write)
        done = asyncio.gather(
            loop.run_in_executor(self._md5_lane, self.md5.update, batch),
            loop.run_in_executor(self._multihash_lane, self.multihash.update, batch),
            *writes,
        )

        def recycle(_: asyncio.Future[Any]) -> None:
            batch.release()
            self._free.put_nowait(buffer)

        done.add_done_callback(recycle)
        self._in_flight.append(done)

    async def abandon(self) -> None:
        """Stops every lane; returns once no lane uses a buffer or a writer any more."""
        pending = list(self._in_flight)
        self._in_flight.clear()
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(
            *(write for write in self._last_writes if write is not None), return_exceptions=True
        )

    def close(self) -> None:
        self._md5_lane.shutdown(wait=False)
        self._multihash_lane.shutdown(wait=False)


async def _write_after(
    previous: asyncio.Future[None] | None, writer: StoreWriter, batch: memoryview
) -> None:
    if previous is not None:
        await previous
    await writer.write(batch)
