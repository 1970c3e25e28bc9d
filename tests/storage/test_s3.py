"""The S3 store against real Swift with its S3 API (scripts/swift.sh, through tests/services.py).

The contract runs twice: with the default thresholds, and with the smallest S3 allows (5 MiB),
so that its larger payloads go through multipart uploads. Then what only this driver has: the
multipart layout and its bounded buffer, Range requests, refused keys, the server vanishing in
the middle of a transfer (tests/faults.py), credential-free locations, and the checksum setting.
Each test has a bucket of its own, emptied and removed afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from app.config import S3StoreSettings
from app.storage.base import Store
from app.storage.errors import ObjectNotFound, StoreError, StoreUnavailable
from app.storage.s3 import S3Store, S3Writer
from tests import services
from tests.faults import cuttable
from tests.services import SwiftService
from tests.storage.contract import MiB, StoreContract, new_key, payload, put, read, read_chunks

pytestmark = pytest.mark.anyio

# The smallest part S3 accepts (but for the last one).
SMALLEST = {"part_size": 5 * MiB, "large_object_size": 5 * MiB}


@functools.cache
def direct() -> Any:
    """A boto3 client of its own, to look at the bucket behind the store's back."""
    return services.swift_service().s3_client()


def uploads(bucket: str) -> list[dict[str, Any]]:
    """The bucket's multipart uploads in progress."""
    pages = direct().get_paginator("list_multipart_uploads").paginate(Bucket=bucket)
    return [upload for page in pages for upload in page.get("Uploads", [])]


def remove_bucket(bucket: str) -> None:
    client = direct()
    try:
        staged = uploads(bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchBucket":
            return  # the test never used it
        raise
    for upload in staged:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        if page.get("Contents"):
            client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": entry["Key"]} for entry in page["Contents"]]},
            )
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def remove_later() -> Iterator[Callable[[str], None]]:
    """Removes buckets in the background, so that tests need not wait for Swift to drop
    containers; the module fails if one could not be removed."""
    with ThreadPoolExecutor(max_workers=2) as remover:
        removals: list[Future[None]] = []
        yield lambda name: removals.append(remover.submit(remove_bucket, name))
    for removal in removals:
        removal.result()


def new_bucket() -> str:
    return f"glint-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bucket(swift_service: SwiftService, remove_later: Callable[[str], None]) -> Iterator[str]:
    name = new_bucket()
    yield name
    remove_later(name)


@pytest.fixture
def other_bucket(swift_service: SwiftService, remove_later: Callable[[str], None]) -> Iterator[str]:
    name = new_bucket()
    yield name
    remove_later(name)


def make_store(
    service: SwiftService, bucket: str, store_id: str = "objects", **options: Any
) -> S3Store:
    return S3Store(
        store_id,
        **{
            "access_key": service.s3_access_key,
            "secret_key": service.s3_secret_key,
            "bucket": bucket,
            "endpoint_url": service.s3_endpoint,
            "region_name": service.region,
            "addressing_style": "path",
            **options,
        },
    )


async def staged(store: S3Store) -> list[str]:
    """What the store holds uncommitted: its multipart uploads in progress, and what its open
    writers buffer in this process."""
    server = {
        (upload["Key"], upload["UploadId"])
        for upload in await asyncio.to_thread(uploads, store.bucket)
    }
    local = {(writer.key, writer.upload_id) for writer in store.open_writers}
    return sorted(key for key, _ in server | local)


def netloc(store: S3Store) -> str:
    return urlsplit(store.endpoint_url).netloc


