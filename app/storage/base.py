"""The store seam: drivers only move bytes.

Hashing, size limits, format inspection and verification happen once, above the drivers
(app/images/data.py). Nothing a writer writes is readable before `commit`; `cancel` leaves
nothing behind. Blocking SDKs and file I/O run in worker threads inside the driver, so every
method here is safe to await on the event loop.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
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
        """Append bytes. Raises StoreFull when the store has no room for them."""

    async def commit(self) -> StoredObject:
        """Make the object durable and readable at its location; the writer is then closed."""

    async def cancel(self) -> None:
        """Drop everything written; safe to call more than once and after a failed write."""


class Store(Protocol):
    store_id: str
    scheme: str
    capabilities: Capability

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        """A writer for a new object named `key` (an image id, or id plus a suffix)."""

    def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes from `offset`, `length` of them (all when None), in large chunks.
        Raises ObjectNotFound before the first chunk when the object does not exist."""

    async def stat(self, location: str) -> int:
        """The object's size; ObjectNotFound when it does not exist."""

    async def delete(self, location: str) -> None:
        """Remove the object; deleting one that does not exist is not an error."""
