"""The S3 store: objects in one bucket of AWS S3 or an S3-compatible server (Swift's s3api,
Ceph RGW, MinIO), through boto3.

A writer buffers what it is given. An object that ends below the single-PUT threshold is one
`put_object` at commit; one that outgrows it becomes a multipart upload whose parts are sent as
they fill, a few at a time, and `complete_multipart_upload` publishes it at commit. A writer
holds at most the part it is filling plus the parts in flight, whatever the object's size.
Both publishing calls carry `If-None-Match: *`, so a committed object is never replaced: S3
(since 2024) and Swift's s3api (2.38) refuse the write with 412 when the key has an object.

What a writer has staged is its buffer, in this process, and its multipart upload, in the
bucket; `discard` and `purge_staging` remove both. Every SDK call runs in a worker thread, and
every call a writer makes is a task of its own: a writer whose awaiting task was cancelled
still learns what its calls produced (an upload id, a published object) and cleans it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from app.config import S3StoreSettings
from app.storage.base import Capability, Store, StoredObject
from app.storage.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from app.storage.file import validate_key
from app.storage.guards import WriterGuards
from app.storage.threads import abandon, run_in_thread

T = TypeVar("T")

log = logging.getLogger(__name__)

SCHEMES = frozenset({"s3", "s3+http", "s3+https"})
MiB = 1024 * 1024
# S3's limits: parts are numbered 1 to 10,000; a part, and a single PUT, is at most 5 GiB.
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024**3
# Each download holds a connection while its reader streams, uploads one per part in flight:
# a pool this size rarely has to open (and throw away) extra connections.
MAX_CONNECTIONS = 64
RETRY_ATTEMPTS = 3

_MISSING = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
_UPLOAD_GONE = {"NoSuchUpload", "NoSuchKey", "404"}
_FULL = {"EntityTooLarge", "InsufficientStorage", "QuotaExceeded", "StorageFull"}
_REFUSED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "401",
    "403",
}


# boto3 sessions are not thread-safe; clients are made under this lock, in one session.
_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> Any:
    """The process's boto3 session: botocore then parses its S3 model (half a second) once,
    not once per store. Not boto3's default session, which any code may reconfigure."""
    return boto3.session.Session()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Store:
    schemes: frozenset[str] = SCHEMES

    def __init__(
        self,
        store_id: str,
        *,
        access_key: str,
        secret_key: str,
        bucket: str,
        endpoint_url: str | None = None,
        region_name: str = "us-east-1",
        addressing_style: str = "auto",
        large_object_size: int = 16 * MiB,
        part_size: int = 16 * MiB,
        upload_concurrency: int = 4,
        checksum: str = "when_required",
        verify: bool | Path = True,
        timeout: float = 60.0,
        read_chunk_size: int = 4 * MiB,
    ) -> None:
        self.store_id = store_id
        self.bucket = bucket
        self.endpoint_url = endpoint_url or f"https://s3.{region_name}.amazonaws.com"
        endpoint = urlsplit(self.endpoint_url)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise ValueError(f"endpoint_url must be an http(s) URL, not {self.endpoint_url!r}")
        self.region_name = region_name
        self.large_object_size = min(large_object_size, MAX_PART_SIZE)
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.timeout = timeout
        self.read_chunk_size = read_chunk_size
        self.capabilities = (
            Capability.READ | Capability.READ_RANDOM | Capability.WRITE | Capability.DELETE
        )
        self.client_config = Config(
            region_name=region_name,
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            # Explicit, not boto3's default of the day: since 1.36 it adds CRC checksums to
            # every upload and expects them back, which not every S3-compatible server does.
            request_checksum_calculation=checksum,
            response_checksum_validation=checksum,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": RETRY_ATTEMPTS},
            max_pool_connections=MAX_CONNECTIONS,
        )
        self._access_key = access_key
        self._secret_key = secret_key
        self._verify: bool | str = str(verify) if isinstance(verify, Path) else verify
        self._s3: Any = None
        self._bucket_ready = False
        self._writers: set[S3Writer] = set()

        # Glance's location forms, without its credentials: s3:// is plain http.
        self._tls = endpoint.scheme == "https"
        self._host = endpoint.hostname
        self._port = endpoint.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        netloc = (
            host if endpoint.port in (None, 443 if self._tls else 80) else f"{host}:{self._port}"
        )
        self._bucket_path = f"{endpoint.path.rstrip('/')}/{bucket}/"
        self._location_prefix = f"{'s3+https' if self._tls else 's3'}://{netloc}{self._bucket_path}"

    @classmethod
    def from_settings(cls, store_id: str, settings: S3StoreSettings, data_dir: Path) -> S3Store:
        return cls(
            store_id,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            bucket=settings.bucket,
            endpoint_url=settings.endpoint_url,
            region_name=settings.region_name,
            addressing_style=settings.addressing_style,
            large_object_size=settings.large_object_size,
            part_size=settings.part_size,
            upload_concurrency=settings.upload_concurrency,
            checksum=settings.checksum,
            verify=settings.verify,
            timeout=settings.timeout,
            read_chunk_size=settings.read_chunk_size,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.store_id!r}, {self.endpoint_url!r}, bucket={self.bucket!r})"

    def client(self) -> Any:
        """The store's boto3 client (thread-safe), made on first use. Making it reads
        botocore's service model from disk: call this from a worker thread."""
        with _SESSION_LOCK:
            if self._s3 is None:
                self._s3 = _session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    verify=self._verify,
                    config=self.client_config,
                )
            return self._s3

    @property
    def open_writers(self) -> list[S3Writer]:
        """The writers of this store that neither committed nor were cancelled, discarded or
        purged: what they buffer is staged data that lives in this process only."""
        return list(self._writers)

    # --- errors ------------------------------------------------------------------------------

    def _error(self, error: ClientError | BotoCoreError, doing: str) -> StoreError:
        def failure(kind: type[StoreError], problem: str) -> StoreError:
            return kind(f"s3 store {self.store_id!r}: {problem} ({doing})")

        endpoint = self.endpoint_url
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            if code in _FULL or status in (413, 507):
                return failure(StoreFull, f"{endpoint} has no room: {code}")
            if code in _REFUSED or status in (401, 403):
                return failure(
                    StoreUnavailable, f"the access key was refused by {endpoint}: {code}"
                )
            if code == "NoSuchBucket":
                return failure(
                    StoreUnavailable, f"bucket {self.bucket!r} does not exist at {endpoint}"
                )
            if code == "PreconditionFailed" or status == 412:
                return failure(StoreError, "an object already exists under that key")
            if code == "NoSuchUpload":
                return failure(StoreError, "the staged upload was discarded or purged")
            if status >= 500:
                return failure(StoreUnavailable, f"{endpoint} failed: {code} ({status})")
            message = error.response.get("Error", {}).get("Message", "")
            return failure(StoreUnavailable, f"{endpoint} refused the request: {code} {message}")
        if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
            return failure(StoreUnavailable, f"{endpoint} did not answer within {self.timeout} s")
        return failure(StoreUnavailable, f"cannot talk to {endpoint}: {error}")

    async def _call(
        self,
        operation: Callable[[Any], T],
        doing: str,
        *,
        missing: str | None = None,
        on_abandon: Callable[[T], object] | None = None,
    ) -> T:
        """`operation(client)` in a worker thread, with the SDK's errors mapped to the store's;
        ObjectNotFound(`missing`) when it finds no object (or no bucket)."""
        try:
            return await run_in_thread(lambda: operation(self.client()), on_abandon=on_abandon)
        except ClientError as error:
            if missing is not None and (_code(error) in _MISSING or _status(error) == 404):
                raise ObjectNotFound(missing) from None
            raise self._error(error, doing) from error
        except BotoCoreError as error:
            raise self._error(error, doing) from error

    # --- locations ---------------------------------------------------------------------------

    def location_for(self, key: str) -> str:
        return self._location_prefix + validate_key(key)

    def contains(self, location: str) -> bool:
        return self._key_or_none(location) is not None

    def _key_or_none(self, location: str) -> str | None:
        scheme, separator, rest = location.partition("://")
        if not separator or scheme not in SCHEMES or (scheme == "s3+https") != self._tls:
            return None
        # Glance's older locations carry the access key and secret before the host; they are
        # ignored (this store signs with its own). Neither bucket nor key may contain an @.
        rest = rest.rpartition("@")[2]
        netloc, _, path = rest.partition("/")
        try:
            address = urlsplit(f"//{netloc}")
            port = address.port or (443 if self._tls else 80)
        except ValueError:
            return None
        if address.hostname != self._host or port != self._port:
            return None
        path = "/" + path
        if not path.startswith(self._bucket_path):
            return None
        key = path[len(self._bucket_path) :]
        try:
            return validate_key(key)
        except ValueError:
            return None

    def _key(self, location: str) -> str:
        key = self._key_or_none(location)
        if key is None:
            raise StoreError(f"location {location!r} is not in store {self.store_id!r}")
        return key

    # --- writing -----------------------------------------------------------------------------

    async def open_writer(self, key: str, size_hint: int | None = None) -> S3Writer:
        validate_key(key)
        part_size, first_part = self._plan(size_hint)
        if not self._bucket_ready:
            await self._call(self._ensure_bucket, f"preparing bucket {self.bucket!r}")
            self._bucket_ready = True
        writer = S3Writer(self, key, part_size=part_size, first_part=first_part)
        self._writers.add(writer)
        return writer

    def _plan(self, size_hint: int | None) -> tuple[int, int]:
        """The part size of an upload, and how many bytes it buffers before its first part is
        sent (below that, the object is one `put_object`)."""
        if size_hint is not None and size_hint < self.large_object_size:
            return self.part_size, self.large_object_size
        # Unknown sizes: the first part decides.
        part_size = self.part_size
        if size_hint is not None:
            # Enough for the hinted size within S3's part count, in whole MiB.
            part_size = max(part_size, math.ceil(size_hint / MAX_PARTS / MiB) * MiB)
            if part_size > MAX_PART_SIZE:
                raise StoreFull(
                    f"s3 store {self.store_id!r} cannot hold {size_hint} bytes: an S3 object is "
                    f"at most {MAX_PARTS} parts of {MAX_PART_SIZE} bytes"
                )
        return part_size, part_size

    def _ensure_bucket(self, client: Any) -> None:
        # A listing rather than HEAD: its errors have codes (a bad key and a bucket of someone
        # else's both look like a bare 403 to HEAD), and it needs no more than read access.
        try:
            client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            return
        except ClientError as error:
            if _code(error) != "NoSuchBucket":
                raise
        options: dict[str, Any] = {}
        if self.region_name != "us-east-1":  # the one region S3 refuses to be told about
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region_name}
        try:
            client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as error:
            # Another process (or store) made it meanwhile.
            if _code(error) != "BucketAlreadyOwnedByYou":
                raise

    def _forget(self, writer: S3Writer) -> None:
        self._writers.discard(writer)

    def _aborter(self, key: str, upload_id: str) -> Callable[[Any], None]:
        def abort(client: Any) -> None:
            try:
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as error:
                # Gone already (aborted, purged, completed): what abort was for. s3api answers
                # NoSuchKey where S3 says NoSuchUpload.
                if _code(error) not in _UPLOAD_GONE:
                    raise

        return abort

    def _uploads(self, client: Any, prefix: str = "") -> list[dict[str, Any]]:
        """The bucket's multipart uploads in progress whose key starts with `prefix` and could
        be this driver's; none when the bucket does not exist."""
        uploads: list[dict[str, Any]] = []
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                uploads.extend(page.get("Uploads", []))
        except ClientError as error:
            if _code(error) != "NoSuchBucket":
                raise
        return [upload for upload in uploads if self._is_key(upload["Key"])]

    @staticmethod
    def _is_key(key: str) -> bool:
        try:
            validate_key(key)
        except ValueError:
            return False
        return True

    async def discard(self, key: str) -> None:
        validate_key(key)
        for writer in [writer for writer in self._writers if writer.key == key]:
            await writer.drop("discarded")

        def remove(client: Any) -> None:
            # Staged uploads first: a commit racing this either finds its upload gone, or has
            # published the object, which is deleted next.
            for upload in self._uploads(client, prefix=key):
                if upload["Key"] == key:
                    self._aborter(key, upload["UploadId"])(client)
            client.delete_object(Bucket=self.bucket, Key=key)

        with contextlib.suppress(ObjectNotFound):  # no bucket: nothing to discard
            await self._call(remove, f"discarding {key!r}", missing=key)

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        spared = frozenset(keep)
        cutoff = time.monotonic() - older_than
        removed = 0
        for writer in self.open_writers:
            if writer.key not in spared and writer.touched_at < cutoff:
                await writer.drop("purged")
                removed += 1
        # Uploads of the writers still alive here are theirs, however old they look.
        ours = {writer.upload_id for writer in self._writers}

        def purge(client: Any) -> int:
            before = datetime.now(UTC) - timedelta(seconds=older_than)
            aborted = 0
            for upload in self._uploads(client):
                key, upload_id = upload["Key"], upload["UploadId"]
                if key in spared or upload_id in ours or upload["Initiated"] >= before:
                    continue
                if self._last_part_at(client, key, upload_id) >= before:
                    continue  # started long ago, but its writer (in another process) still sends
                self._aborter(key, upload_id)(client)
                aborted += 1
            return aborted

        return removed + await self._call(purge, "purging staged uploads")

    def _last_part_at(self, client: Any, key: str, upload_id: str) -> datetime:
        latest = datetime.min.replace(tzinfo=UTC)
        try:
            for page in client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            ):
                for part in page.get("Parts", []):
                    latest = max(latest, part["LastModified"])
        except ClientError as error:
            if _code(error) not in _UPLOAD_GONE:
                raise
        return latest

    # --- reading -----------------------------------------------------------------------------

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        key = self._key(location)
        if length == 0:
            await self.stat(location)  # still ObjectNotFound for a missing object
            return
        ranged: dict[str, str] = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            ranged["Range"] = f"bytes={offset}-{last}"

        def get(client: Any) -> _ResponseBody | None:
            try:
                response = client.get_object(Bucket=self.bucket, Key=key, **ranged)
            except ClientError as error:
                if _code(error) == "InvalidRange":  # starts at or past the end: no bytes
                    return None
                raise
            return _ResponseBody(response["Body"], response["ContentLength"])

        doing = f"reading {location}"
        body = await self._call(get, doing, missing=location, on_abandon=_close_body)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        received = 0
        pending: asyncio.Future[bytes] | None = None
        try:
            # One read ahead: the next chunk comes off the network while the caller sends this.
            if body.size:
                pending = body.submit(loop, self.read_chunk_size)
            while pending is not None:
                try:
                    # Shielded: only the read itself may close the body it is reading.
                    chunk = await asyncio.shield(pending)
                except (ClientError, BotoCoreError) as error:
                    raise self._error(error, doing) from error
                pending = None
                if not chunk:
                    # botocore checks the length too; a truncated object must never look whole.
                    raise StoreUnavailable(
                        f"s3 store {self.store_id!r}: {self.endpoint_url} sent {received} of "
                        f"{body.size} bytes ({doing})"
                    )
                received += len(chunk)
                if received < body.size:
                    pending = body.submit(loop, self.read_chunk_size)
                yield chunk
        finally:
            if pending is not None:
                abandon(pending)
            body.close()

    async def stat(self, location: str) -> int:
        key = self._key(location)
        response = await self._call(
            lambda client: client.head_object(Bucket=self.bucket, Key=key),
            f"stat of {location}",
            missing=location,
        )
        return int(response["ContentLength"])

    async def delete(self, location: str) -> None:
        key = self._key(location)
        with contextlib.suppress(ObjectNotFound):  # no bucket: nothing to delete
            await self._call(
                lambda client: client.delete_object(Bucket=self.bucket, Key=key),
                f"deleting {location}",
                missing=location,
            )