class TestS3StoreContract(StoreContract):
    store_options: ClassVar[dict[str, int]] = {}

    @pytest.fixture
    def store(self, swift_service: SwiftService, bucket: str) -> Store:
        return make_store(
            swift_service, bucket, read_chunk_size=self.read_chunk_size, **self.store_options
        )

    @pytest.fixture
    def other_store(self, swift_service: SwiftService, other_bucket: str) -> Store:
        return make_store(swift_service, other_bucket, "other", **self.store_options)

    def location_for(self, store: Store, key: str) -> str:
        assert isinstance(store, S3Store)
        return f"s3://{netloc(store)}/{store.bucket}/{key}"

    async def staged(self, store: Store) -> list[str]:
        assert isinstance(store, S3Store)
        return await staged(store)

    def staging_location(self, store: Store, key: str) -> str | None:
        # Where Swift's s3api keeps the parts of a multipart upload.
        assert isinstance(store, S3Store)
        return f"s3://{netloc(store)}/{store.bucket}+segments/{key}"

    async def backdate(self, store: Store, key: str, seconds: float) -> None:
        assert isinstance(store, S3Store)
        for writer in store.open_writers:
            if writer.key == key:
                writer.touched_at -= seconds

    def foreign_locations(self, store: Store) -> list[str]:
        assert isinstance(store, S3Store)
        host, port = urlsplit(store.endpoint_url).hostname, urlsplit(store.endpoint_url).port
        bucket, key = store.bucket, new_key()
        return [
            *super().foreign_locations(store),
            f"s3://{host}:{port}/{bucket}x/{key}",
            f"s3://{host}:{port}/x{bucket}/{key}",
            f"s3://{host}:{port}/{bucket}/nested/{key}",
            f"s3://{host}:{port}/{bucket}/../{bucket}/{key}",
            f"s3://{host}:{port}/{bucket}/{key}?uploadId=1",
            f"s3://{host}:{port}/{bucket}/",
            f"s3://{host}:{port + 1 if port else 1}/{bucket}/{key}",
            f"s3://{host}/{bucket}/{key}",
            f"s3://other.example/{bucket}/{key}",
            f"s3+https://{host}:{port}/{bucket}/{key}",
            f"swift://{host}:{port}/{bucket}/{key}",
        ]


class TestS3StoreMultipartContract(TestS3StoreContract):
    store_options: ClassVar[dict[str, int]] = SMALLEST


# --- multipart uploads and the buffer -------------------------------------------------------


def parts_of(bucket: str, key: str) -> list[int]:
    """The sizes of the parts of a committed object; [size] for a single PUT."""
    head = direct().head_object(Bucket=bucket, Key=key, PartNumber=1)
    count = head.get("PartsCount", 1)
    return [
        direct().head_object(Bucket=bucket, Key=key, PartNumber=number)["ContentLength"]
        for number in range(1, count + 1)
    ]


async def write_in_pieces(writer: S3Writer, data: bytes, piece: int = 256 * 1024) -> None:
    for start in range(0, len(data), piece):
        await writer.write(data[start : start + piece])


async def test_a_known_large_size_is_uploaded_in_parts(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, upload_concurrency=2, **SMALLEST)
    data, key = payload(12 * MiB + 1, seed=10), new_key()
    writer = await store.open_writer(key, len(data))
    await write_in_pieces(writer, data)
    assert await staged(store) == [key]
    with pytest.raises(ObjectNotFound):
        await store.stat(store.location_for(key))
    stored = await writer.commit()

    assert await asyncio.to_thread(parts_of, bucket, key) == [5 * MiB, 5 * MiB, 2 * MiB + 1]
    assert await read(store, stored.location) == data
    assert await staged(store) == []
    # The part being filled and at most two in flight.
    assert 5 * MiB <= writer.peak_buffered <= 3 * 5 * MiB
    assert writer.buffered == 0


async def test_an_unknown_size_goes_multipart_once_it_outgrows_the_first_part(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, upload_concurrency=2, **SMALLEST)
    data, key = payload(31 * MiB + 5, seed=11), new_key()
    writer = await store.open_writer(key)
    await write_in_pieces(writer, data)
    stored = await writer.commit()

    assert await asyncio.to_thread(parts_of, bucket, key) == [5 * MiB] * 6 + [MiB + 5]
    assert await read(store, stored.location) == data
    # Bounded by the parts, not by the object: 31 MiB went through at most 15 MiB.
    assert 5 * MiB <= writer.peak_buffered <= 3 * 5 * MiB


