"""The Swift store against a real Swift (scripts/swift.sh) and Keystone (scripts/keystone.sh).

Every test writes into containers of its own, removed afterwards, so tests never see each
other's objects. What the store left behind is checked with a direct swiftclient connection.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from keystoneauth1 import session as keystone_session
from keystoneauth1.identity import v3
from pydantic import SecretStr
from swiftclient import client as swift

from app.config import SwiftStoreSettings
from app.storage import swift as swift_store
from app.storage.base import Store
from app.storage.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from app.storage.swift import SwiftStore
from tests.faults import cuttable
from tests.services import KeystoneService, SwiftService
from tests.storage.contract import MiB, StoreContract, new_key, payload, put, read

pytestmark = pytest.mark.anyio

READ_CHUNK_SIZE = 64 * 1024


def direct(service: SwiftService) -> swift.Connection:
    """A plain swiftclient connection to the test account, to look behind the store's back."""
    return swift.Connection(authurl=service.auth_url, user=service.user, key=service.key)


def remove_container(connection: swift.Connection, container: str) -> None:
    """Removes `container` and everything in it, in one bulk delete."""
    listed = names(connection, container)
    body = "\n".join(quote(f"{container}/{name}") for name in listed)
    _, report = connection.post_account(
        {"Content-Type": "text/plain", "Accept": "application/json"},
        query_string="bulk-delete",
        data=f"{body}\n{quote(container)}",
    )
    assert not json.loads(report)["Errors"], report


def names(connection: swift.Connection, container: str, prefix: str = "") -> list[str]:
    try:
        _, listing = connection.get_container(container, prefix=prefix, full_listing=True)
    except swift.ClientException as error:
        if error.http_status == 404:
            return []
        raise
    return [entry["name"] for entry in listing]


def remove_containers(service: SwiftService, containers: Iterable[str]) -> None:
    connection = direct(service)
    for container in containers:
        remove_container(connection, f"{container}_segments")
        remove_container(connection, container)
    connection.close()


def unique_container() -> str:
    return f"glint-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="class")
def class_containers(swift_service: SwiftService) -> Iterator[tuple[str, str]]:
    """Two containers for a test class, removed after it. The second's name starts with the
    first's: locations are compared by container, not by prefix."""
    first = unique_container()
    containers = (first, f"{first}-2")
    yield containers
    remove_containers(swift_service, containers)


def v1_settings(service: SwiftService, container: str, **overrides: Any) -> SwiftStoreSettings:
    fields: dict[str, Any] = {
        "auth_url": service.auth_url,
        "user": service.user,
        "key": service.key,
        "container": container,
        "read_chunk_size": READ_CHUNK_SIZE,
        "timeout": 10,
    }
    return SwiftStoreSettings(**(fields | overrides))


SMALL_SEGMENTS = {"large_object_size": MiB, "segment_size": MiB}


