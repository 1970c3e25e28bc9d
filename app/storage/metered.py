"""A store that counts: its failures (StoreError, by operation) and the bytes it moves.

The registry wraps every store in one when metrics are on. Bytes are added up per writer and per
reader and handed to the metrics every FLUSH_BYTES and at the end, so that a transfer costs a
few counter updates, not one per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import contextmanager

from app.metrics import Metrics
from app.storage.base import Store, StoredObject, StoreWriter
from app.storage.errors import StoreError

FLUSH_BYTES = 64 * 1024 * 1024


class MeteredStore:
    def __init__(self, store: Store, metrics: Metrics):
        self.inner = store
        self.metrics = metrics
        self.store_id = store.store_id
        self.schemes = store.schemes
        self.capabilities = store.capabilities

    @contextmanager
    def counting_errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StoreError as error:
            self.metrics.store_error(self.store_id, operation, error)
            raise

    def contains(self, location: str) -> bool:
        return self.inner.contains(location)

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        with self.counting_errors("open_writer"):
            writer = await self.inner.open_writer(key, size_hint)
        return _MeteredWriter(writer, self)

    def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        with self.counting_errors("read"):
            chunks = self.inner.open_reader(location, offset, length)
        return self._read(chunks)

    async def _read(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        unflushed = 0
        try:
            with self.counting_errors("read"):
                async for chunk in chunks:
                    unflushed += len(chunk)
                    if unflushed >= FLUSH_BYTES:
                        self.metrics.bytes_downloaded(self.store_id, unflushed)
                        unflushed = 0
                    yield chunk
        finally:
            if unflushed:
                self.metrics.bytes_downloaded(self.store_id, unflushed)
            # A reader left early (the client went away) is closed now, not when collected.
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def stat(self, location: str) -> int:
        with self.counting_errors("stat"):
            return await self.inner.stat(location)

    async def delete(self, location: str) -> None:
        with self.counting_errors("delete"):
            await self.inner.delete(location)

    async def discard(self, key: str) -> None:
        with self.counting_errors("discard"):
            await self.inner.discard(key)

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        with self.counting_errors("purge_staging"):
            return await self.inner.purge_staging(older_than, keep=keep)


class _MeteredWriter:
    def __init__(self, writer: StoreWriter, store: MeteredStore):
        self.inner = writer
        self.store = store
        self.unflushed = 0

    def _flush(self) -> None:
        if self.unflushed:
            self.store.metrics.bytes_uploaded(self.store.store_id, self.unflushed)
            self.unflushed = 0

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        with self.store.counting_errors("write"):
            await self.inner.write(chunk)
        self.unflushed += len(chunk)
        if self.unflushed >= FLUSH_BYTES:
            self._flush()

    async def commit(self) -> StoredObject:
        try:
            with self.store.counting_errors("commit"):
                return await self.inner.commit()
        finally:
            self._flush()

    async def cancel(self) -> None:
        try:
            with self.store.counting_errors("cancel"):
                await self.inner.cancel()
        finally:
            self._flush()
