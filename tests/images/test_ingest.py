"""The ingest pipeline on its own: real file stores, no database, no HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from app.images.formats import UnsafeImage
from app.images.ingest import (
    BATCH_SIZE,
    ChecksumMismatch,
    Expectations,
    ImageTooLarge,
    IngestFacts,
    Inspection,
    SizeMismatch,
    SourceStalled,
    StoreFailure,
    Target,
    ingest,
)
from app.storage.errors import StoreUnavailable
from app.storage.file import FileStore

DATA = os.urandom(2 * BATCH_SIZE + 12345)  # two full batches and a partial one


async def chunks(data: bytes, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def files_in(*stores: FileStore) -> list[Path]:
    """Everything on disk in the stores, staging included."""
    return [path for store in stores for path in store.root.rglob("*") if path.is_file()]


def run(
    source: AsyncIterator[bytes],
    targets: Iterable[Target],
    **options: object,
) -> IngestFacts:
    return asyncio.run(ingest(source, list(targets), size_cap=1 << 40, **options))  # type: ignore[arg-type]


@pytest.fixture
def stores(tmp_path: Path) -> tuple[FileStore, FileStore]:
    return FileStore("one", tmp_path / "one", fsync=False), FileStore("two", tmp_path / "two")


def test_facts_of_the_data(stores: tuple[FileStore, FileStore]) -> None:
    one, _ = stores
    facts = run(chunks(DATA), [Target(one, "image.1")])
    assert facts.size == len(DATA)
    assert facts.checksum == hashlib.md5(DATA).hexdigest()
    assert (facts.hash_algo, facts.hash_value) == ("sha512", hashlib.sha512(DATA).hexdigest())
    assert facts.detected_format is None  # not inspected
    assert facts.virtual_size is None
    (stored,) = facts.stored
    assert stored.size == len(DATA)
    assert (one.root / "image.1").read_bytes() == DATA


def test_several_stores_get_the_same_bytes(stores: tuple[FileStore, FileStore]) -> None:
    one, two = stores
    facts = run(
        chunks(DATA, 777_777),
        [Target(one, "image.2"), Target(two, "image.2")],
        expect=Expectations(size=len(DATA), checksum=hashlib.md5(DATA).hexdigest().upper()),
    )
    assert [obj.location for obj in facts.stored] == [
        one.location_for("image.2"),
        two.location_for("image.2"),
    ]
    assert (one.root / "image.2").read_bytes() == DATA
    assert (two.root / "image.2").read_bytes() == DATA


def test_inspection_reports_the_format_and_refuses_a_mismatch(
    stores: tuple[FileStore, FileStore],
) -> None:
    one, _ = stores
    facts = run(chunks(DATA), [Target(one, "raw.1")], inspection=Inspection("raw"))
    assert (facts.detected_format, facts.virtual_size) == ("raw", len(DATA))
    with pytest.raises(UnsafeImage, match="does not match"):
        run(chunks(DATA), [Target(one, "raw.2")], inspection=Inspection("qcow2"))
    assert files_in(one) == [one.root / "raw.1"]


@pytest.mark.parametrize(
    ("expect", "error"),
    [
        (Expectations(size=len(DATA) - 1), SizeMismatch),  # longer than declared
        (Expectations(size=len(DATA) + 1), SizeMismatch),  # shorter than declared
        (Expectations(checksum="0" * 32), ChecksumMismatch),
        (Expectations(hash_value="0" * 128), ChecksumMismatch),
    ],
)
def test_data_that_is_not_as_expected_leaves_nothing(
    stores: tuple[FileStore, FileStore], expect: Expectations, error: type[Exception]
) -> None:
    with pytest.raises(error):
        run(chunks(DATA), [Target(store, "image.3") for store in stores], expect=expect)
    assert files_in(*stores) == []


def test_the_size_cap_is_enforced_while_streaming_and_up_front(
    stores: tuple[FileStore, FileStore],
) -> None:
    one, _ = stores
    with pytest.raises(ImageTooLarge, match="maximum image size of 1000 bytes"):
        asyncio.run(ingest(chunks(DATA), [Target(one, "big")], size_cap=1000))
    with pytest.raises(ImageTooLarge):
        asyncio.run(
            ingest(chunks(b""), [Target(one, "big")], size_cap=10, expect=Expectations(size=11))
        )
    assert files_in(one) == []


def test_a_source_that_stalls_is_stopped(stores: tuple[FileStore, FileStore]) -> None:
    one, _ = stores

    async def stalling() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        await asyncio.sleep(30)
        yield DATA[1000:]

    with pytest.raises(SourceStalled, match=r"No image data arrived for 0\.2 seconds"):
        run(stalling(), [Target(one, "slow")], idle_timeout=0.2)
    assert files_in(one) == []


def test_a_failing_source_or_cancellation_leaves_nothing(
    stores: tuple[FileStore, FileStore],
) -> None:
    class Broken(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield DATA[: BATCH_SIZE + 1]
        raise Broken()

    with pytest.raises(Broken):
        run(broken(), [Target(store, "broken") for store in stores])

    async def cancelled() -> None:
        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield DATA[:65536]
                await asyncio.sleep(0)

        task = asyncio.create_task(
            ingest(endless(), [Target(stores[0], "endless")], size_cap=1 << 40)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert files_in(*stores) == []


def test_one_failing_store_cancels_every_writer(stores: tuple[FileStore, FileStore]) -> None:
    one, two = stores

    class FailingStore(FileStore):
        async def open_writer(self, key: str, size_hint: int | None = None):  # type: ignore[no-untyped-def]
            writer = await super().open_writer(key, size_hint)
            original = writer.write
            written = 0

            async def write(chunk: bytes | bytearray | memoryview) -> None:
                nonlocal written
                written += len(chunk)
                if written > BATCH_SIZE:
                    raise StoreUnavailable("the disk went away")
                await original(chunk)

            writer.write = write  # type: ignore[method-assign]
            return writer

    failing = FailingStore("failing", two.root)
    with pytest.raises(StoreFailure, match="the disk went away"):
        run(chunks(DATA), [Target(one, "image.4"), Target(failing, "image.4")])
    assert files_in(one, two) == []


def test_many_batches_through_the_few_reused_buffers(
    stores: tuple[FileStore, FileStore],
) -> None:
    """Many batches through the few reused buffers: every byte lands where it belongs."""
    one, _ = stores
    data = os.urandom(6 * BATCH_SIZE + 1)
    facts = run(chunks(data, 3_000_001), [Target(one, "many")])
    assert facts.checksum == hashlib.md5(data).hexdigest()
    assert (one.root / "many").read_bytes() == data
