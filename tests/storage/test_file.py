from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.storage.base import Store
from app.storage.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from app.storage.file import FileStore
from tests.storage.contract import MiB, StoreContract, new_key, payload, put, read, read_chunks

pytestmark = pytest.mark.anyio


class TestFileStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return FileStore("local", tmp_path / "images", read_chunk_size=self.read_chunk_size)

    @pytest.fixture
    def other_store(self, tmp_path: Path) -> Store:
        # Its root's name starts with the other's: locations are compared by directory, not prefix.
        return FileStore("other", tmp_path / "images2")

    def location_for(self, store: Store, key: str) -> str:
        assert isinstance(store, FileStore)
        return f"file://{store.root / key}"

    async def staged(self, store: Store) -> list[str]:
        assert isinstance(store, FileStore)
        return os.listdir(store.staging) if store.staging.exists() else []

    def staging_location(self, store: Store, key: str) -> str | None:
        assert isinstance(store, FileStore)
        return f"file://{store.staging / key}"

    async def backdate(self, store: Store, key: str, seconds: float) -> None:
        assert isinstance(store, FileStore)
        then = time.time() - seconds
        os.utime(store.staging / key, (then, then))


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore("local", tmp_path / "images", read_chunk_size=64 * 1024)


def staged(store: FileStore) -> list[Path]:
    return list(store.staging.iterdir()) if store.staging.exists() else []


# --- layout and durability ------------------------------------------------------------------


async def test_objects_are_plain_files_named_by_key(store: FileStore) -> None:
    key = new_key()
    writer = await store.open_writer(key)
    await writer.write(b"abc")
    assert not (store.root / key).exists()
    assert staged(store) == [store.staging / key]
    stored = await writer.commit()
    assert stored.location == f"file://{store.root / key}"
    assert (store.root / key).read_bytes() == b"abc"
    assert staged(store) == []


async def test_the_root_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    store = FileStore("local", tmp_path / "link" / "images")
    stored = await put(store, "key", b"x")
    assert stored.location == f"file://{tmp_path.resolve() / 'real' / 'images' / 'key'}"
    assert await read(store, stored.location) == b"x"


@pytest.mark.parametrize("fsync", [True, False])
async def test_fsync_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    store = FileStore("local", tmp_path, fsync=fsync)
    stored = await put(store, "key", b"durable")
    assert await read(store, stored.location) == b"durable"
    # The file before it is linked, then the directory that now names it.
    assert len(synced) == (2 if fsync else 0)
    await store.delete(stored.location)
    assert len(synced) == (3 if fsync else 0)
    await put(store, "other", b"discarded")
    await store.discard("other")
    assert len(synced) == (6 if fsync else 0)


async def test_reads_come_in_whole_chunks(store: FileStore) -> None:
    data = payload(3 * store.read_chunk_size + 10)
    stored = await put(store, "key", data)
    sizes = [len(chunk) for chunk in await read_chunks(store, stored.location)]
    assert sizes == [store.read_chunk_size] * 3 + [10]
    sizes = [len(chunk) for chunk in await read_chunks(store, stored.location, 5, 70_000)]
    assert sizes == [store.read_chunk_size, 70_000 - store.read_chunk_size]


async def test_a_file_system_without_hard_links(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    stored = await put(store, "key", b"renamed")
    assert await read(store, stored.location) == b"renamed"
    with pytest.raises(StoreError, match="already exists"):
        await put(store, "key", b"again")
    assert (store.root / "key").read_bytes() == b"renamed"
    assert staged(store) == []


# --- failures become store errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [(errno.ENOSPC, StoreFull), (errno.EDQUOT, StoreFull), (errno.EIO, StoreUnavailable)],
)
async def test_write_failures(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, code: int, error: type[StoreError]
) -> None:
    writer = await store.open_writer("key")
    await writer.write(b"fits")
    # A full disk cannot be made on demand; the store sees it only as write(2)'s errno.
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: _raise(OSError(code, os.strerror(code))))
    with pytest.raises(error):
        await writer.write(b"does not fit")
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(StoreError):
        await writer.write(b"fits again")  # the file holds an unknown prefix now
    with pytest.raises(StoreError):
        await writer.commit()
    await writer.cancel()
    assert staged(store) == []
    assert not (store.root / "key").exists()


