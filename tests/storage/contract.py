"""The conformance suite every store driver passes (distribution's testsuites, in pytest).

A backend's test module subclasses `StoreContract` as `Test<Name>Contract` and provides the
`store` fixture (reading in chunks of `read_chunk_size`), the `other_store` fixture and the hooks
below; every test here then runs against it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import ClassVar

import pytest

from app.storage.base import Capability, Store, StoredObject, StoreWriter
from app.storage.errors import ObjectNotFound, StoreError

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def new_key() -> str:
    return str(uuid.uuid4())


async def put(store: Store, key: str, data: bytes, piece: int = 256 * 1024) -> StoredObject:
    writer = await store.open_writer(key, len(data))
    for start in range(0, len(data), piece):
        await writer.write(data[start : start + piece])
    return await writer.commit()


async def read_chunks(
    store: Store, location: str, offset: int = 0, length: int | None = None
) -> list[bytes]:
    return [chunk async for chunk in store.open_reader(location, offset, length)]


async def read(store: Store, location: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(await read_chunks(store, location, offset, length))


class StoreContract:
    pytestmark: ClassVar = [pytest.mark.anyio]

    # The chunk size the `store` fixture reads in, so sizes around it can be tested.
    read_chunk_size: ClassVar[int] = 64 * 1024

    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError("a backend's test class provides the store")

    @pytest.fixture
    def other_store(self) -> Store:
        """A second store of the same driver somewhere else (another root, container, bucket)."""
        raise NotImplementedError("a backend's test class provides the other store")

    def location_for(self, store: Store, key: str) -> str:
        """Where `key` lands once committed (so its absence can be checked before that)."""
        raise NotImplementedError

    async def staged(self, store: Store) -> list[str]:
        """Whatever uncommitted data the backend still holds (staging files, open uploads)."""
        raise NotImplementedError

    def staging_location(self, store: Store, key: str) -> str | None:
        """A URI naming what a writer of `key` has staged, as someone probing the store would
        spell it; None when staged data has no such address."""
        raise NotImplementedError

    async def backdate(self, store: Store, key: str, seconds: float) -> None:
        """Makes what a writer of `key` has staged look untouched for `seconds`."""
        raise NotImplementedError

    def foreign_locations(self, store: Store) -> list[str]:
        """Locations this store must refuse to read; backends add their own tricks."""
        return [
            "nosuchscheme://host/container/object",
            *(f"{scheme}:///etc/passwd" for scheme in sorted(store.schemes)),
        ]

    # --- writing and reading back --------------------------------------------------------

    @pytest.mark.parametrize(
        ("chunks", "extra"),
        [
            pytest.param(0, 0, id="empty"),
            pytest.param(0, 1, id="one-byte"),
            pytest.param(1, 0, id="one-chunk"),
            pytest.param(1, 1, id="chunk-plus-one"),
            pytest.param(0, 3 * MiB + 7, id="few-MiB"),
        ],
    )
    async def test_round_trip(self, store: Store, chunks: int, extra: int) -> None:
        data = payload(chunks * self.read_chunk_size + extra)
        key = new_key()
        stored = await put(store, key, data)
        assert stored == StoredObject(location=self.location_for(store, key), size=len(data))
        assert await store.stat(stored.location) == len(data)
        got = await read_chunks(store, stored.location)
        assert b"".join(got) == data
        assert all(got), "no empty chunks"
        assert await self.staged(store) == []

    async def test_writes_accept_bytes_like_objects(self, store: Store) -> None:
        data = payload(10_000, seed=1)
        writer = await store.open_writer(new_key())
        await writer.write(bytearray(data[:3000]))
        await writer.write(memoryview(data)[3000:7000])
        await writer.write(b"")
        await writer.write(data[7000:])
        stored = await writer.commit()
        assert stored.size == len(data)
        assert await read(store, stored.location) == data

    async def test_a_writer_keeps_no_reference_to_a_chunk(self, store: Store) -> None:
        # As a request body is received: one buffer, refilled as soon as `write` returns. A
        # driver that queued a chunk (a part being collected) instead of copying it would
        # store what the buffer held later.
        data = payload(6 * MiB + 12_345, seed=5)
        offset = 7
        buffer = bytearray(200_000)
        view = memoryview(buffer)
        writer = await store.open_writer(new_key(), len(data))
        position, whole = 0, True
        while position < len(data):
            # In turn the bytearray itself and a memoryview slice of it, not at its start.
            if whole and len(data) - position >= len(buffer):
                buffer[:] = data[position : position + len(buffer)]
                await writer.write(buffer)
                position += len(buffer)
            else:
                size = min(len(buffer) - offset, len(data) - position)
                buffer[offset : offset + size] = data[position : position + size]
                await writer.write(view[offset : offset + size])
                position += size
            buffer[:] = b"\xa5" * len(buffer)
            whole = not whole
        stored = await writer.commit()
        buffer[:] = bytes(len(buffer))
        assert await read(store, stored.location) == data

    async def test_size_hint_is_only_a_hint(self, store: Store) -> None:
        writer = await store.open_writer(new_key(), size_hint=1000)
        await writer.write(b"short")
        stored = await writer.commit()
        assert (stored.size, await read(store, stored.location)) == (5, b"short")

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            pytest.param(10, 100, slice(10, 110), id="middle"),
            pytest.param(1, None, slice(1, None), id="to-the-end"),
            pytest.param(70_000, 40_000, slice(70_000, 110_000), id="across-chunks"),
            pytest.param(196_000, 10_000, slice(196_000, None), id="past-eof-clamps"),
            pytest.param(0, 0, slice(0, 0), id="zero-length"),
            pytest.param(200_000, None, slice(0, 0), id="offset-at-eof"),
            pytest.param(300_000, 5, slice(0, 0), id="offset-past-eof"),
        ],
    )
    async def test_ranged_reads(
        self, store: Store, offset: int, length: int | None, expected: slice
    ) -> None:
        assert Capability.READ_RANDOM in store.capabilities
        data = payload(200_000, seed=2)
        stored = await put(store, new_key(), data)
        assert await read(store, stored.location, offset, length) == data[expected]

    async def test_concurrent_readers(self, store: Store) -> None:
        data = payload(MiB, seed=3)
        stored = await put(store, new_key(), data)
        results = await asyncio.gather(
            *(read(store, stored.location, offset) for offset in range(0, MiB, MiB // 8))
        )
        assert results == [data[offset:] for offset in range(0, MiB, MiB // 8)]

    async def test_a_reader_closed_early_leaves_the_object_readable(self, store: Store) -> None:
        data = payload(5 * self.read_chunk_size, seed=4)
        stored = await put(store, new_key(), data)
        reader = store.open_reader(stored.location)
        assert data.startswith(await anext(reader))
        await reader.aclose()  # type: ignore[attr-defined]
        assert await read(store, stored.location) == data

    # --- nothing visible before commit, nothing left after cancel ------------------------

    async def test_nothing_is_visible_before_commit(self, store: Store) -> None:
        key = new_key()
        location = self.location_for(store, key)
        writer = await store.open_writer(key)
        await writer.write(payload(1000))
        with pytest.raises(ObjectNotFound):
            await store.stat(location)
        with pytest.raises(ObjectNotFound):
            await read(store, location)
        stored = await writer.commit()
        assert await store.stat(stored.location) == 1000

    async def test_cancel_leaves_nothing(self, store: Store) -> None:
        key = new_key()
        writer = await store.open_writer(key)
        await writer.write(payload(300_000))
        await writer.write(payload(5))
        await writer.cancel()
        with pytest.raises(ObjectNotFound):
            await store.stat(self.location_for(store, key))
        assert await self.staged(store) == []
        # The key is free again.
        stored = await put(store, key, b"again")
        assert await read(store, stored.location) == b"again"

    async def test_cancel_without_writes_and_twice(self, store: Store) -> None:
        writer = await store.open_writer(new_key())
        await writer.cancel()
        await writer.cancel()
        assert await self.staged(store) == []

    async def test_cancel_after_the_writing_task_was_cancelled(self, store: Store) -> None:
        key = new_key()
        writer = await store.open_writer(key)
        task = asyncio.create_task(writer.write(payload(8 * MiB)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.cancel()
        assert await self.staged(store) == []
        with pytest.raises(ObjectNotFound):
            await store.stat(self.location_for(store, key))

    # --- the writer's guards -------------------------------------------------------------

    async def test_nothing_is_accepted_after_commit(self, store: Store) -> None:
        writer = await store.open_writer(new_key())
        await writer.write(b"data")
        stored = await writer.commit()
        with pytest.raises(StoreError):
            await writer.write(b"more")
        with pytest.raises(StoreError):
            await writer.commit()
        assert await read(store, stored.location) == b"data"

    async def test_nothing_is_accepted_after_cancel(self, store: Store) -> None:
        writer = await store.open_writer(new_key())
        await writer.write(b"data")
        await writer.cancel()
        with pytest.raises(StoreError):
            await writer.write(b"more")
        with pytest.raises(StoreError):
            await writer.commit()
        assert await self.staged(store) == []

    async def test_a_committed_object_is_never_replaced(self, store: Store) -> None:
        key = new_key()
        first = await store.open_writer(key)
        await first.write(b"first")
        second: StoreWriter | None
        try:
            second = await store.open_writer(key)
        except StoreError:
            second = None  # a second writer of a key may be refused at once
        if second is not None:
            await second.write(b"second")
        stored = await first.commit()
        if second is not None:
            with pytest.raises(StoreError):
                await second.commit()
            await second.cancel()
        assert await read(store, stored.location) == b"first"
        assert await self.staged(store) == []

    async def test_a_writer_opened_after_commit_cannot_replace_it(self, store: Store) -> None:
        key = new_key()
        stored = await put(store, key, b"first")

        async def replace() -> None:
            # Refusing at open_writer or at commit are both fine.
            writer = await store.open_writer(key)
            try:
                await writer.write(b"second")
                await writer.commit()
            finally:
                await writer.cancel()

        with pytest.raises(StoreError):
            await replace()
        assert await read(store, stored.location) == b"first"
        assert await self.staged(store) == []

    async def test_concurrent_writers_to_different_keys(self, store: Store) -> None:
        async def upload(seed: int) -> tuple[StoredObject, bytes]:
            data = payload(200_000 + seed, seed=seed)
            writer = await store.open_writer(new_key())
            for start in range(0, len(data), 10_000):
                await writer.write(data[start : start + 10_000])
                await asyncio.sleep(0)
            return await writer.commit(), data

        results = await asyncio.gather(*(upload(seed) for seed in range(8)))
        assert len({stored.location for stored, _ in results}) == 8
        for stored, data in results:
            assert await read(store, stored.location) == data

    # --- stat and delete -----------------------------------------------------------------

    async def test_missing_objects(self, store: Store) -> None:
        location = self.location_for(store, new_key())
        with pytest.raises(ObjectNotFound):
            await store.stat(location)
        reader = store.open_reader(location)
        with pytest.raises(ObjectNotFound):
            await anext(reader)
        await store.delete(location)  # not an error

    async def test_delete(self, store: Store) -> None:
        stored = await put(store, new_key(), payload(1234))
        assert await store.stat(stored.location) == 1234
        await store.delete(stored.location)
        with pytest.raises(ObjectNotFound):
            await store.stat(stored.location)
        with pytest.raises(ObjectNotFound):
            await read(store, stored.location)
        await store.delete(stored.location)

    async def test_foreign_locations_are_refused(self, store: Store) -> None:
        for location in self.foreign_locations(store):
            with pytest.raises(StoreError):
                await read(store, location)
            with pytest.raises(StoreError):
                await store.stat(location)

    async def test_capabilities(self, store: Store) -> None:
        expected = Capability.READ | Capability.WRITE | Capability.DELETE
        assert expected in store.capabilities

    # --- locations -----------------------------------------------------------------------

    async def test_contains_its_own_locations_only(self, store: Store, other_store: Store) -> None:
        ours = await put(store, new_key(), b"ours")
        theirs = await put(other_store, new_key(), b"theirs")
        assert ours.location.partition(":")[0] in store.schemes
        assert store.contains(ours.location)
        assert store.contains(self.location_for(store, new_key())), "existing or not"
        assert not store.contains(theirs.location)
        assert not other_store.contains(ours.location)
        _, colon, rest = ours.location.partition(":")
        assert not store.contains(f"nosuchscheme{colon}{rest}")
        for location in self.foreign_locations(store):
            assert not store.contains(location), location

        key = new_key()
        writer = await store.open_writer(key)
        await writer.write(b"staged")
        staging = self.staging_location(store, key)
        if staging is not None:
            assert not store.contains(staging)
            with pytest.raises(StoreError):
                await store.stat(staging)
        await writer.cancel()

    # --- discard: what an upload that will never finish left behind ----------------------

    async def test_discard_after_a_partial_write(self, store: Store) -> None:
        key = new_key()
        # As if its process died: `dead` neither commits nor cancels before the discard.
        dead = await store.open_writer(key)
        await dead.write(payload(300_000))
        await store.discard(key)
        assert await self.staged(store) == []
        with pytest.raises(ObjectNotFound):
            await store.stat(self.location_for(store, key))

        retry = await store.open_writer(key)
        await retry.write(b"again")
        await dead.cancel()  # only its own data, which is gone: the retry's is untouched
        stored = await retry.commit()
        assert await read(store, stored.location) == b"again"
        assert await self.staged(store) == []

    async def test_discard_removes_a_committed_object(self, store: Store) -> None:
        key = new_key()
        stored = await put(store, key, payload(1234))
        await store.discard(key)
        with pytest.raises(ObjectNotFound):
            await store.stat(stored.location)
        with pytest.raises(ObjectNotFound):
            await read(store, stored.location)
        await store.discard(key)  # once more: nothing there, not an error
        assert await self.staged(store) == []

    async def test_discard_of_an_unknown_key(self, store: Store) -> None:
        kept = await put(store, new_key(), b"kept")
        await store.discard(new_key())
        assert await read(store, kept.location) == b"kept"

    # --- purge_staging -------------------------------------------------------------------

    async def test_purge_staging_removes_only_stale_uploads(self, store: Store) -> None:
        assert await store.purge_staging(older_than=600) == 0
        committed = await put(store, new_key(), b"committed")
        stale_key, spared_key = new_key(), new_key()
        stale = await store.open_writer(stale_key)
        await stale.write(b"left by a crash")
        spared = await store.open_writer(spared_key)
        await spared.write(b"a slow client, still connected")
        fresh = await store.open_writer(new_key())
        await fresh.write(b"still uploading")
        await self.backdate(store, stale_key, 3600)
        await self.backdate(store, spared_key, 3600)

        assert await store.purge_staging(older_than=600, keep={spared_key}) == 1
        assert len(await self.staged(store)) == 2
        for writer, data in [
            (fresh, b"still uploading"),
            (spared, b"a slow client, still connected"),
        ]:
            stored = await writer.commit()
            assert await read(store, stored.location) == data
        await stale.cancel()
        assert await self.staged(store) == []
        with pytest.raises(ObjectNotFound):
            await store.stat(self.location_for(store, stale_key))
        assert await read(store, committed.location) == b"committed"
