"""The configured stores, by id and by the locations they hold.

Drivers are imported when a store of their type is configured, so a deployment that only uses
files never imports an object-storage SDK.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import (
    FileStoreSettings,
    HttpStoreSettings,
    S3StoreSettings,
    StorageSettings,
    StoreSettings,
    SwiftStoreSettings,
)
from app.metrics import NO_METRICS, Metrics
from app.storage.base import Capability, Store
from app.storage.errors import UnknownStore
from app.storage.metered import MeteredStore

# Settings `type` -> "module:class". Each class has `from_settings(store_id, settings, data_dir)`.
DRIVERS: dict[str, str] = {
    "file": "app.storage.file:FileStore",
    "swift": "app.storage.swift:SwiftStore",
    "s3": "app.storage.s3:S3Store",
    "http": "app.storage.http:HttpStore",
}


# Store types whose SDK is an optional extra of the package.
EXTRAS: dict[str, str] = {"swift": "swift", "s3": "s3"}


def _driver(type_: str) -> Any:
    try:
        module, _, name = DRIVERS[type_].partition(":")
    except KeyError:
        raise UnknownStore(f"no driver for store type {type_!r}") from None
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        if type_ not in EXTRAS or error.name == module:
            raise
        raise UnknownStore(
            f"store type {type_!r} needs {error.name}, which is not installed: "
            f"pip install 'glint[{EXTRAS[type_]}]'"
        ) from None


@dataclass(frozen=True)
class StoreInfo:
    """What a store's settings say about it, as Glance's store discovery shows it: never a
    credential, only what tells stores apart."""

    type: str = ""
    description: str | None = None
    # Reads prefer the locations of heavier stores.
    weight: int = 0
    # Glance's per-type `properties` of `GET /v2/info/stores/detail`, by Glance's names.
    properties: dict[str, Any] = field(default_factory=dict)


def _properties(settings: StoreSettings, data_dir: Path) -> dict[str, Any]:
    if isinstance(settings, FileStoreSettings):
        return {
            "data_dir": os.path.realpath(settings.directory(data_dir)),
            "chunk_size": settings.read_chunk_size,
            # Objects are written whole; holes in the data are not skipped.
            "thin_provisioning": False,
        }
    if isinstance(settings, SwiftStoreSettings):
        return {
            "container": settings.container,
            "large_object_size": settings.large_object_size,
            "large_object_chunk_size": settings.segment_size,
        }
    if isinstance(settings, S3StoreSettings):
        return {
            "s3_store_large_object_size": settings.large_object_size,
            "s3_store_large_object_chunk_size": settings.part_size,
            # Parts of one multipart upload in flight at once.
            "s3_store_thread_pools": settings.upload_concurrency,
        }
    assert isinstance(settings, HttpStoreSettings)
    return {}


def describe(settings: StoreSettings, data_dir: Path) -> StoreInfo:
    return StoreInfo(
        type=settings.type,
        description=settings.description,
        weight=settings.weight,
        properties=_properties(settings, data_dir),
    )


class StoreRegistry:
    def __init__(
        self,
        stores: Mapping[str, Store],
        default: str,
        *,
        infos: Mapping[str, StoreInfo] | None = None,
    ) -> None:
        """`infos`: what the settings say about each store (by default nothing)."""
        if default not in stores:
            raise UnknownStore(f"default store {default!r} is not configured")
        self._stores = dict(stores)
        self._default = default
        self._infos = {store_id: (infos or {}).get(store_id, StoreInfo()) for store_id in stores}

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, data_dir: Path, *, metrics: Metrics = NO_METRICS
    ) -> StoreRegistry:
        """The configured stores; with `metrics` on, each counts its errors and bytes."""
        return cls(
            {
                store_id: cls._build(store_id, settings, data_dir, metrics)
                for store_id, settings in storage.stores.items()
            },
            storage.default,
            infos={
                store_id: describe(settings, data_dir)
                for store_id, settings in storage.stores.items()
            },
        )

    @staticmethod
    def _build(store_id: str, settings: StoreSettings, data_dir: Path, metrics: Metrics) -> Store:
        store: Store = _driver(settings.type).from_settings(store_id, settings, data_dir)
        return MeteredStore(store, metrics) if metrics.enabled else store

    def ids(self) -> list[str]:
        return list(self._stores)

    def get(self, store_id: str) -> Store:
        try:
            return self._stores[store_id]
        except KeyError:
            raise UnknownStore(f"no store with id {store_id!r}") from None

    @property
    def default(self) -> Store:
        return self._stores[self._default]

    def info(self, store_id: str) -> StoreInfo:
        return self._infos[store_id]

    def is_default(self, store_id: str) -> bool:
        return store_id == self._default

    def is_read_only(self, store_id: str) -> bool:
        return Capability.WRITE not in self.get(store_id).capabilities

    def weight(self, store_id: str) -> int:
        """The store's weight; a store that is no longer configured weighs nothing."""
        info = self._infos.get(store_id)
        return info.weight if info is not None else 0

    def for_location(self, location: str) -> Store:
        """The store holding `location`; UnknownStore when no configured store serves its
        scheme, or none of those that do holds it."""
        scheme, _, _ = location.partition(":")
        serving = [store for store in self._stores.values() if scheme in store.schemes]
        if not serving:
            raise UnknownStore(f"no configured store serves {scheme!r} locations")
        for store in serving:
            if store.contains(location):
                return store
        raise UnknownStore(f"no configured store holds {location!r}")
