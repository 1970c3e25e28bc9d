"""What the registry tells about each store from its settings (`GET /v2/info/stores/detail`):
Glance's properties per type, and never a credential."""

from __future__ import annotations

from pathlib import Path

from app.config import (
    FileStoreSettings,
    HttpStoreSettings,
    S3StoreSettings,
    SwiftStoreSettings,
)
from app.storage.registry import StoreInfo, describe


def test_each_type_lists_glances_properties(tmp_path: Path) -> None:
    swift = SwiftStoreSettings(
        auth_url="http://keystone:5000/v3",
        auth_version="3",
        username="glint",
        password="swift-secret",
        project_name="service",
        container="images",
        weight=5,
    )
    s3 = S3StoreSettings(access_key="AKIA", secret_key="s3-secret", description="Bucket")
    assert describe(swift, tmp_path) == StoreInfo(
        type="swift",
        weight=5,
        properties={
            "container": "images",
            "large_object_size": 5 * 1024**3,
            "large_object_chunk_size": 200 * 1024**2,
        },
    )
    assert describe(s3, tmp_path) == StoreInfo(
        type="s3",
        description="Bucket",
        properties={
            "s3_store_large_object_size": 16 * 1024**2,
            "s3_store_large_object_chunk_size": 16 * 1024**2,
            "s3_store_thread_pools": 4,
        },
    )
    assert describe(HttpStoreSettings(), tmp_path) == StoreInfo(type="http")
    assert describe(FileStoreSettings(), tmp_path).properties == {
        "data_dir": str((tmp_path / "images").resolve()),
        "chunk_size": 4 * 1024 * 1024,
        "thin_provisioning": False,
    }
    shown = repr([describe(swift, tmp_path), describe(s3, tmp_path)])
    assert "secret" not in shown
    assert "AKIA" not in shown
