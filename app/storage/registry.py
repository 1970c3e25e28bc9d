"""The configured stores, by id and by the locations they hold.

Drivers are imported when a store of their type is configured, so a deployment that only uses
files never imports an object-storage SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config import StorageSettings, StoreSettings
from app.metrics import NO_METRICS, Metrics
from app.storage.base import Store
from app.storage.errors import UnknownStore
from app.storage.metered import MeteredStore

# Settings `type` -> "module:class". Each class has `from_settings(store_id, settings, data_dir)`.
DRIVERS: dict[str, str] = {
    "file": "app.storage.file:FileStore",
}


def _driver(type_: str) -> Any:
    try:
        module, _, name = DRIVERS[type_].partition(":")
    except KeyError:
        raise UnknownStore(f"no driver for store type {type_!r}") from None
    return getattr(importlib.import_module(module), name)


class StoreRegistry:
    def __init__(self, stores: Mapping[str, Store], default: str) -> None:
        if default not in stores:
            raise UnknownStore(f"default store {default!r} is not configured")
        self._stores = dict(stores)
        self._default = default

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