async def test_objects_below_the_threshold_are_a_single_put(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, large_object_size=20 * MiB, part_size=5 * MiB)
    known, unknown = payload(12 * MiB, seed=12), payload(4 * MiB, seed=13)
    known_key, unknown_key = new_key(), new_key()
    await put(store, known_key, known)  # the size is given: below 20 MiB
    writer = await store.open_writer(unknown_key)  # no size: the first 5 MiB decide
    await write_in_pieces(writer, unknown)
    assert await staged(store) == [unknown_key], "nothing on the server yet"
    assert uploads(bucket) == []
    await writer.commit()

    assert await asyncio.to_thread(parts_of, bucket, known_key) == [12 * MiB]
    assert await asyncio.to_thread(parts_of, bucket, unknown_key) == [4 * MiB]


async def test_a_hint_that_was_too_small_still_ends_in_parts(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, large_object_size=6 * MiB, part_size=5 * MiB)
    data, key = payload(14 * MiB, seed=14), new_key()
    writer = await store.open_writer(key, size_hint=MiB)
    await write_in_pieces(writer, data)
    stored = await writer.commit()
    # The first part is what was buffered for a single PUT.
    assert await asyncio.to_thread(parts_of, bucket, key) == [6 * MiB, 5 * MiB, 3 * MiB]
    assert await read(store, stored.location) == data


async def test_a_second_multipart_upload_of_a_key_cannot_replace_the_first(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, **SMALLEST)
    key, first, second = new_key(), payload(6 * MiB, seed=16), payload(7 * MiB, seed=17)
    writers = [await store.open_writer(key), await store.open_writer(key)]
    for writer, data in zip(writers, (first, second), strict=True):
        await write_in_pieces(writer, data)
    assert len(uploads(bucket)) == 2
    stored = await writers[0].commit()
    with pytest.raises(StoreError, match="already exists"):
        await writers[1].commit()
    await writers[1].cancel()
    assert uploads(bucket) == []
    assert await read(store, stored.location) == first


@pytest.mark.parametrize(
    "operation", ["CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject"]
)
async def test_an_upload_cancelled_during_a_call_leaves_nothing(
    swift_service: SwiftService, bucket: str, operation: str
) -> None:
    # The call runs on in its thread: what it makes (an upload, a part, the object) is found
    # and removed by `cancel`.
    store = make_store(swift_service, bucket, **SMALLEST)
    loop = asyncio.get_running_loop()
    sending = asyncio.Event()

    def signal(**_: Any) -> None:
        loop.call_soon_threadsafe(sending.set)

    (await asyncio.to_thread(store.client)).meta.events.register(
        f"before-send.s3.{operation}", signal
    )
    key = new_key()
    writer = await store.open_writer(key)

    async def upload() -> None:
        await write_in_pieces(writer, payload(MiB if operation == "PutObject" else 12 * MiB))
        await writer.commit()

    task = asyncio.create_task(upload())
    await sending.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.cancel()
    assert uploads(bucket) == []
    with pytest.raises(ObjectNotFound):
        await store.stat(store.location_for(key))


async def test_purge_aborts_stale_uploads_of_other_processes_only(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, **SMALLEST)
    live = await store.open_writer(new_key())
    await write_in_pieces(live, payload(6 * MiB, seed=15))  # its first part went
    dead_key, foreign_key = new_key(), "not/a/glint/key"
    client = direct()
    for key in (dead_key, foreign_key):
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
        )
    # The server rounds its times up to the next second.
    await asyncio.sleep(1.05)

    assert await store.purge_staging(older_than=0, keep={live.key}) == 1
    assert sorted(upload["Key"] for upload in uploads(bucket)) == sorted([live.key, foreign_key])
    stored = await live.commit()
    assert await store.stat(stored.location) == 6 * MiB


