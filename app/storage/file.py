"""The file store: objects are files directly inside one directory.

A writer streams into `<root>/_staging/<key>` and `commit` links the finished file to
`<root>/<key>`, so an object appears whole or not at all and a committed object is never
replaced. Both names follow from the key, so `discard(key)` finds what an upload left behind
without any record of it. Every file system call runs in a worker thread; the event loop only
keeps score.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from io import FileIO
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from app.config import FileStoreSettings
from app.storage.base import Capability, Store, StoredObject
from app.storage.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from app.storage.guards import WriterGuards
from app.storage.threads import abandon, run_in_thread

T = TypeVar("T")

SCHEME = "file"
STAGING = "_staging"
# Starts with a letter or digit, so no key is `.`, `..`, hidden, or the staging directory; well
# under the usual 255-byte limit on a file name.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_FULL = {errno.ENOSPC, errno.EDQUOT}
# What link() says on file systems without hard links (vfat, some FUSE and SMB mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}


def validate_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid object key {key!r}: expected [A-Za-z0-9][A-Za-z0-9._-]*")
    return key


def _store_error(error: OSError, doing: str) -> StoreError:
    if error.errno in _FULL:
        return StoreFull(f"{doing}: {os.strerror(error.errno or 0)}")
    return StoreUnavailable(f"{doing}: {error}")


async def _in_thread(
    function: Callable[[], T], doing: str, on_abandon: Callable[[T], None] | None = None
) -> T:
    """`run_in_thread`, with OSError mapped to the store's errors."""
    try:
        return await run_in_thread(function, on_abandon=on_abandon)
    except OSError as error:
        raise _store_error(error, doing) from error


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    schemes: frozenset[str] = frozenset({SCHEME})

    def __init__(
        self,
        store_id: str,
        root: Path,
        *,
        read_chunk_size: int = 4 * 1024 * 1024,
        fsync: bool = True,
    ) -> None:
        self.store_id = store_id
        # Resolved once, so every location names the real directory and containment checks
        # compare like with like.
        self.root = Path(os.path.realpath(root))
        self.staging = self.root / STAGING
        self.read_chunk_size = read_chunk_size
        self.fsync = fsync
        self.capabilities = (
            Capability.READ | Capability.READ_RANDOM | Capability.WRITE | Capability.DELETE
        )

    @classmethod
    def from_settings(cls, store_id: str, settings: FileStoreSettings, data_dir: Path) -> FileStore:
        return cls(
            store_id,
            settings.directory(data_dir),
            read_chunk_size=settings.read_chunk_size,
            fsync=settings.fsync,
        )

    def __repr__(self) -> str:
        return f"FileStore({self.store_id!r}, {str(self.root)!r})"

    # --- locations ---------------------------------------------------------------------------

    def location_for(self, key: str) -> str:
        # Glance's form (file://<absolute path>, unquoted), so its locations can be adopted.
        return f"{SCHEME}://{self.root / validate_key(key)}"

    def contains(self, location: str) -> bool:
        return self._path_or_none(location) is not None

    def _path_or_none(self, location: str) -> Path | None:
        prefix = f"{SCHEME}://"
        if not location.startswith(prefix):
            return None
        path = location[len(prefix) :]
        # Only names directly inside the root: a `..`, a nested path (the staging area) or a
        # host part never matches, whatever the file system holds.
        directory, _, name = path.rpartition("/")
        if directory != str(self.root) or not _KEY.fullmatch(name):
            return None
        return self.root / name

    def _path(self, location: str) -> Path:
        path = self._path_or_none(location)
        if path is None:
            raise StoreError(f"location {location!r} is not in store {self.store_id!r}")
        return path

    # --- writing -----------------------------------------------------------------------------

    async def open_writer(self, key: str, size_hint: int | None = None) -> FileWriter:
        final = self.root / validate_key(key)

        def open_staging() -> FileWriter:
            if os.path.lexists(final):
                raise StoreError(f"object {key!r} already exists in store {self.store_id!r}")
            self.staging.mkdir(parents=True, exist_ok=True)
            if size_hint:
                self._check_room(size_hint)
            staged = self.staging / key
            try:
                # Unbuffered: every write goes straight to the kernel, so a full disk is reported
                # by the write that hit it, not by a later flush. Exclusive, which also refuses a
                # symlink planted under the name.
                file = open(staged, "xb", buffering=0)  # noqa: SIM115 - the writer closes it
            except FileExistsError:
                raise StoreError(
                    f"object {key!r} is already being written in store {self.store_id!r}"
                ) from None
            return FileWriter(file, staged, final, self.location_for(key), fsync=self.fsync)

        return await _in_thread(
            open_staging, f"opening a writer for {key!r}", on_abandon=FileWriter.release
        )

    def _check_room(self, size: int) -> None:
        # Refused now rather than after streaming gigabytes into a disk that cannot hold them.
        # f_bfree includes the blocks reserved for root, so this never refuses wrongly (a quota
        # can still make a write fail later); f_blocks == 0 is a file system that reports nothing.
        vfs = os.statvfs(self.root)
        if vfs.f_blocks and size > vfs.f_bfree * vfs.f_frsize:
            raise StoreFull(f"store {self.store_id!r} has no room for {size} bytes")

    async def discard(self, key: str) -> None:
        staged, final = self.staging / validate_key(key), self.root / key

        def remove() -> None:
            # Staging first: a commit racing this either finds its staging file gone, or has
            # already linked the object, which is removed next.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
            # The staging directory is not synced: a staging file that a crash brings back is
            # purge_staging's.
            try:
                os.unlink(final)
            except FileNotFoundError:
                return
            if self.fsync:
                _fsync_directory(self.root)

        await _in_thread(remove, f"discarding {key!r}")

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        spared = frozenset(keep)

        def purge() -> int:
            cutoff = time.time() - older_than
            removed = 0
            try:
                entries = list(os.scandir(self.staging))
            except FileNotFoundError:
                return 0
            for entry in entries:
                if entry.name in spared:  # a staging file is named by its key
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass  # committed, cancelled or discarded meanwhile
            return removed

        return await _in_thread(purge, "purging staging files")

    # --- reading -----------------------------------------------------------------------------

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self._path(location)
        handle = await _in_thread(
            lambda: _ReadHandle.open(path, location), f"opening {location}", _ReadHandle.close
        )
        loop = asyncio.get_running_loop()
        end = handle.size if length is None else min(handle.size, offset + length)
        position = offset
        pending: asyncio.Future[bytes] | None = None
        try:
            # One read ahead: the next chunk comes off the disk while the caller sends this one.
            if position < end:
                pending = handle.submit(loop, min(self.read_chunk_size, end - position), position)
            while pending is not None:
                try:
                    # Shielded: a cancelled future whose read has not started yet would never
                    # run it, and only that read may close the descriptor it was given.
                    chunk = await asyncio.shield(pending)
                except OSError as error:
                    raise _store_error(error, f"reading {location}") from error
                pending = None
                if not chunk:  # shorter than when opened: only if changed behind our back
                    break
                position += len(chunk)
                if position < end:
                    pending = handle.submit(
                        loop, min(self.read_chunk_size, end - position), position
                    )
                yield chunk
        finally:
            if pending is not None:
                # Read ahead for nobody: its error, if any, is of no interest.
                abandon(pending)
            handle.close()

    async def stat(self, location: str) -> int:
        path = self._path(location)

        def size() -> int:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                raise ObjectNotFound(location) from None
            if not stat.S_ISREG(info.st_mode):
                raise ObjectNotFound(location)
            return info.st_size

        return await _in_thread(size, f"stat of {location}")

    async def delete(self, location: str) -> None:
        path = self._path(location)

        def remove() -> None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            if self.fsync:
                # Else a crash could bring back bytes that nothing refers to any more.
                _fsync_directory(self.root)

        await _in_thread(remove, f"deleting {location}")


