"""The store seam: drivers only move bytes.

Hashing, size limits, format inspection and verification happen once, above the drivers
(app/images/data.py). Nothing a writer writes is readable before `commit`; `cancel` leaves
nothing behind. Blocking SDKs and file I/O run in worker threads inside the driver (see
app/storage/threads.py), so every method here is safe to await on the event loop.

The writer contract: a chunk handed to `StoreWriter.write` may be a memoryview of a buffer that
the caller refills as soon as `write` returns. A writer copies or consumes the chunk before it
returns and never keeps a reference to it; a driver that collects bytes into parts (S3
multipart, Swift segments) copies them into its own buffer.

Object keys are chosen by the layer above and are unique per upload attempt (the image id plus
a random suffix), so whatever a store holds under a key belongs to one upload only.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Protocol


class Capability(enum.Flag):
    READ = enum.auto()
    # Reads may start at an offset and stop after a length (HTTP Range).
    READ_RANDOM = enum.auto()
    WRITE = enum.auto()
    DELETE = enum.auto()


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a committed write produced: where it is, and how many bytes it holds."""

    location: str  # a URI whose scheme names the driver, e.g. file:///var/lib/glint/images/<id>
    size: int


class StoreWriter(Protocol):
    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append `chunk`. Raises StoreFull when the store has no room for it.

        `chunk` may be a memoryview of a buffer the caller reuses as soon as this returns:
        copy or consume it before returning, and keep no reference to it. After a failed
        write only `cancel` is accepted (the object would hold an unknown prefix).
        """

    async def commit(self) -> StoredObject:
        """Make the object durable and readable at its location; the writer is then closed.

        Raises StoreError, leaving nothing behind, when the object cannot be published: its key
        already has an object, or what this writer staged was discarded or purged meanwhile.
        """

    async def cancel(self) -> None:
        """Drop everything written; safe to call more than once and after a failed write.

        Only this writer's data is dropped, never what a later writer of the same key staged.
        """


class Store(Protocol):
    """One configured store. Every driver passes tests/storage/contract.py."""

    store_id: str
    # The URI schemes of the locations this store makes and reads, e.g. {"file"} or
    # {"swift+https", "swift+http", "swift"}: the registry tells an unknown scheme from a
    # location that no configured store holds.
    schemes: frozenset[str]
    capabilities: Capability

    def contains(self, location: str) -> bool:
        """Whether `location` names an object of this store, whether or not it exists.

        Decided from the location alone, without I/O: its scheme is one of `schemes` and the
        rest names this store's place (its root directory, account and container, bucket).
        Another store's locations, malformed ones and those of uncommitted (staged) data are
        never contained. The registry finds the store of a location with this.
        """

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        """A writer for a new object named `key` (an image id plus a random suffix).

        `size_hint`, when given, is the expected size: a store may refuse at once (StoreFull)
        what cannot fit. A key that already has an object, or an open writer, may be refused
        here or at `commit` with StoreError; a committed object is never replaced.
        """

    def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes from `offset`, `length` of them (all when None), in large chunks.
        Raises ObjectNotFound before the first chunk when the object does not exist."""

    async def stat(self, location: str) -> int:
        """The object's size; ObjectNotFound when it does not exist."""

    async def delete(self, location: str) -> None:
        """Remove the object; deleting one that does not exist is not an error."""

    async def discard(self, key: str) -> None:
        """Remove whatever a writer opened with `key` left behind: its uncommitted staged
        bytes, and the object committed under `key` if it got that far.

        For an upload whose process died, or whose image was deleted while it ran; nothing
        there is not an error. A writer of `key` that is still running may yet fail to
        commit or commit after all; the caller removes such an object with `delete`.
        """

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        """Remove staged bytes untouched for `older_than` seconds (left by uploads whose
        process died) and return how many uploads' worth were removed.

        An upload that is still writing touches its staged bytes with every chunk; one that is
        alive but waiting (a slow client) is spared by naming its key in `keep`. Committed
        objects are never touched.
        """