class TestSwiftStoreContract(StoreContract):
    # The settings under test on top of v1 auth to the test account.
    overrides: ClassVar[dict[str, Any]] = {}

    # Containers are shared by the tests of a class, which leave nothing staged behind them
    # (the contract checks that): it saves Swift creating and removing two for each test.
    @pytest.fixture
    def store(self, swift_service: SwiftService, class_containers: tuple[str, str]) -> Store:
        settings = v1_settings(swift_service, class_containers[0], **self.overrides)
        return SwiftStore("swift", settings)

    @pytest.fixture
    def other_store(self, swift_service: SwiftService, class_containers: tuple[str, str]) -> Store:
        return SwiftStore("other", v1_settings(swift_service, class_containers[1]))

    def location_for(self, store: Store, key: str) -> str:
        assert isinstance(store, SwiftStore)
        return f"swift+{store.settings.auth_url}/{store.container}/{key}"

    async def staged(self, store: Store) -> list[str]:
        """The uploads with a marker, and segments that no object refers to."""
        assert isinstance(store, SwiftStore)
        connection = direct_for(store)
        segments = names(connection, store.segments_container)
        objects = set(names(connection, store.container))
        connection.close()
        markers = {name for name in segments if name.count("/") == 1}
        leaked = {
            name.rpartition("/")[0]
            for name in segments
            if name.count("/") == 2 and name.partition("/")[0] not in objects
        }
        return sorted(markers | leaked)

    def staging_location(self, store: Store, key: str) -> str | None:
        assert isinstance(store, SwiftStore)
        connection = direct_for(store)
        [marker] = names(connection, store.segments_container, f"{key}/")
        connection.close()
        return f"swift+{store.settings.auth_url}/{store.segments_container}/{marker}"

    async def backdate(self, store: Store, key: str, seconds: float) -> None:
        assert isinstance(store, SwiftStore)
        connection = direct_for(store)
        for marker in names(connection, store.segments_container, f"{key}/"):
            touched = time.time() - seconds
            connection.post_object(
                store.segments_container,
                marker,
                {"Content-Type": f"application/x-glint-upload;touched={touched:.0f}"},
            )
        connection.close()

    def foreign_locations(self, store: Store) -> list[str]:
        assert isinstance(store, SwiftStore)
        endpoint = str(store.settings.auth_url).removeprefix("http://")
        ours = f"swift+http://{endpoint}/{store.container}"
        return [
            *super().foreign_locations(store),
            f"swift+http://{endpoint}/other-container/{new_key()}",
            f"swift+http://{endpoint}/{store.container}x/{new_key()}",
            f"swift+http://{endpoint}/{store.segments_container}/{new_key()}",
            f"swift+https://{endpoint}/{store.container}/{new_key()}",
            f"swift://{endpoint}/{store.container}/{new_key()}",
            f"swift+http://test:tester:testing@{endpoint}/{store.container}/{new_key()}",
            f"swift+http://{endpoint.replace('8280', '8281')}/{store.container}/{new_key()}",
            f"swift+http://{endpoint}/v1/AUTH_test/{store.container}/{new_key()}",
            f"SWIFT+HTTP://{endpoint}/{store.container}/{new_key()}",
            f"{ours}/../{store.container}/{new_key()}",
            f"{ours}/{new_key()}/{new_key()}",
            f"{ours}/{new_key()}?multipart-manifest=get",
            f"{ours}/",
            f"{ours}/.hidden",
        ]


class TestSwiftStoreInSegmentsContract(TestSwiftStoreContract):
    """The whole contract again, with every object of a MiB or more written in segments."""

    overrides: ClassVar[dict[str, Any]] = SMALL_SEGMENTS


def direct_for(store: SwiftStore) -> swift.Connection:
    settings = store.settings
    assert settings.key is not None
    return swift.Connection(
        authurl=settings.auth_url, user=settings.user, key=settings.key.get_secret_value()
    )


@pytest.fixture
def container(swift_service: SwiftService) -> Iterator[str]:
    """A container for one test, removed after it."""
    container = unique_container()
    yield container
    remove_containers(swift_service, [container])


@pytest.fixture
def store(swift_service: SwiftService, container: str) -> SwiftStore:
    """A store writing in segments of a MiB from a MiB on."""
    return SwiftStore("objects", v1_settings(swift_service, container, **SMALL_SEGMENTS))


@pytest.fixture
def connection(swift_service: SwiftService) -> Iterator[swift.Connection]:
    connection = direct(swift_service)
    yield connection
    connection.close()


# --- layout --------------------------------------------------------------------------------


