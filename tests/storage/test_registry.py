from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import FileStoreSettings, StorageSettings
from app.storage import registry
from app.storage.errors import UnknownStore
from app.storage.file import FileStore
from app.storage.registry import StoreRegistry
from tests.storage.contract import put, read

pytestmark = pytest.mark.anyio


def two_stores(tmp_path: Path) -> StoreRegistry:
    return StoreRegistry.from_settings(
        StorageSettings(
            default="fast",
            stores={
                "fast": FileStoreSettings(path=tmp_path / "fast", read_chunk_size=128 * 1024),
                "slow": FileStoreSettings(path=tmp_path / "slow", fsync=False),
            },
        ),
        tmp_path / "data",
    )


def test_the_default_settings_give_one_file_store_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    stores = StoreRegistry.from_settings(StorageSettings(), Path("data"))
    assert stores.ids() == ["local"]
    store = stores.default
    assert store is stores.get("local")
    assert isinstance(store, FileStore)
    # A relative data_dir is pinned down once, so locations stay valid if the cwd changes.
    assert (store.store_id, store.root, store.fsync) == (
        "local",
        tmp_path.resolve() / "data/images",
        True,
    )
    assert store.read_chunk_size == 4 * 1024 * 1024


def test_settings_reach_each_store(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    assert stores.ids() == ["fast", "slow"]
    assert stores.default.store_id == "fast"
    fast, slow = stores.get("fast"), stores.get("slow")
    assert isinstance(fast, FileStore)
    assert isinstance(slow, FileStore)
    assert (fast.root, fast.read_chunk_size, fast.fsync) == (
        tmp_path.resolve() / "fast",
        128 * 1024,
        True,
    )
    assert (slow.root, slow.fsync) == (tmp_path.resolve() / "slow", False)


def test_unknown_store_id(tmp_path: Path) -> None:
    with pytest.raises(UnknownStore, match="nope"):
        two_stores(tmp_path).get("nope")


async def test_locations_find_the_store_that_holds_them(tmp_path: Path) -> None:
    stores = two_stores(tmp_path)
    in_slow = await put(stores.get("slow"), "key", b"slow bytes")
    in_fast = await put(stores.get("fast"), "key", b"fast bytes")
    assert stores.for_location(in_slow.location) is stores.get("slow")
    assert stores.for_location(in_fast.location) is stores.get("fast")
    assert await read(stores.for_location(in_slow.location), in_slow.location) == b"slow bytes"


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file:///etc/passwd", "no configured store holds"),
        ("file://{root}/../slow/key", "no configured store holds"),
        ("file://{root}/_staging/key", "no configured store holds"),
        ("swift+https://swift.example.com/v1/AUTH_x/glance/key", "serves 'swift\\+https'"),
        ("s3://bucket/key", "serves 's3'"),
        ("not a location", "serves"),
    ],
)
def test_locations_no_store_holds(tmp_path: Path, location: str, message: str) -> None:
    stores = two_stores(tmp_path)
    with pytest.raises(UnknownStore, match=message):
        stores.for_location(location.format(root=tmp_path.resolve() / "fast"))


def test_drivers_are_imported_only_when_configured() -> None:
    script = (
        "import sys, pathlib\n"
        "from app.config import StorageSettings\n"
        "from app.storage.registry import StoreRegistry\n"
        "assert 'app.storage.file' not in sys.modules\n"
        "StoreRegistry.from_settings(StorageSettings(), pathlib.Path('unused'))\n"
        "assert 'app.storage.file' in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], cwd=root, check=True)


def test_an_unknown_driver_type() -> None:
    with pytest.raises(UnknownStore, match="no driver"):
        registry._driver("tape")


def test_the_default_must_be_configured() -> None:
    with pytest.raises(UnknownStore, match="default"):
        StoreRegistry({}, "local")


def test_a_driver_whose_sdk_is_not_installed_names_the_extra() -> None:
    # A process where boto3 cannot be imported, as after `pip install glint` without [s3].
    script = (
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from app.storage import registry\n"
        "from app.storage.errors import UnknownStore\n"
        "try:\n"
        "    registry._driver('s3')\n"
        "except UnknownStore as error:\n"
        "    print(error)\n"
    )
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    assert shown.strip() == (
        "store type 's3' needs boto3, which is not installed: pip install 'glint[s3]'"
    )