async def test_discard_aborts_an_upload_left_by_another_process(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket)
    key = new_key()
    await put(store, key, b"committed")
    direct().create_multipart_upload(Bucket=bucket, Key=key)
    await store.discard(key)
    assert uploads(bucket) == []
    with pytest.raises(ObjectNotFound):
        await store.stat(store.location_for(key))


# --- reading --------------------------------------------------------------------------------


async def test_ranged_reads_ask_for_the_range_only(
    swift_service: SwiftService, bucket: str
) -> None:
    store = make_store(swift_service, bucket, read_chunk_size=MiB, **SMALLEST)
    data = payload(12 * MiB, seed=20)
    stored = await put(store, new_key(), data)
    ranges: list[str | None] = []
    client = await asyncio.to_thread(store.client)
    client.meta.events.register(
        "before-send.s3.GetObject",
        lambda request, **_: ranges.append(request.headers.get("Range")),
    )

    offset, length = 4 * MiB + 3, 3 * MiB + 10  # across the first part's end
    chunks = await read_chunks(store, stored.location, offset, length)
    assert b"".join(chunks) == data[offset : offset + length]
    assert [len(chunk) for chunk in chunks] == [MiB, MiB, MiB, 10]
    assert await read(store, stored.location, 11 * MiB) == data[11 * MiB :]
    assert await read(store, stored.location) == data
    assert [value.decode() if isinstance(value, bytes) else value for value in ranges] == [
        f"bytes={offset}-{offset + length - 1}",
        f"bytes={11 * MiB}-",
        None,
    ]


async def test_an_empty_object_reads_back_empty(swift_service: SwiftService, bucket: str) -> None:
    store = make_store(swift_service, bucket)
    stored = await put(store, new_key(), b"")
    assert await read_chunks(store, stored.location) == []
    assert await read_chunks(store, stored.location, 1) == []


# --- failures -------------------------------------------------------------------------------


async def test_a_wrong_secret_is_a_clear_unavailability(
    swift_service: SwiftService, bucket: str
) -> None:
    await put(make_store(swift_service, bucket), "existing", b"data")
    store = make_store(swift_service, bucket, secret_key="not-the-secret")
    refused = rf"^s3 store 'objects': the access key was refused by {swift_service.s3_endpoint}: "
    with pytest.raises(StoreUnavailable, match=refused + "SignatureDoesNotMatch"):
        await store.open_writer(new_key())
    # Never mistaken for a missing object.
    with pytest.raises(StoreUnavailable, match=refused):
        await store.stat(store.location_for("existing"))
    with pytest.raises(StoreUnavailable, match=refused):
        await read(store, store.location_for("existing"))


async def test_nothing_is_reached_before_first_use(bucket: str) -> None:
    # A port nothing listens on: making the store is fine, using it is a clear error.
    with cuttable("127.0.0.1", 9) as forwarder:
        forwarder.cut()
        store = S3Store(
            "objects", access_key="a", secret_key="b", bucket=bucket, endpoint_url=forwarder.url
        )
        with pytest.raises(StoreUnavailable, match=r"^s3 store 'objects': cannot talk to"):
            await store.open_writer(new_key())


async def test_the_server_vanishing_mid_upload(swift_service: SwiftService, bucket: str) -> None:
    with cuttable(swift_service.host, swift_service.port) as forwarder:
        store = make_store(swift_service, bucket, "cut", endpoint_url=forwarder.url, **SMALLEST)
        key = new_key()
        writer = await store.open_writer(key)
        forwarder.cut_after_upstream(8 * MiB)

        async def upload() -> None:
            await write_in_pieces(writer, payload(40 * MiB, seed=30), piece=MiB)
            await writer.commit()

        with pytest.raises(StoreUnavailable, match=rf"^s3 store 'cut': .*{forwarder.url}"):
            await upload()
        assert forwarder.is_cut
        with pytest.raises(StoreError):
            await writer.write(b"more")
        forwarder.mend()
        await writer.cancel()

    assert uploads(bucket) == []
    assert direct().list_objects_v2(Bucket=bucket).get("Contents", []) == []