async def test_a_large_object_is_segments_and_a_manifest(
    store: SwiftStore, connection: swift.Connection
) -> None:
    data = payload(2 * MiB + MiB // 2, seed=7)
    key = new_key()
    stored = await put(store, key, data)

    segments = names(connection, store.segments_container)
    [upload] = {name.split("/")[1] for name in segments}
    assert segments == [f"{key}/{upload}/{n:08d}" for n in (1, 2, 3)], "no marker is left"
    sizes = [
        int(connection.head_object(store.segments_container, name)["content-length"])
        for name in segments
    ]
    assert sizes == [MiB, MiB, MiB // 2]
    headers = connection.head_object(store.container, key)
    assert headers["x-static-large-object"] == "True"
    assert int(headers["content-length"]) == len(data)
    _, manifest = connection.get_object(store.container, key, query_string="multipart-manifest=get")
    assert [entry["name"] for entry in json.loads(manifest)] == [
        f"/{store.segments_container}/{name}" for name in segments
    ]
    assert await read(store, stored.location) == data


async def test_a_small_object_of_known_size_is_one_plain_object(
    store: SwiftStore, connection: swift.Connection
) -> None:
    data = payload(MiB - 1, seed=8)
    key = new_key()
    await put(store, key, data)
    headers = connection.head_object(store.container, key)
    assert "x-static-large-object" not in headers
    assert int(headers["content-length"]) == len(data)
    assert names(connection, store.segments_container) == []


async def test_an_upload_of_unknown_size_goes_in_segments_as_it_grows(
    store: SwiftStore, connection: swift.Connection
) -> None:
    data = payload(2 * MiB + 12_345, seed=9)
    key = new_key()
    writer = await store.open_writer(key)
    [marker] = names(connection, store.segments_container)
    assert marker.startswith(f"{key}/")
    first = 11 * 100_000  # a little more than a MiB
    for start in range(0, first, 100_000):
        await writer.write(data[start : start + 100_000])
    # The first MiB is a segment already; the object does not exist yet.
    assert names(connection, store.segments_container) == [marker, f"{marker}/00000001"]
    with pytest.raises(swift.ClientException) as missing:
        connection.head_object(store.container, key)
    assert missing.value.http_status == 404
    await writer.write(data[first:])
    stored = await writer.commit()

    assert stored.size == len(data)
    assert names(connection, store.segments_container) == [f"{marker}/{n:08d}" for n in (1, 2, 3)]
    assert await read(store, stored.location) == data


async def test_an_empty_upload_of_unknown_size_is_an_empty_object(
    store: SwiftStore, connection: swift.Connection
) -> None:
    writer = await store.open_writer(new_key())
    stored = await writer.commit()
    assert (stored.size, await read(store, stored.location)) == (0, b"")
    assert names(connection, store.segments_container) == []


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        pytest.param(MiB + 10, 1000, id="inside-a-segment"),
        pytest.param(MiB - 100, 200, id="across-a-boundary"),
        pytest.param(MiB // 2, 2 * MiB, id="across-three-segments"),
        pytest.param(2 * MiB, None, id="the-last-segment"),
        pytest.param(3 * MiB - 5, 100, id="past-the-end"),
    ],
)
async def test_ranged_reads_of_a_large_object(
    store: SwiftStore, offset: int, length: int | None
) -> None:
    data = payload(3 * MiB, seed=10)
    stored = await put(store, new_key(), data)
    end = None if length is None else offset + length
    chunks = [chunk async for chunk in store.open_reader(stored.location, offset, length)]
    assert b"".join(chunks) == data[offset:end]
    assert max(len(chunk) for chunk in chunks) <= READ_CHUNK_SIZE


async def test_deleting_a_large_object_removes_its_segments(
    store: SwiftStore, connection: swift.Connection
) -> None:
    kept = await put(store, new_key(), payload(2 * MiB, seed=11))
    gone = await put(store, new_key(), payload(2 * MiB, seed=12))
    await store.delete(gone.location)
    with pytest.raises(ObjectNotFound):
        await store.stat(gone.location)
    kept_key = kept.location.rpartition("/")[2]
    assert {name.partition("/")[0] for name in names(connection, store.segments_container)} == {
        kept_key
    }
    assert await store.stat(kept.location) == 2 * MiB


async def test_cancel_removes_written_segments(
    store: SwiftStore, connection: swift.Connection
) -> None:
    writer = await store.open_writer(new_key())
    await writer.write(payload(2 * MiB + 1))
    assert len(names(connection, store.segments_container)) == 3  # marker and two segments
    await writer.cancel()
    assert names(connection, store.segments_container) == []
    assert names(connection, store.container) == []


async def test_cancel_after_a_write_cancelled_while_its_segment_ends(
    store: SwiftStore, connection: swift.Connection
) -> None:
    writer = await store.open_writer(new_key())
    # Exactly a segment: the write ends waiting for Swift to store it.
    task = asyncio.create_task(writer.write(payload(MiB)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.cancel()
    assert names(connection, store.segments_container) == []


async def test_a_committed_large_object_is_never_replaced(store: SwiftStore) -> None:
    key = new_key()
    stored = await put(store, key, payload(2 * MiB, seed=13))
    await store.discard(new_key())  # someone else's key: nothing happens to this one
    with pytest.raises(StoreError, match="already exists"):
        await store.open_writer(key)
    assert await read(store, stored.location) == payload(2 * MiB, seed=13)


async def test_purge_staging_spares_a_committed_object_whose_marker_was_left(
    store: SwiftStore, connection: swift.Connection
) -> None:
    key = new_key()
    stored = await put(store, key, payload(MiB + 1, seed=14))
    # As if the commit died after publishing the manifest, before removing the marker.
    [segment, _] = names(connection, store.segments_container)
    marker = segment.rpartition("/")[0]
    connection.put_object(
        store.segments_container, marker, b"", content_type="application/x-glint-upload;touched=1"
    )
    assert await store.purge_staging(older_than=600) == 0
    assert names(connection, store.segments_container) == [
        f"{marker}/00000001",
        f"{marker}/00000002",
    ]
    assert await read(store, stored.location) == payload(MiB + 1, seed=14)


async def test_a_live_upload_touches_its_marker(
    store: SwiftStore, connection: swift.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swift_store, "TOUCH_INTERVAL", 0.0)
    key = new_key()
    writer = await store.open_writer(key)
    [marker] = names(connection, store.segments_container)
    connection.post_object(
        store.segments_container, marker, {"Content-Type": "application/x-glint-upload;touched=1"}
    )
    await writer.write(b"still here")
    assert await store.purge_staging(older_than=600) == 0
    # Removed behind its back (another process's purge): the next write says so.
    connection.delete_object(store.segments_container, marker)
    with pytest.raises(StoreError, match="discarded or purged"):
        await writer.write(b"more")
    await writer.cancel()
    assert names(connection, store.segments_container) == []


async def test_a_commit_whose_upload_was_purged_publishes_nothing(
    store: SwiftStore, connection: swift.Connection
) -> None:
    key = new_key()
    writer = await store.open_writer(key)
    await writer.write(payload(MiB + 10))
    [marker, _] = names(connection, store.segments_container)
    connection.delete_object(store.segments_container, marker)
    with pytest.raises(StoreError, match="discarded or purged"):
        await writer.commit()
    assert names(connection, store.segments_container) == []
    assert names(connection, store.container) == []


async def test_manifests_of_manifests_past_the_segment_limit(
    store: SwiftStore, connection: swift.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swift_store, "MAX_MANIFEST_SEGMENTS", 2)
    data = payload(4 * MiB + 3, seed=17)
    stored = await put(store, new_key(), data)
    parts = [name for name in names(connection, store.segments_container) if "manifest" in name]
    assert len(parts) == 3  # five segments, two to a manifest
    assert await read(store, stored.location) == data
    assert await read(store, stored.location, MiB + 5, 2 * MiB) == data[MiB + 5 : 3 * MiB + 5]
    await store.delete(stored.location)
    assert names(connection, store.segments_container) == []


async def test_a_full_container_is_store_full(
    store: SwiftStore, connection: swift.Connection
) -> None:
    await put(store, new_key(), b"x" * 100)
    connection.post_container(store.container, {"X-Container-Meta-Quota-Bytes": "10"})

    async def upload() -> None:
        writer = await store.open_writer(new_key(), size_hint=100)
        try:
            await writer.write(b"y" * 100)
            await writer.commit()
        finally:
            await writer.cancel()

    with pytest.raises(StoreFull, match="413"):
        await upload()


async def test_a_container_removed_underneath_is_made_again(
    store: SwiftStore, connection: swift.Connection, swift_service: SwiftService
) -> None:
    await put(store, new_key(), b"first", piece=5)
    remove_containers(swift_service, [store.container])
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await put(store, new_key(), b"lost", piece=5)
    stored = await put(store, new_key(), b"again", piece=5)
    assert await read(store, stored.location) == b"again"


# --- authentication ------------------------------------------------------------------------


async def test_nothing_happens_before_first_use(container: str) -> None:
    # Nothing listens on port 9: only the first request finds out.
    settings = SwiftStoreSettings(
        auth_url="http://127.0.0.1:9/auth/v1.0", user="a:b", key="c", container=container
    )
    store = SwiftStore("objects", settings)
    location = store.location_for(new_key())
    assert store.contains(location)
    with pytest.raises(StoreUnavailable, match=r"^swift store 'objects': cannot reach http://"):
        await store.stat(location)


async def test_a_wrong_key_is_a_clear_error(swift_service: SwiftService, container: str) -> None:
    store = SwiftStore("objects", v1_settings(swift_service, container, key="wrong"))
    message = (
        f"swift store 'objects': authentication failed at {swift_service.auth_url}: "
        "401 Unauthorized"
    )
    with pytest.raises(StoreUnavailable) as failure:
        await store.open_writer(new_key())
    assert str(failure.value) == message
    with pytest.raises(StoreUnavailable, match=message):
        await read(store, store.location_for(new_key()))


async def test_a_refused_token_is_renewed_once(store: SwiftStore) -> None:
    stored = await put(store, new_key(), b"data")
    url, _ = store._auth.current()
    # As if the token had expired: the next request gets a 401.
    store._auth._current = (url, "AUTH_tkexpired")
    assert await read(store, stored.location) == b"data"
    assert store._auth.current()[1] != "AUTH_tkexpired"


async def test_a_preauthenticated_store(
    swift_service: SwiftService, container: str, connection: swift.Connection
) -> None:
    storage_url, token = swift.get_auth(
        swift_service.auth_url, swift_service.user, swift_service.key
    )
    settings = SwiftStoreSettings(
        storage_url=storage_url, token=token, container=container, read_chunk_size=READ_CHUNK_SIZE
    )
    store = SwiftStore("objects", settings)
    key = new_key()
    stored = await put(store, key, b"preauthenticated")
    assert stored.location == f"swift+{swift_service.storage_url}/{container}/{key}"
    assert token not in stored.location
    assert connection.get_object(container, key)[1] == b"preauthenticated"

    refused = SwiftStore(
        "objects", settings.model_copy(update={"token": SecretStr("AUTH_tkwrong")})
    )
    with pytest.raises(StoreUnavailable, match="'objects': the configured token was refused"):
        await refused.stat(stored.location)


def keystone_settings(container: str, **credentials: Any) -> SwiftStoreSettings:
    return SwiftStoreSettings(
        auth_version="3",
        container=container,
        read_chunk_size=READ_CHUNK_SIZE,
        timeout=10,
        **SMALL_SEGMENTS,
        **credentials,
    )


@pytest.fixture
def keystone_container(keystone_service: KeystoneService) -> Iterator[str]:
    container = unique_container()
    yield container
    auth = password_auth(keystone_service)
    connection = swift.Connection(session=keystone_session.Session(auth=auth))
    remove_container(connection, container)
    remove_container(connection, f"{container}_segments")
    connection.close()


def password_auth(keystone: KeystoneService) -> v3.Password:
    return v3.Password(
        auth_url=keystone.auth_url,
        username=keystone.username,
        password=keystone.password,
        project_name=keystone.project_name,
        user_domain_name=keystone.user_domain_name,
        project_domain_name=keystone.project_domain_name,
    )


async def round_trip(store: SwiftStore) -> str:
    small = await put(store, new_key(), b"through keystone")
    large = await put(store, new_key(), payload(MiB + 1, seed=15))
    assert await read(store, small.location) == b"through keystone"
    assert await read(store, large.location, MiB - 1) == payload(MiB + 1, seed=15)[MiB - 1 :]
    await store.delete(large.location)
    return small.location


async def test_keystone_password_auth(
    keystone_service: KeystoneService, keystone_container: str
) -> None:
    store = SwiftStore(
        "objects",
        keystone_settings(
            keystone_container,
            auth_url=keystone_service.auth_url,
            username=keystone_service.username,
            password=keystone_service.password,
            project_name=keystone_service.project_name,
        ),
    )
    location = await round_trip(store)
    assert location.startswith(f"swift+{keystone_service.auth_url}/{keystone_container}/")
    assert keystone_service.password not in location


async def test_keystone_application_credential_auth(
    keystone_service: KeystoneService, keystone_container: str
) -> None:
    identity = keystone_session.Session(auth=password_auth(keystone_service))
    user_id = identity.get_user_id()
    credentials_url = f"{keystone_service.auth_url}/users/{user_id}/application_credentials"
    created = identity.post(
        credentials_url,
        json={"application_credential": {"name": f"glint-test-{uuid.uuid4().hex[:8]}"}},
    ).json()["application_credential"]
    try:
        store = SwiftStore(
            "objects",
            keystone_settings(
                keystone_container,
                auth_url=keystone_service.auth_url,
                application_credential_id=created["id"],
                application_credential_secret=created["secret"],
            ),
        )
        location = await round_trip(store)
        assert created["secret"] not in location
    finally:
        identity.delete(f"{credentials_url}/{created['id']}")


async def test_a_wrong_keystone_password_is_a_clear_error(
    keystone_service: KeystoneService, keystone_container: str
) -> None:
    store = SwiftStore(
        "objects",
        keystone_settings(
            keystone_container,
            auth_url=keystone_service.auth_url,
            username=keystone_service.username,
            password="wrong",
            project_name=keystone_service.project_name,
        ),
    )
    with pytest.raises(StoreUnavailable) as failure:
        await store.open_writer(new_key())
    assert str(failure.value) == (
        f"swift store 'objects': authentication failed at {keystone_service.auth_url}: "
        "401 Unauthorized"
    )


def test_locations_carry_no_credentials(swift_service: SwiftService) -> None:
    settings = v1_settings(
        swift_service, "glint", auth_url="http://someone:secret@127.0.0.1:8280/auth/v1.0"
    )
    store = SwiftStore("objects", settings)
    location = store.location_for("key")
    assert location == "swift+http://127.0.0.1:8280/auth/v1.0/glint/key"
    assert store.contains(location)
    for secret in ("someone", "secret", swift_service.key):
        assert secret not in location


# --- a server that vanishes ----------------------------------------------------------------


async def test_the_server_vanishing_mid_upload(
    swift_service: SwiftService, container: str, connection: swift.Connection
) -> None:
    storage_url, token = swift.get_auth(
        swift_service.auth_url, swift_service.user, swift_service.key
    )
    path = storage_url.partition(f"{swift_service.host}:{swift_service.port}")[2]
    with cuttable(swift_service.host, swift_service.port) as forwarder:
        settings = SwiftStoreSettings(
            storage_url=forwarder.url + path, token=token, container=container, **SMALL_SEGMENTS
        )
        store = SwiftStore("objects", settings)
        key = new_key()
        writer = await store.open_writer(key)
        forwarder.cut_after_upstream(2 * MiB + MiB // 2)

        async def upload() -> None:
            for _ in range(8):
                await writer.write(payload(MiB // 2))

        with pytest.raises(StoreUnavailable, match=r"^swift store 'objects': writing"):
            await upload()
        assert forwarder.is_cut
        forwarder.mend()
        await writer.cancel()
    # What reached Swift before the cut (a segment or two and the marker) is gone.
    assert names(connection, store.segments_container) == []
    assert names(connection, container) == []


async def test_the_server_vanishing_mid_download(
    swift_service: SwiftService, store: SwiftStore
) -> None:
    data = payload(3 * MiB, seed=16)
    stored = await put(store, new_key(), data)
    storage_url, token = swift.get_auth(
        swift_service.auth_url, swift_service.user, swift_service.key
    )
    path = storage_url.partition(f"{swift_service.host}:{swift_service.port}")[2]
    with cuttable(swift_service.host, swift_service.port) as forwarder:
        settings = SwiftStoreSettings(
            storage_url=forwarder.url + path,
            token=token,
            container=store.container,
            read_chunk_size=READ_CHUNK_SIZE,
        )
        behind = SwiftStore("objects", settings)
        location = behind.location_for(stored.location.rpartition("/")[2])
        forwarder.cut_after_downstream(MiB)
        received: list[bytes] = []

        async def download() -> None:
            async for chunk in behind.open_reader(location):
                received.append(chunk)

        with pytest.raises(StoreUnavailable, match=r"^swift store 'objects': reading"):
            await download()
        # Never a clean short read: what came before the failure was the object's start.
        assert data.startswith(b"".join(received))
        assert 0 < len(b"".join(received)) < len(data)