class _ReadHandle:
    """An open object whose descriptor outlives an abandoned read.

    A read runs on in its thread after its awaiting task is cancelled; closing the descriptor
    under it could let the number be reused and read from another file. So `close` while a read
    is in flight only asks, and that read closes the descriptor when it returns.
    """

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._lock = threading.Lock()
        self._busy = False
        self._closing = False

    @classmethod
    def open(cls, path: Path, location: str) -> _ReadHandle:
        try:
            # O_NOFOLLOW: a symlink planted in the root must not lead out of it.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectNotFound(location) from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ObjectNotFound(location) from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ObjectNotFound(location)
        return cls(fd, info.st_size)

    def submit(
        self, loop: asyncio.AbstractEventLoop, size: int, offset: int
    ) -> asyncio.Future[bytes]:
        with self._lock:
            self._busy = True
        return loop.run_in_executor(None, self._pread, size, offset)

    def _pread(self, size: int, offset: int) -> bytes:
        try:
            # pread fills a new bytes object directly: the one copy out of the page cache.
            return os.pread(self.fd, size, offset)
        finally:
            with self._lock:
                self._busy = False
                if self._closing:
                    os.close(self.fd)

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._busy:
                return
        os.close(self.fd)


class FileWriter(WriterGuards):
    """Streams one object into its staging file; see `FileStore.open_writer`.

    Each file operation holds `_lock` in its worker thread, so a `cancel` that follows a write
    whose awaiting task was cancelled waits for that write to finish before closing the file.

    The staging name is the key's, so after `FileStore.discard` (or purge_staging) it may name
    nothing, or the file of a later writer of the same key. The writer keeps its file open until
    it is done and acts on the name only while the name still leads to that file: it neither
    publishes nor removes another writer's bytes. (A discard and a new writer of the key could
    still slip in between such a check and the call after it; keys are unique per upload
    attempt, so only a caller reusing the key of an upload it discarded could get there.)
    """

    def __init__(
        self, file: FileIO, staged: Path, final: Path, location: str, *, fsync: bool
    ) -> None:
        self._file = file
        self._staged = staged
        self._final = final
        self._location = location
        self._fsync = fsync
        self._lock = threading.Lock()
        self._size = 0

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._check_open()
        if not chunk:
            return

        def append() -> int:
            with self._lock:
                if self._file.closed:
                    raise StoreError("writer cancelled during a write")
                # Written straight from the caller's buffer, and done with it on return.
                view = memoryview(chunk).cast("B")
                fd = self._file.fileno()
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                return written

        try:
            self._size += await _in_thread(append, f"writing {self._final.name}")
        except BaseException:
            self._failed = True
            raise

    async def commit(self) -> StoredObject:
        self._check_open()
        self._committed = True

        def finish() -> FileWriter:
            with self._lock:
                try:
                    if self._fsync:
                        os.fsync(self._file.fileno())
                    self._publish()
                except BaseException:
                    self._release()
                    raise
                try:
                    self._file.close()
                except BaseException:
                    self.unpublish()
                    raise
            return self

        try:
            # Abandoned (the caller cancelled while the thread ran on): the caller never learns
            # the location, so an object published after all is removed again.
            await _in_thread(finish, f"committing {self._final.name}", FileWriter.unpublish)
        except BaseException:
            # Nothing is left behind: the thread released the staging file or unpublishes.
            self._committed = False
            self._cancelled = True
            raise
        return StoredObject(location=self._location, size=self._size)

    def _holds(self, path: Path) -> bool:
        """Whether `path` names this writer's (still open) file."""
        try:
            return os.path.samestat(os.lstat(path), os.fstat(self._file.fileno()))
        except FileNotFoundError:
            return False

    def _publish(self) -> None:
        """Makes the staged file the object, never replacing an existing one."""
        if not self._holds(self._staged):
            raise StoreError(f"the staged upload of {self._final.name!r} was discarded or purged")
        try:
            # link() fails when the name exists, where rename() would silently replace it.
            os.link(self._staged, self._final)
            linked = True
        except FileExistsError:
            raise StoreError(f"object {self._final.name!r} already exists") from None
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            # A file system without hard links: check, then rename. Another writer of the same
            # key could slip in between; keys are unique per upload attempt.
            if os.path.lexists(self._final):
                raise StoreError(f"object {self._final.name!r} already exists") from None
            os.rename(self._staged, self._final)
            linked = False
        try:
            if linked:
                os.unlink(self._staged)
            if self._fsync:
                _fsync_directory(self._final.parent)
        except BaseException:
            # Not durable, so not committed: the caller is told so, and nothing remains.
            self.unpublish()
            raise

    def unpublish(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._final)

    def _release(self) -> None:
        if self._file.closed:  # committed, or released already
            return
        try:
            # Checked while the file is open, so its inode cannot have been reused.
            if self._holds(self._staged):
                with contextlib.suppress(FileNotFoundError):  # purged or discarded meanwhile
                    os.unlink(self._staged)
        finally:
            self._file.close()

    def release(self) -> None:
        """Closes the file and removes the staging file, if the name still leads to it."""
        with self._lock:
            self._release()

    async def cancel(self) -> None:
        # Safe more than once and after a failed commit (which already cleaned up); after a
        # successful commit the object is the caller's, to delete through the store.
        if self._cancelled or self._committed:
            return
        self._cancelled = True
        await _in_thread(self.release, f"cancelling {self._final.name}")


if TYPE_CHECKING:
    # mypy proves that the driver fits the seam.
    _FITS: type[Store] = FileStore