async def test_the_server_vanishing_mid_download(swift_service: SwiftService, bucket: str) -> None:
    data = payload(12 * MiB, seed=31)
    stored = await put(make_store(swift_service, bucket), new_key(), data)
    with cuttable(swift_service.host, swift_service.port) as forwarder:
        store = make_store(
            swift_service, bucket, "cut", endpoint_url=forwarder.url, read_chunk_size=MiB
        )
        location = store.location_for(stored.location.rpartition("/")[2])
        forwarder.cut_after_downstream(5 * MiB)
        received: list[bytes] = []

        async def download() -> None:
            async for chunk in store.open_reader(location):
                received.append(chunk)

        with pytest.raises(StoreUnavailable, match=r"^s3 store 'cut': "):
            await download()
        got = b"".join(received)
        assert 0 < len(got) < len(data), "cut in the middle, and never a clean short read"
        assert data.startswith(got)


# --- locations and settings -----------------------------------------------------------------


async def test_locations_carry_no_credentials(swift_service: SwiftService, bucket: str) -> None:
    store = make_store(swift_service, bucket)
    key = new_key()
    stored = await put(store, key, b"data")
    assert stored.location == f"s3://{swift_service.host}:{swift_service.port}/{bucket}/{key}"
    for secret in (swift_service.s3_access_key, swift_service.s3_secret_key, "@"):
        assert secret not in stored.location
    assert swift_service.s3_secret_key not in repr(store)

    https = S3Store(
        "aws",
        access_key="AKIA",
        secret_key="secret",
        bucket="images",
        endpoint_url="https://S3.Example.com",
    )
    assert https.location_for(key) == f"s3+https://s3.example.com/images/{key}"
    ported = S3Store(
        "aws",
        access_key="AKIA",
        secret_key="secret",
        bucket="images",
        endpoint_url="https://s3.example.com:8443/",
    )
    assert ported.location_for(key) == f"s3+https://s3.example.com:8443/images/{key}"
    # Glance's spellings of the same object, including its older one with credentials inline.
    assert store.contains(f"s3+http://{swift_service.host}:{swift_service.port}/{bucket}/{key}")
    assert store.contains(
        f"s3://AKIA:se/cr@t@{swift_service.host}:{swift_service.port}/{bucket}/{key}"
    )
    assert https.contains(f"s3+https://s3.example.com:443/images/{key}")
    assert not https.contains(f"s3://s3.example.com/images/{key}")


@pytest.mark.parametrize("checksum", ["when_required", "when_supported"])
async def test_the_checksum_setting_reaches_botocore(
    swift_service: SwiftService, bucket: str, checksum: str, tmp_path: Path
) -> None:
    settings = S3StoreSettings(
        access_key=swift_service.s3_access_key,
        secret_key=swift_service.s3_secret_key,
        endpoint_url=swift_service.s3_endpoint,
        bucket=bucket,
        addressing_style="path",
        checksum=checksum,
    )
    store = S3Store.from_settings("objects", settings, tmp_path)
    client = await asyncio.to_thread(store.client)
    assert client.meta.config.request_checksum_calculation == checksum
    assert client.meta.config.response_checksum_validation == checksum
    assert client.meta.config.s3["addressing_style"] == "path"

    sent: list[set[str]] = []
    client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append({name.lower() for name in request.headers}),
    )
    stored = await put(store, new_key(), b"checked")
    assert await read(store, stored.location) == b"checked"
    assert ("x-amz-checksum-crc32" in sent[0]) == (checksum == "when_supported")
