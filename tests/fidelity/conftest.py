"""The recordings were made against a Glance with two file stores, `fast` (the default) and
`cheap`: every fidelity test runs Glint configured the same way, so that the multi-store answers
(`/v2/info/stores`, the `stores` field, `X-Image-Meta-Store`) are compared for real."""

from __future__ import annotations

import pytest

from app.config import FileStoreSettings, Settings, StorageSettings

# The recording's Glance read in Glance's default chunks (the smallest Glint allows too).
RECORDED_CHUNK_SIZE = 65536


@pytest.fixture
def settings(settings: Settings) -> Settings:
    stores = {
        name: FileStoreSettings(
            path=settings.data_dir / name,
            description=f"{name.title()} file store (anchor)",
            read_chunk_size=RECORDED_CHUNK_SIZE,
        )
        for name in ("fast", "cheap")
    }
    return settings.model_copy(update={"storage": StorageSettings(default="fast", stores=stores)})