@pytest.mark.parametrize("failing", [1, 2], ids=["file", "directory"])
async def test_a_failed_fsync_commits_nothing(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    writer = await store.open_writer("key")
    await writer.write(b"data")
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StoreFull):
        await writer.commit()
    await writer.cancel()
    assert staged(store) == []
    assert not (store.root / "key").exists()


async def test_a_size_hint_beyond_the_free_space_is_refused_at_once(store: FileStore) -> None:
    with pytest.raises(StoreFull):
        await store.open_writer("key", size_hint=1 << 62)
    assert staged(store) == []


async def test_an_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = FileStore("local", tmp_path / "file" / "images")
    with pytest.raises(StoreUnavailable):
        await store.open_writer("key")


def _raise(error: BaseException) -> None:
    raise error


# --- cancellation in flight -----------------------------------------------------------------


async def test_a_cancelled_commit_leaves_nothing(store: FileStore) -> None:
    writer = await store.open_writer("key")
    await writer.write(payload(MiB))
    task = asyncio.create_task(writer.commit())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.cancel()
    # The commit's thread runs on; what it published is removed once it returns.
    deadline = time.monotonic() + 5
    while ((store.root / "key").exists() or staged(store)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not (store.root / "key").exists()
    assert staged(store) == []


def _descriptors_of(path: Path) -> int:
    # Only those on this file: other tests' threads may open and close their own meanwhile.
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


_WORKERS = 4


async def _released(path: Path) -> bool:
    """True if, once every thread call left behind has run, nothing holds `path` open.

    Polling the count is not enough: an open abandoned by a cancel may not have run yet, and
    its close follows it as a second call, handed to the pool by the first one's callback.
    """
    loop = asyncio.get_running_loop()
    for _ in range(3):
        # All workers meeting at one barrier: every call queued before it has returned.
        barrier = threading.Barrier(_WORKERS)
        await asyncio.gather(*(loop.run_in_executor(None, barrier.wait) for _ in range(_WORKERS)))
        await asyncio.sleep(0)  # the callbacks of those calls, which may queue the next ones
    return _descriptors_of(path) == 0


async def test_readers_release_their_descriptors(store: FileStore) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=_WORKERS))
    stored = await put(store, "key", payload(10 * store.read_chunk_size))
    path = store.root / "key"
    for _ in range(20):
        reader = store.open_reader(stored.location)
        await anext(reader)
        assert _descriptors_of(path) == 1
        await reader.aclose()  # type: ignore[attr-defined]
        assert await _released(path), "aclose"

    async def read_forever() -> None:
        while True:
            # As a server streams it: closed when the stream is, not whenever it is collected.
            async with contextlib.aclosing(store.open_reader(stored.location)) as reader:  # type: ignore[type-var]
                async for _ in reader:
                    await asyncio.sleep(0)

    task = asyncio.create_task(read_forever())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _released(path)


# --- staging clean-up -----------------------------------------------------------------------


async def test_purge_staging_removes_only_stale_files(store: FileStore) -> None:
    assert await store.purge_staging(older_than=0) == 0  # no staging directory yet
    stale = await store.open_writer("stale")
    await stale.write(b"left by a crash")
    fresh = await store.open_writer("fresh")
    await fresh.write(b"still uploading")
    an_hour_ago = time.time() - 3600
    os.utime(store.staging / "stale", (an_hour_ago, an_hour_ago))

    assert await store.purge_staging(older_than=600) == 1
    assert staged(store) == [store.staging / "fresh"]
    stored = await fresh.commit()
    assert await read(store, stored.location) == b"still uploading"
    await stale.cancel()  # its file is already gone; still fine
    assert staged(store) == []


# --- a discarded upload ---------------------------------------------------------------------


async def _purge(store: FileStore, key: str) -> None:
    an_hour_ago = time.time() - 3600
    os.utime(store.staging / key, (an_hour_ago, an_hour_ago))
    assert await store.purge_staging(older_than=600) == 1


