"""Store failures, as the layers above need to tell them apart."""

from __future__ import annotations


class StoreError(Exception):
    """Any failure of a store; the caller answers 503 unless a subclass says otherwise."""


class StoreFull(StoreError):
    """No room for the bytes being written (413 to an uploader)."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached or refused the operation (503)."""


class ObjectNotFound(StoreError):
    """No object at that location."""


class UnknownStore(StoreError):
    """No configured store has that id, or no driver serves that URI scheme."""


class ReadOnlyStore(StoreError):
    """The store does not take writes (Glance answers 410)."""


class ForbiddenLocation(StoreError):
    """A location the store will not reach: not an http(s) URL with a host, an ambiguous
    spelling of an address, or a host that is or resolves to a non-public address (400 to
    whoever gave it)."""
