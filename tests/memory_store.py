"""Test-only stores for what no real backend does on demand.

`MemoryStore` holds objects a test puts there, under `mem://<store id>/<name>` locations: a
stand-in for a store whose data clients point images at (an http store), so location tests
need no web server. `FailingAfter` wraps a real store and breaks its reads after a given number
of bytes, since no real backend can be made to fail at an exact byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

from app.storage.base import Capability, Store, StoreWriter
from app.storage.errors import ObjectNotFound, StoreUnavailable
from app.storage.registry import StoreInfo, StoreRegistry


class MemoryStore:
    schemes = frozenset({"mem"})

    def __init__(self, store_id: str, *, writable: bool = False) -> None:
        self.store_id = store_id
        self.objects: dict[str, bytes] = {}
        self.capabilities = Capability.READ | Capability.READ_RANDOM
        if writable:
            self.capabilities |= Capability.WRITE | Capability.DELETE

    def put(self, name: str, data: bytes) -> str:
        location = f"mem://{self.store_id}/{name}"
        self.objects[location] = data
        return location

    def contains(self, location: str) -> bool:
        return location.startswith(f"mem://{self.store_id}/")

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        raise NotImplementedError("tests put objects with `put`")

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self._data(location)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, 4096):
            yield data[start : min(start + 4096, end)]

    async def stat(self, location: str) -> int:
        return len(self._data(location))

    async def delete(self, location: str) -> None:
        self.objects.pop(location, None)

    async def discard(self, key: str) -> None:
        pass

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        return 0

    def _data(self, location: str) -> bytes:
        try:
            return self.objects[location]
        except KeyError:
            raise ObjectNotFound(location) from None


class FailingAfter:
    """`store`, except that each read fails (StoreUnavailable) once `budget` bytes went out."""

    def __init__(self, store: Store, budget: int) -> None:
        self.inner = store
        self.budget = budget
        self.store_id = store.store_id
        self.schemes = store.schemes
        self.capabilities = store.capabilities

    def contains(self, location: str) -> bool:
        return self.inner.contains(location)

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        return await self.inner.open_writer(key, size_hint)

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.inner.open_reader(location, offset, length):
            if sent + len(chunk) > self.budget:
                yield chunk[: self.budget - sent]
                raise StoreUnavailable(f"connection to {location} lost")
            sent += len(chunk)
            yield chunk

    async def stat(self, location: str) -> int:
        return await self.inner.stat(location)

    async def delete(self, location: str) -> None:
        await self.inner.delete(location)

    async def discard(self, key: str) -> None:
        await self.inner.discard(key)

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        return await self.inner.purge_staging(older_than, keep=keep)


def with_stores(registry: StoreRegistry, *extra: Store, **replaced: Store) -> StoreRegistry:
    """`registry`'s stores plus `extra`, some replaced (by id), with the same default."""
    ids = registry.ids()
    stores = {store_id: replaced.get(store_id, registry.get(store_id)) for store_id in ids}
    stores.update({store.store_id: store for store in extra})
    default = next(store_id for store_id in ids if registry.is_default(store_id))
    infos = {store_id: registry.info(store_id) for store_id in ids}
    infos.update({store.store_id: StoreInfo(type="http") for store in extra})
    return StoreRegistry(stores, default, infos=infos)