@pytest.mark.parametrize("remove", [FileStore.discard, _purge], ids=["discarded", "purged"])
@pytest.mark.parametrize("staged_again", [False, True], ids=["gone", "staged-again"])
async def test_a_writer_whose_staging_file_was_removed_does_not_publish(
    store: FileStore, remove: Callable[[FileStore, str], Awaitable[None]], staged_again: bool
) -> None:
    writer = await store.open_writer("key")
    await writer.write(b"removed underneath")
    await remove(store, "key")
    retry = await store.open_writer("key") if staged_again else None
    if retry is not None:
        await retry.write(b"the retry's")

    with pytest.raises(StoreError, match="discarded or purged"):
        await writer.commit()
    await writer.cancel()
    assert not (store.root / "key").exists()
    if retry is None:
        assert staged(store) == []
    else:
        # Neither published nor removed by the writer whose name it reuses.
        assert (store.staging / "key").read_bytes() == b"the retry's"
        stored = await retry.commit()
        assert await read(store, stored.location) == b"the retry's"


async def test_discard_leaves_other_keys_alone(store: FileStore) -> None:
    kept = await put(store, "kept", b"kept")
    writer = await store.open_writer("kept.staged")
    await writer.write(b"staged")
    await put(store, "gone", b"gone")
    await store.discard("gone")
    assert sorted(path.name for path in store.root.iterdir()) == ["_staging", "kept"]
    assert staged(store) == [store.staging / "kept.staged"]
    assert await read(store, kept.location) == b"kept"
    await writer.cancel()


async def test_discard_rejects_hostile_keys(store: FileStore, tmp_path: Path) -> None:
    (tmp_path / "victim").write_bytes(b"")
    for key in ["../victim", "..", "_staging", ""]:
        with pytest.raises(ValueError, match="invalid object key"):
            await store.discard(key)
    assert (tmp_path / "victim").exists()


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", ".", "..", "../x", "a/b", "/abs", "a\0b", "_staging", ".hidden", "-x", "é", "x" * 201],
)
async def test_hostile_keys_are_rejected(store: FileStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        await store.open_writer(key)
    assert not store.root.exists() or list(store.root.iterdir()) == []


async def test_hostile_locations_are_refused(store: FileStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    stored = await put(store, "key", b"mine")
    writer = await store.open_writer("staged")
    await writer.write(b"not yet")
    [staging_file] = staged(store)
    (store.root / "link").symlink_to(outside)

    refused = [
        "file:///etc/passwd",
        f"file://{store.root}/../outside",
        f"file://{store.root}/./key",
        f"file://{store.root / '_staging' / staging_file.name}",
        f"file://localhost{store.root / 'key'}",
        f"file://{os.path.relpath(store.root / 'key')}",
        "file://images/key",
        str(store.root / "key"),
        f"http://example.com{store.root / 'key'}",
        f"FILE://{store.root / 'key'}",
        f"file://{store.root / 'key'}\0",
    ]
    for location in refused:
        assert not store.contains(location), location
        with pytest.raises(StoreError):
            await read(store, location)
        with pytest.raises(StoreError):
            await store.stat(location)
        with pytest.raises(StoreError):
            await store.delete(location)
    # A link planted inside the root is not followed.
    link = f"file://{store.root / 'link'}"
    with pytest.raises(ObjectNotFound):
        await read(store, link)
    with pytest.raises(ObjectNotFound):
        await store.stat(link)

    assert outside.read_bytes() == b"secret"
    assert staging_file.read_bytes() == b"not yet"
    assert await read(store, stored.location) == b"mine"
    await writer.cancel()


async def test_negative_ranges_are_rejected(store: FileStore) -> None:
    stored = await put(store, "key", b"data")
    with pytest.raises(ValueError, match="negative"):
        await read(store, stored.location, -1)
    with pytest.raises(ValueError, match="negative"):
        await read(store, stored.location, 0, -1)


async def test_an_existing_key_is_refused_before_any_byte_is_sent(store: FileStore) -> None:
    await put(store, "key", b"first")
    with pytest.raises(StoreError, match="already exists"):
        await store.open_writer("key")
    assert staged(store) == []


async def test_a_key_being_written_is_refused_a_second_writer(store: FileStore) -> None:
    first = await store.open_writer("key")
    await first.write(b"first")
    with pytest.raises(StoreError, match="already being written"):
        await store.open_writer("key")
    stored = await first.commit()
    assert await read(store, stored.location) == b"first"
    assert staged(store) == []
