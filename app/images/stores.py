"""What clients learn about the configured stores (Glance's store discovery, multi-store only)."""

from __future__ import annotations

from dataclasses import dataclass

from app.context import RequestContext
from app.errors import NotFound
from app.images import policy
from app.storage.registry import StoreInfo, StoreRegistry


class MultistoreDisabled(NotFound):
    def __init__(self) -> None:
        super().__init__("Multi backend is not supported at this site.")


@dataclass(frozen=True)
class StoreEntry:
    store_id: str
    is_default: bool
    # Takes no image data: its images' bytes stay where their locations point (http).
    is_read_only: bool
    info: StoreInfo


class StoreCatalog:
    def __init__(self, stores: StoreRegistry, *, multistore: bool):
        self.stores = stores
        self.multistore = multistore

    def list_stores(self, ctx: RequestContext) -> list[StoreEntry]:
        """Every configured store, in the configuration's order; any caller may ask."""
        if not self.multistore:
            raise MultistoreDisabled()
        return [
            StoreEntry(
                store_id,
                is_default=self.stores.is_default(store_id),
                is_read_only=self.stores.is_read_only(store_id),
                info=self.stores.info(store_id),
            )
            for store_id in self.stores.ids()
        ]

    def describe_stores(self, ctx: RequestContext) -> list[StoreEntry]:
        """The same with each store's type, weight and properties: for admins and services."""
        entries = self.list_stores(ctx)
        policy.require_service(ctx, "stores_info_detail")
        return entries