def _close_body(body: _ResponseBody | None) -> None:
    if body is not None:
        body.close()


class _ResponseBody:
    """A response body read in worker threads that outlives an abandoned read: the stream is
    not safe to close while another thread reads it, so `close` during a read only asks, and
    that read closes the stream when it returns."""

    def __init__(self, stream: Any, size: int) -> None:
        self.stream = stream
        self.size = size
        self._lock = threading.Lock()
        self._busy = False
        self._closing = False

    def submit(self, loop: asyncio.AbstractEventLoop, size: int) -> asyncio.Future[bytes]:
        with self._lock:
            self._busy = True
        return loop.run_in_executor(None, self._read, size)

    def _read(self, size: int) -> bytes:
        try:
            return bytes(self.stream.read(size))
        finally:
            with self._lock:
                self._busy = False
                if self._closing:
                    self.stream.close()

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._busy:
                return
        self.stream.close()


class S3Writer(WriterGuards):
    """Streams one object into the bucket; see the module docstring and `S3Store.open_writer`.

    `buffered` counts the bytes this writer holds (the part it fills and the parts in flight);
    `peak_buffered` is the most it ever held.
    """

    def __init__(self, store: S3Store, key: str, *, part_size: int, first_part: int) -> None:
        self.key = key
        self.upload_id: str | None = None
        self.touched_at = time.monotonic()
        self.peak_buffered = 0
        self._store = store
        self._part_size = part_size
        self._fill_to = first_part
        self._buffer = bytearray()
        self._size = 0
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._in_flight_bytes = 0
        self._part_error: BaseException | None = None
        # Every call to the server this writer started and that has not finished.
        self._pending: set[asyncio.Task[Any]] = set()
        self._parts: set[asyncio.Task[None]] = set()
        self._creating: asyncio.Task[None] | None = None
        self._published = False
        self._cleanup: asyncio.Task[StoreError | None] | None = None
        # After commit or cancel nothing more is accepted, after a failed write only cancel is
        # (the upload holds an unknown prefix), and a discarded or purged writer cannot commit.
        self._dropped: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer) + self._in_flight_bytes

    def _check_open(self) -> None:
        super()._check_open()
        if self._dropped is not None:
            raise StoreError(f"the staged upload of {self.key!r} was {self._dropped}")

    def _spawn(self, call: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(call)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._check_open()
        self.touched_at = time.monotonic()
        view = memoryview(chunk).cast("B")
        try:
            # A write that only buffers would otherwise never give the event loop a turn, nor
            # a cancellation a point to land.
            await asyncio.sleep(0)
            while view:
                room = self._fill_to - len(self._buffer)
                if room == 0:
                    # Full, and more is coming: the part goes (a full last part goes at commit).
                    await self._send_part()
                    continue
                # The one copy of the caller's bytes, which it may reuse once this returns.
                self._buffer += view[:room]
                taken = min(room, len(view))
                self._size += taken
                view = view[taken:]
                self.peak_buffered = max(self.peak_buffered, self.buffered)
        except BaseException as error:
            self._failed = True
            if not isinstance(error, asyncio.CancelledError):
                # Aborted now rather than at `cancel`, which retries if the server was away.
                self._start_cleanup()
            raise

    async def _send_part(self) -> None:
        if self._dropped is not None:
            raise StoreError(f"the staged upload of {self.key!r} was {self._dropped}")
        number = self._next_part
        if number > MAX_PARTS:
            raise StoreFull(
                f"s3 store {self._store.store_id!r}: {self.key!r} outgrew S3's {MAX_PARTS} "
                f"parts of {self._part_size} bytes"
            )
        if self.upload_id is None:
            if self._creating is None:
                self._creating = self._spawn(self._create_upload())
            await asyncio.shield(self._creating)
            self._fill_to = self._part_size
        await self._wait_for_parts(at_most=self._store.upload_concurrency - 1)
        part, self._buffer = self._buffer, bytearray()
        self._next_part += 1
        self._in_flight_bytes += len(part)
        task = self._spawn(self._upload_part(number, part))
        self._parts.add(task)
        task.add_done_callback(self._parts.discard)

    async def _create_upload(self) -> None:
        store = self._store
        response = await store._call(
            lambda client: client.create_multipart_upload(Bucket=store.bucket, Key=self.key),
            f"starting the upload of {self.key!r}",
        )
        self.upload_id = response["UploadId"]

    async def _upload_part(self, number: int, part: bytearray) -> None:
        store, upload_id = self._store, self.upload_id
        try:
            response = await store._call(
                lambda client: client.upload_part(
                    Bucket=store.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part,
                ),
                f"uploading part {number} of {self.key!r}",
            )
        except Exception as error:
            # Kept for the writer's next call rather than left unretrieved in this task.
            if self._part_error is None:
                self._part_error = error
            return
        finally:
            self._in_flight_bytes -= len(part)
        self._etags[number] = response["ETag"]

    async def _wait_for_parts(self, at_most: int) -> None:
        while len(self._parts) > at_most:
            await asyncio.wait(set(self._parts), return_when=asyncio.FIRST_COMPLETED)
        if self._part_error is not None:
            raise self._part_error

    async def commit(self) -> StoredObject:
        self._check_open()
        self._committed = True
        # A touch: purge_staging spares a writer that is committing.
        self.touched_at = time.monotonic()
        try:
            if self.upload_id is not None and self._buffer:
                await self._send_part()
            await self._wait_for_parts(at_most=0)
            await asyncio.shield(self._spawn(self._publish()))
        except BaseException as error:
            self._committed = False
            self._cancelled = True
            self._store._forget(self)
            cleanup = self._start_cleanup()
            # Left behind is nothing, once the clean-up ran; a cancelled commit does not wait
            # for the server, and a clean-up that fails is logged and left to purge_staging.
            if not isinstance(error, asyncio.CancelledError):
                await asyncio.shield(cleanup)
            raise
        self._store._forget(self)
        self._buffer = bytearray()
        return StoredObject(location=self._store.location_for(self.key), size=self._size)

    async def _publish(self) -> None:
        store, key, upload_id = self._store, self.key, self.upload_id
        doing = f"committing {key!r}"
        if upload_id is None:
            body = self._buffer
            await store._call(
                lambda client: client.put_object(
                    Bucket=store.bucket, Key=key, Body=body, IfNoneMatch="*"
                ),
                doing,
            )
        else:
            parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self._etags.items())]
            await store._call(
                lambda client: client.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
                doing,
            )
            self.upload_id = None
        self._published = True

    def _start_cleanup(self) -> asyncio.Task[StoreError | None]:
        """The task that removes what this writer left on the server; a new one when the last
        one failed."""
        cleanup = self._cleanup
        if cleanup is None or (cleanup.done() and cleanup.result() is not None):
            cleanup = self._cleanup = asyncio.create_task(self._remove_staged())
        return cleanup

    async def _remove_staged(self) -> StoreError | None:
        # Every call still running finishes first: a part that landed after the abort would
        # outlive it, and an upload id still being created would be missed.
        if self._pending:
            await asyncio.wait(set(self._pending))
        store = self._store
        try:
            if self._published:
                # Published by a commit whose caller was cancelled and never learnt of it.
                await store._call(
                    lambda client: client.delete_object(Bucket=store.bucket, Key=self.key),
                    f"removing {self.key!r}",
                )
                self._published = False
            elif self.upload_id is not None:
                await store._call(
                    store._aborter(self.key, self.upload_id),
                    f"aborting the upload of {self.key!r}",
                )
                self.upload_id = None
        except StoreError as error:
            log.warning("could not remove the staged upload of %r: %s", self.key, error)
            return error
        return None

    async def _clean_up(self) -> None:
        self._buffer = bytearray()
        self._store._forget(self)
        earlier = self._cleanup
        cleanup = self._start_cleanup()
        error = await asyncio.shield(cleanup)
        if error is not None and cleanup is earlier:
            # Started by a failed write or commit, perhaps during the same outage: once more.
            error = await asyncio.shield(self._start_cleanup())
        if error is not None:
            raise error

    async def drop(self, reason: str) -> None:
        """Drops this writer's staged data for `discard` or `purge_staging` (`reason`, which
        its later calls are refused with)."""
        self._dropped = reason
        await self._clean_up()

    async def cancel(self) -> None:
        # Safe more than once and after a failed commit (which started the clean-up); after a
        # successful commit the object is the caller's, to delete through the store.
        if self._committed:
            return
        self._cancelled = True
        await self._clean_up()


if TYPE_CHECKING:
    # mypy proves that the driver fits the seam.
    _FITS: type[Store] = S3Store
