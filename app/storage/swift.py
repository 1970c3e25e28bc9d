"""The Swift store: objects in one container of an OpenStack Swift account (python-swiftclient).

An object of known size under `large_object_size` is one PUT. Any other is written as segments
of `segment_size` into `<container>_segments`, named `<key>/<upload>/<n>`, and published by a
static large object (SLO) manifest at `<container>/<key>`. Every PUT streams its body from the
writer's chunks, through a small bounded pipe, to a thread of its own, so memory does not grow
with the object; the body of the PUT that publishes only ends at `commit`, so until then Swift
has nothing under the object's name. Publishing PUTs say `If-None-Match: *`: a committed object
is never replaced.

An upload in segments also has a marker, the object `<key>/<upload>` in the segments container,
from `open_writer` until its manifest is published or it is cancelled. The marker's content type
carries when the upload last touched it, so one listing shows `purge_staging` which uploads are
stale, and `discard(key)` finds everything an upload left by its key alone.

Locations name the endpoint the store is configured with (its auth URL, or its storage URL when
it is given one), the container and the key, and never a credential, e.g.
`swift+https://keystone.example.com:5000/v3/glint/<key>`: `contains` decides from the settings
alone, without authenticating. Stores sharing both an endpoint and a container therefore claim
each other's objects; give them different containers.

swiftclient's connections are not thread-safe: each request takes one from a small pool for
itself. The token and storage URL are got on first use, shared, and renewed once when Swift
answers 401.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import http.client
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import urllib3
from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from app.config import SwiftStoreSettings
from app.storage.base import Capability, Store, StoredObject
from app.storage.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from app.storage.guards import WriterGuards
from app.storage.threads import abandon, run_in_thread

T = TypeVar("T")

log = logging.getLogger(__name__)

SEGMENTS_SUFFIX = "_segments"
# Starts with a letter or digit and has no slash, so a key is one level of the segment names.
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MARKER_TYPE = "application/x-glint-upload"
_TOUCHED = re.compile(r";\s*touched=(\d+(?:\.\d+)?)")
# A live upload refreshes its marker this often; purge_staging's `older_than` is far longer.
TOUCH_INTERVAL = 60.0
# What a streaming PUT may hold between the writer and the thread sending it, copied a piece at
# a time, so that neither the caller's chunk size nor the object's size decides the memory used.
PIPE_BYTES = 4 * 1024 * 1024
PIECE_BYTES = 1024 * 1024
# Swift's default `max_manifest_segments`; larger objects get manifests of manifests.
MAX_MANIFEST_SEGMENTS = 1000
IDLE_CONNECTIONS = 8
# What a connection that failed below HTTP raises, from requests, urllib3 or the socket.
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def validate_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"invalid object key {key!r}: expected [A-Za-z0-9][A-Za-z0-9._-]*")
    return key


def _describe(error: BaseException) -> str:
    """What went wrong, without requests' and urllib3's wrapping of it."""
    cause: object = error
    if isinstance(error, requests.RequestException) and error.args:
        cause = error.args[0]
    cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError names the real failure
    return str(cause) or type(cause).__name__


def _status(error: ClientException) -> str:
    return f"{error.http_status} {error.http_reason}".strip()


class _Aborted(Exception):
    """A streaming PUT's body was cut short on purpose; the argument says why."""


def _touched_at(content_type: str) -> float:
    match = _TOUCHED.search(content_type)
    return float(match.group(1)) if match else 0.0


def _marker_type(touched: float) -> str:
    return f"{MARKER_TYPE};touched={touched:.0f}"


# --- authentication ------------------------------------------------------------------------


class _Auth:
    """The storage URL and token: got on first use, shared by every thread, renewed on 401."""

    def __init__(self, store_id: str, settings: SwiftStoreSettings) -> None:
        self._store_id = store_id
        self._settings = settings
        self._lock = threading.Lock()
        self._current: tuple[str, str] | None = None
        self._keystone: Any = None  # a keystoneauth1 Session, made on first use
        self.preauthenticated = settings.storage_url is not None and settings.token is not None
        if settings.storage_url is not None and settings.token is not None:
            self._current = (settings.storage_url, settings.token.get_secret_value())

    def current(self) -> tuple[str, str]:
        with self._lock:
            if self._current is None:
                self._current = self._authenticate()
            return self._current

    def renew(self, refused_token: str) -> tuple[str, str]:
        """After a 401 for `refused_token`: authenticates again, unless another thread has."""
        with self._lock:
            if self._current is not None and self._current[1] != refused_token:
                return self._current
            if self.preauthenticated:
                raise StoreUnavailable(
                    f"swift store {self._store_id!r}: the configured token was refused "
                    f"at {self._settings.storage_url}: 401 Unauthorized"
                )
            if self._keystone is not None:
                self._keystone.invalidate()
            self._current = None
            self._current = self._authenticate()
            return self._current

    def forget(self, refused_token: str) -> None:
        """After a 401 that cannot be retried: the next request authenticates again."""
        with self._lock:
            if not self.preauthenticated and self._current and self._current[1] == refused_token:
                if self._keystone is not None:
                    self._keystone.invalidate()
                self._current = None

    def _failed(self, problem: str) -> StoreUnavailable:
        return StoreUnavailable(f"swift store {self._store_id!r}: {problem}")

    def _authenticate(self) -> tuple[str, str]:
        settings = self._settings
        auth_url = settings.auth_url
        if settings.auth_version == "3":
            return self._keystone_auth()
        # The settings' validator made sure of these.
        assert auth_url is not None
        assert settings.user is not None
        assert settings.key is not None
        verify = settings.verify
        try:
            url, token = swift.get_auth_1_0(
                auth_url,
                settings.user,
                settings.key.get_secret_value(),
                insecure=verify is False,
                cacert=str(verify) if isinstance(verify, Path) else None,
                timeout=settings.timeout,
            )
        except ClientException as error:
            if error.http_status in (401, 403):
                raise self._failed(
                    f"authentication failed at {auth_url}: {_status(error)}"
                ) from None
            raise self._failed(f"authentication at {auth_url} failed: {error.msg}") from None
        except _TRANSPORT_ERRORS as error:
            raise self._failed(f"cannot reach {auth_url}: {_describe(error)}") from None
        if not url or not token:
            raise self._failed(f"{auth_url} gave no storage URL or no token")
        return url, token

    def _keystone_auth(self) -> tuple[str, str]:
        # Imported here: only Keystone deployments need keystoneauth1.
        from keystoneauth1 import exceptions as ksa

        settings = self._settings
        auth_url = settings.auth_url
        try:
            # swiftclient's own keystoneauth1 support: the catalog's object-store endpoint.
            url, token = swift.get_auth(
                auth_url,
                None,
                None,
                session=self._keystone_session(),
                os_options={
                    "service_type": "object-store",
                    "endpoint_type": settings.interface,
                    "region_name": settings.region_name,
                },
            )
        except ksa.Unauthorized:
            raise self._failed(f"authentication failed at {auth_url}: 401 Unauthorized") from None
        except ksa.HttpError as error:
            raise self._failed(
                f"authentication failed at {auth_url}: {error.http_status} {error.message}"
            ) from None
        except ksa.ConnectionError as error:
            raise self._failed(f"cannot reach {auth_url}: {error}") from None
        except ksa.ClientException as error:
            raise self._failed(f"authentication at {auth_url} failed: {error}") from None
        if not url:
            region = f" in region {settings.region_name!r}" if settings.region_name else ""
            raise self._failed(
                f"the catalog of {auth_url} has no {settings.interface} object-store "
                f"endpoint{region}"
            )
        return url, token

    def _keystone_session(self) -> Any:
        if self._keystone is None:
            from keystoneauth1 import session
            from keystoneauth1.identity import v3

            settings = self._settings
            assert settings.auth_url is not None  # the settings' validator made sure of it
            plugin: Any
            if settings.application_credential_id and settings.application_credential_secret:
                plugin = v3.ApplicationCredential(
                    auth_url=settings.auth_url,
                    application_credential_id=settings.application_credential_id,
                    application_credential_secret=(
                        settings.application_credential_secret.get_secret_value()
                    ),
                )
            else:
                assert settings.password is not None
                plugin = v3.Password(
                    auth_url=settings.auth_url,
                    username=settings.username,
                    password=settings.password.get_secret_value(),
                    project_name=settings.project_name,
                    user_domain_name=settings.user_domain_name,
                    project_domain_name=settings.project_domain_name,
                )
            verify = settings.verify
            self._keystone = session.Session(
                auth=plugin,
                verify=str(verify) if isinstance(verify, Path) else verify,
                timeout=settings.timeout,
            )
        return self._keystone


class _Connections:
    """Idle HTTP connections to the storage URL, each used by one thread at a time."""

    def __init__(self, settings: SwiftStoreSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._idle: list[tuple[str, Any]] = []

    def new(self, url: str) -> Any:
        verify = self._settings.verify
        return swift.http_connection(
            url,
            insecure=verify is False,
            cacert=str(verify) if isinstance(verify, Path) else None,
            timeout=self._settings.timeout,
        )

    def take(self, url: str) -> Any:
        with self._lock:
            while self._idle:
                idle_url, connection = self._idle.pop()
                if idle_url == url:
                    return connection
                connection[1].close()
        return self.new(url)

    def give_back(self, url: str, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append((url, connection))
                return
        connection[1].close()


# --- streaming request bodies --------------------------------------------------------------


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Pipe:
    """Pieces of a request body, from the event loop to the thread sending them.

    Holds about PIPE_BYTES: `put` waits on the loop (no thread is held) while it is full. The
    sending thread waits at most `idle_timeout` for the next piece, so a writer that is dropped
    without a cancel does not hold a thread and a connection for ever.
    """

    def __init__(self, idle_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._condition = threading.Condition()
        self._pieces: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._ended = False
        self._closed: str | None = None
        self._room: asyncio.Future[None] | None = None

    async def put(self, piece: bytes) -> None:
        while True:
            with self._condition:
                if self._closed is not None:
                    raise _Aborted(self._closed)
                if self._held < PIPE_BYTES:
                    self._pieces.append(piece)
                    self._held += len(piece)
                    self._condition.notify()
                    return
                room = self._room = self._loop.create_future()
            await room

    def end(self) -> None:
        with self._condition:
            self._ended = True
            self._condition.notify()

    def close(self, reason: str) -> None:
        """Ends the body short: the sending thread aborts its request, and `put` fails."""
        with self._condition:
            if self._closed is None:
                self._closed = reason
                self._pieces.clear()
                self._held = 0
            self._condition.notify()
            self._wake_producer()

    def _wake_producer(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(_resolve, room)

    def body(self) -> Iterator[bytes]:
        """The request body, in the sending thread; raises _Aborted when closed early."""
        while True:
            with self._condition:
                while not self._pieces and not self._ended and self._closed is None:
                    if not self._condition.wait(self._idle_timeout):
                        self._closed = f"no data came for {self._idle_timeout:g} s"
                if self._closed is not None:
                    raise _Aborted(self._closed)
                if not self._pieces:
                    return
                piece = self._pieces.popleft()
                self._held -= len(piece)
                self._wake_producer()
            yield piece


class _Stream:
    """One PUT whose body the event loop hands over piece by piece.

    It runs in a thread of its own rather than the shared executor: it lasts as long as the
    upload, and an executor filled with such threads would starve the calls they wait for.
    """

    def __init__(
        self, path: str, request: Callable[[Iterator[bytes]], str], idle_timeout: float
    ) -> None:
        self.path = path  # /<container>/<name>, as a manifest names a segment
        self.sent = 0
        self._pipe = _Pipe(idle_timeout)
        # Running from the start, so that no await of it can cancel it.
        self.outcome: concurrent.futures.Future[str] = concurrent.futures.Future()
        self.outcome.set_running_or_notify_cancel()
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._run, request), name="swift-put", daemon=True
        ).start()

    def _run(self, request: Callable[[Iterator[bytes]], str]) -> None:
        try:
            self.outcome.set_result(request(self._pipe.body()))
        except BaseException as error:
            self.outcome.set_exception(error)
        finally:
            self._pipe.close("the request already ended")

    async def send(self, view: memoryview) -> None:
        try:
            for start in range(0, len(view), PIECE_BYTES):
                # Copied: the caller may refill its buffer as soon as `write` returns.
                piece = bytes(view[start : start + PIECE_BYTES])
                await self._pipe.put(piece)
                self.sent += len(piece)
                # The sending thread may keep up, so `put` need not wait: yield all the same,
                # so that copying a large chunk neither holds the loop nor is uncancellable.
                await asyncio.sleep(0)
        except _Aborted:
            # The request ended: its own error says why.
            await asyncio.wrap_future(self.outcome)
            raise

    async def finished(self) -> str:
        """Ends the body and waits for Swift's answer: the etag of what was stored."""
        self._pipe.end()
        return await asyncio.wrap_future(self.outcome)

    def finish(self) -> str:
        """`finished`, in a worker thread."""
        self._pipe.end()
        return self.outcome.result()

    def abort(self, reason: str) -> None:
        self._pipe.close(reason)

    def wait(self) -> bool:
        """Waits for the request to end; whether it stored its object."""
        return self.outcome.exception() is None


# --- reading ---------------------------------------------------------------------------------


class _Download:
    """An object's body, read a chunk at a time by worker threads.

    A read runs on in its thread after its awaiting task is cancelled; closing the connection
    under it could let the socket's number be reused and read from elsewhere. So `close` while
    a read is in flight only asks, and that read closes the connection when it returns.
    """

    def __init__(self, body: Any, connection: Any, length: int, chunk_size: int) -> None:
        self._body = body
        self._connection = connection
        self.remaining = length
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._busy = False
        self._closing = False

    def submit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bytes]:
        with self._lock:
            self._busy = True
        return loop.run_in_executor(None, contextvars.copy_context().run, self._read)

    def _read(self) -> bytes:
        try:
            chunk: bytes = self._body.read(min(self._chunk_size, self.remaining))
            self.remaining -= len(chunk)
            if not chunk:
                # A body shorter than announced is a failure, never a short object.
                raise _Aborted(f"the body ended {self.remaining} bytes early")
            return chunk
        finally:
            with self._lock:
                self._busy = False
                if self._closing:
                    self._release()

    def _release(self) -> None:
        self._body.close()
        self._connection[1].close()

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._busy:
                return
        self._release()


# --- the store -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StagedUpload:
    key: str
    upload: str
    touched: float
    names: tuple[str, ...]  # segments (and manifests of segments) first, the marker last


class SwiftStore:
    schemes: frozenset[str] = frozenset({"swift+https", "swift+http", "swift"})

    def __init__(self, store_id: str, settings: SwiftStoreSettings) -> None:
        self.store_id = store_id
        self.settings = settings
        container = settings.container
        if not container or "/" in container or len(container) > 256:
            raise ValueError(f"invalid Swift container name {container!r}")
        self.container = container
        self.segments_container = container + SEGMENTS_SUFFIX
        endpoint = settings.storage_url or settings.auth_url or ""
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"swift store {store_id!r}: {endpoint!r} is not an http(s) URL")
        self.endpoint = endpoint
        # A user and password written into the URL never reach a location.
        place = f"{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}/{container}/"
        # Glance reads a bare `swift://` as https.
        schemes = ("swift+https", "swift") if parts.scheme == "https" else ("swift+http",)
        self._prefixes = tuple(f"{scheme}://{place}" for scheme in schemes)
        self.read_chunk_size = settings.read_chunk_size
        self.capabilities = (
            Capability.READ | Capability.READ_RANDOM | Capability.WRITE | Capability.DELETE
        )
        self._auth = _Auth(store_id, settings)
        self._connections = _Connections(settings)
        self._containers_made: set[str] = set()
        # This process's open writers by key: a second writer of a key is refused, as Swift's
        # `If-None-Match: *` is checked when a PUT starts, not when its body ends.
        self._writers: dict[str, SwiftWriter] = {}

    @classmethod
    def from_settings(
        cls, store_id: str, settings: SwiftStoreSettings, data_dir: Path
    ) -> SwiftStore:
        return cls(store_id, settings)

    def __repr__(self) -> str:
        return f"SwiftStore({self.store_id!r}, {self._prefixes[0]!r})"

    # --- locations ---------------------------------------------------------------------------

    def location_for(self, key: str) -> str:
        return self._prefixes[0] + validate_key(key)

    def contains(self, location: str) -> bool:
        return self._key_or_none(location) is not None

    def _key_or_none(self, location: str) -> str | None:
        for prefix in self._prefixes:
            if location.startswith(prefix):
                key = location[len(prefix) :]
                return key if _KEY.fullmatch(key) else None
        return None

    def _key(self, location: str) -> str:
        key = self._key_or_none(location)
        if key is None:
            raise StoreError(f"location {location!r} is not in store {self.store_id!r}")
        return key

    # --- requests ----------------------------------------------------------------------------

    def _call(
        self,
        operation: Callable[[str, str, Any], T],
        *,
        replayable: bool = True,
        dedicated: bool = False,
    ) -> T:
        """Runs `operation(storage_url, token, connection)` on a connection of its own.

        A 401 renews the token and, when the request can be sent again (its body was not
        streamed away), retries once. A `dedicated` connection is the operation's to close.
        """
        url, token = self._auth.current()
        for attempt in (1, 2):
            connection = self._connections.new(url) if dedicated else self._connections.take(url)
            try:
                result = operation(url, token, connection)
            except ClientException as error:
                # A whole HTTP answer came back: the connection is still good.
                self._done_with(url, connection, dedicated)
                if error.http_status != 401 or attempt == 2:
                    raise
                if not replayable:
                    self._auth.forget(token)
                    raise
                url, token = self._auth.renew(token)
                continue
            except BaseException:
                connection[1].close()
                raise
            if not dedicated:
                self._connections.give_back(url, connection)
            return result
        raise AssertionError("unreachable")

    def _done_with(self, url: str, connection: Any, dedicated: bool) -> None:
        if dedicated:
            connection[1].close()
        else:
            self._connections.give_back(url, connection)

    def _store_error(self, error: Exception, doing: str) -> Exception:
        """The StoreError for what an SDK raised; other errors (bugs) pass unchanged."""
        if isinstance(error, StoreError):
            return error
        prefix = f"swift store {self.store_id!r}: {doing}"
        if isinstance(error, ClientException):
            status = error.http_status
            if status == 404:
                return ObjectNotFound(f"{prefix}: 404 Not Found")
            if status in (413, 507):
                return StoreFull(f"{prefix}: {_status(error)}")
            if status is None:
                return StoreUnavailable(f"{prefix}: {error.msg}")
            return StoreUnavailable(f"{prefix}: {_status(error)}")
        if isinstance(error, _Aborted):
            return StoreUnavailable(f"{prefix}: {error}")
        if isinstance(error, _TRANSPORT_ERRORS):
            return StoreUnavailable(f"{prefix}: connection to Swift failed: {_describe(error)}")
        return error

    async def _in_thread(
        self,
        function: Callable[[], T],
        doing: str,
        on_abandon: Callable[[T], object] | None = None,
    ) -> T:
        """`run_in_thread`, with the SDK's errors mapped to the store's."""
        try:
            return await run_in_thread(function, on_abandon=on_abandon)
        except StoreError:
            raise
        except Exception as error:
            raise self._store_error(error, doing) from error

    def _ensure_container(self, container: str) -> None:
        if container in self._containers_made:
            return
        self._call(
            lambda url, token, conn: swift.put_container(url, token, container, http_conn=conn)
        )
        self._containers_made.add(container)

    def _head(self, container: str, name: str) -> dict[str, str] | None:
        try:
            headers: dict[str, str] = self._call(
                lambda url, token, conn: swift.head_object(
                    url, token, container, name, http_conn=conn
                )
            )
        except ClientException as error:
            if error.http_status == 404:
                return None
            raise
        return headers

    def _delete(self, container: str, name: str) -> None:
        try:
            self._call(
                lambda url, token, conn: swift.delete_object(
                    url, token, container, name, http_conn=conn
                )
            )
        except ClientException as error:
            if error.http_status != 404:
                raise

    def _list(self, container: str, prefix: str) -> list[dict[str, Any]]:
        try:
            _, listing = self._call(
                lambda url, token, conn: swift.get_container(
                    url, token, container, prefix=prefix, full_listing=True, http_conn=conn
                )
            )
        except ClientException as error:
            if error.http_status == 404:
                return []
            raise
        return list(listing)

    def _put(
        self,
        container: str,
        name: str,
        contents: bytes | str,
        *,
        headers: dict[str, str] | None = None,
        query_string: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        return self._putting_into(
            container,
            lambda url, token, conn: swift.put_object(
                url,
                token,
                container,
                name,
                contents,
                content_type=content_type,
                headers=headers,
                query_string=query_string,
                http_conn=conn,
            ),
        )

    def _putting_into(
        self,
        container: str,
        operation: Callable[[str, str, Any], str],
        *,
        replayable: bool = True,
    ) -> str:
        """`_call` of a PUT into `container`, which answers 404 only when it is missing."""
        try:
            return self._call(operation, replayable=replayable)
        except ClientException as error:
            if error.http_status != 404:
                raise
            # Removed after this store made it: the next writer makes it again.
            self._containers_made.discard(container)
            raise StoreUnavailable(
                f"swift store {self.store_id!r}: container {container!r} does not exist"
            ) from None

    def _put_marker(self, key: str, upload: str) -> None:
        self._put(
            self.segments_container,
            f"{key}/{upload}",
            b"",
            content_type=_marker_type(time.time()),
        )

    def _touch_marker(self, key: str, upload: str) -> None:
        headers = {"Content-Type": _marker_type(time.time())}
        try:
            self._call(
                lambda url, token, conn: swift.post_object(
                    url, token, self.segments_container, f"{key}/{upload}", headers, http_conn=conn
                )
            )
        except ClientException as error:
            if error.http_status == 404:
                raise StoreError(
                    f"swift store {self.store_id!r}: the staged upload of {key!r} "
                    "was discarded or purged"
                ) from None
            raise

    def _delete_object(self, key: str) -> None:
        """Deletes the object `key`, and its segments when it is a large object."""
        headers = self._head(self.container, key)
        if headers is None:
            return
        if headers.get("x-static-large-object", "").lower() != "true":
            self._delete(self.container, key)
            return

        def delete_manifest(url: str, token: str, connection: Any) -> None:
            parsed, conn = connection
            path = f"{parsed.path}/{quote(self.container)}/{quote(key)}"
            conn.request(
                "DELETE",
                f"{path}?multipart-manifest=delete",
                "",
                {"X-Auth-Token": token, "Accept": "application/json"},
            )
            response = conn.getresponse()
            body = response.read()
            if not 200 <= response.status < 300:
                raise ClientException.from_response(response, "Object DELETE failed", body)
            # The middleware answers 200 and reports what it could not delete in the body.
            report = json.loads(body)
            if report.get("Errors") or not str(report.get("Response Status")).startswith("2"):
                raise StoreUnavailable(
                    f"swift store {self.store_id!r}: deleting {key!r}: "
                    f"{report.get('Response Status')} {report.get('Errors')}"
                )

        self._call(delete_manifest)

    def _staged_uploads(self, prefix: str = "") -> list[_StagedUpload]:
        """The uploads with a marker in the segments container, whose names start with `prefix`."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for entry in self._list(self.segments_container, prefix):
            key, _, rest = str(entry["name"]).partition("/")
            upload = rest.partition("/")[0]
            groups.setdefault((key, upload), []).append(entry)
        uploads = []
        for (key, upload), entries in groups.items():
            marker = f"{key}/{upload}"
            markers = [entry for entry in entries if entry["name"] == marker]
            if not markers:
                continue  # the segments of a committed object
            names = sorted(entry["name"] for entry in entries if entry["name"] != marker)
            uploads.append(
                _StagedUpload(
                    key,
                    upload,
                    _touched_at(str(markers[0].get("content_type", ""))),
                    (*names, marker),
                )
            )
        return uploads

    def _remove(self, names: Collection[str]) -> None:
        for name in names:
            self._delete(self.segments_container, name)

    def _references(self, key: str, upload: str) -> bool:
        """Whether the object `key` is a manifest of this upload's segments: published by a
        commit that could not remove the marker afterwards."""
        headers = self._head(self.container, key)
        if headers is None or headers.get("x-static-large-object", "").lower() != "true":
            return False
        _, manifest = self._call(
            lambda url, token, conn: swift.get_object(
                url,
                token,
                self.container,
                key,
                query_string="multipart-manifest=get",
                http_conn=conn,
            )
        )
        ours = f"/{self.segments_container}/{key}/{upload}/"
        return any(str(entry.get("name", "")).startswith(ours) for entry in json.loads(manifest))

    # --- writing -----------------------------------------------------------------------------

    async def open_writer(self, key: str, size_hint: int | None = None) -> SwiftWriter:
        validate_key(key)
        if key in self._writers:
            raise StoreError(f"object {key!r} is already being written in store {self.store_id!r}")
        segmented = size_hint is None or size_hint >= self.settings.large_object_size
        writer = SwiftWriter(self, key, secrets.token_hex(8) if segmented else None)
        upload = writer.upload

        def prepare() -> None:
            self._ensure_container(self.container)
            if upload is not None:
                self._ensure_container(self.segments_container)
            if self._head(self.container, key) is not None:
                raise StoreError(f"object {key!r} already exists in store {self.store_id!r}")
            if upload is not None:
                self._put_marker(key, upload)

        def remove_marker(_: None) -> None:
            if upload is not None:
                self._remove([f"{key}/{upload}"])

        self._writers[key] = writer
        try:
            await self._in_thread(prepare, f"opening a writer for {key!r}", remove_marker)
        except BaseException:
            self._release(writer)
            raise
        return writer

    def _release(self, writer: SwiftWriter) -> None:
        if self._writers.get(writer.key) is writer:
            del self._writers[writer.key]

    def _remove_upload(self, key: str, upload: str) -> None:
        for staged in self._staged_uploads(f"{key}/{upload}"):
            if staged.upload == upload:
                self._remove(staged.names)
                return
        # No marker (a commit removed it, or a purge): only segments can be left.
        self._remove(
            [entry["name"] for entry in self._list(self.segments_container, f"{key}/{upload}/")]
        )

    async def discard(self, key: str) -> None:
        validate_key(key)
        writer = self._writers.pop(key, None)
        if writer is not None:
            writer.discarded()

        def remove() -> None:
            # Staging first: a commit racing this either finds its marker or segments gone, or
            # has already published the object, which is removed next. Segments before markers,
            # so that whatever a failure leaves still has its marker, for purge_staging.
            entries = self._list(self.segments_container, f"{key}/")
            self._remove(
                sorted((str(entry["name"]) for entry in entries), key=lambda name: -name.count("/"))
            )
            self._delete(self.container, key)

        await self._in_thread(remove, f"discarding {key!r}")

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        spared = frozenset(keep)

        def purge() -> int:
            cutoff = time.time() - older_than
            removed = 0
            for staged in self._staged_uploads():
                if staged.key in spared or staged.touched >= cutoff:
                    continue
                if self._references(staged.key, staged.upload):
                    self._remove(staged.names[-1:])  # committed after all: only the marker
                    continue
                self._remove(staged.names)
                removed += 1
            return removed

        return await self._in_thread(purge, "purging staged uploads")

    # --- reading -----------------------------------------------------------------------------

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        key = self._key(location)
        if length == 0:
            await self.stat(location)  # ObjectNotFound all the same
            return
        doing = f"reading {location}"
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"

        def start() -> _Download | None:
            def get(url: str, token: str, connection: Any) -> _Download | None:
                try:
                    response, body = swift.get_object(
                        url,
                        token,
                        self.container,
                        key,
                        headers=headers,
                        resp_chunk_size=self.read_chunk_size,
                        http_conn=connection,
                    )
                except ClientException as error:
                    if error.http_status != 416:
                        raise
                    connection[1].close()
                    return None  # the range starts at or past the end
                size = int(response["content-length"])
                return _Download(body, connection, size, self.read_chunk_size)

            return self._call(get, dedicated=True)

        def close(download: _Download | None) -> None:
            if download is not None:
                download.close()

        download = await self._in_thread(start, doing, close)
        if download is None:
            return
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[bytes] | None = None
        try:
            # One read ahead: the next chunk comes from Swift while the caller sends this one.
            if download.remaining:
                pending = download.submit(loop)
            while pending is not None:
                try:
                    # Shielded: only the read may close the connection it reads from.
                    chunk = await asyncio.shield(pending)
                except Exception as error:
                    raise self._store_error(error, doing) from error
                pending = download.submit(loop) if download.remaining else None
                yield chunk
        finally:
            if pending is not None:
                abandon(pending)
            download.close()

    async def stat(self, location: str) -> int:
        key = self._key(location)

        def size() -> int:
            headers = self._head(self.container, key)
            if headers is None:
                raise ObjectNotFound(location)
            return int(headers["content-length"])

        return await self._in_thread(size, f"stat of {location}")

    async def delete(self, location: str) -> None:
        key = self._key(location)
        await self._in_thread(lambda: self._delete_object(key), f"deleting {location}")


class SwiftWriter(WriterGuards):
    """Streams one object, or one upload in segments, into Swift; see `SwiftStore.open_writer`.

    The current PUT (of the object, or of the segment being written) runs in its own thread and
    takes the written bytes from a bounded pipe; its body ends when the segment is full or at
    `commit`. Whatever the writer stops doing, `cancel` waits for that PUT to end before it
    removes the upload's segments, so none appears after the clean-up.
    """

    def __init__(self, store: SwiftStore, key: str, upload: str | None) -> None:
        self._store = store
        self.key = key
        # The upload's id when it is written in segments; None for one PUT of the object.
        self.upload = upload
        self._stream: _Stream | None = None
        self._manifest: list[dict[str, object]] = []
        self._size = 0
        self._touched = time.monotonic()
        self._discarded = False

    def _open_stream(self) -> _Stream:
        store = self._store
        if self.upload is None:
            container, name = store.container, self.key
            headers = {"If-None-Match": "*"}
        else:
            container = store.segments_container
            name = f"{self.key}/{self.upload}/{len(self._manifest) + 1:08d}"
            headers = {}

        def request(body: Iterator[bytes]) -> str:
            return store._putting_into(
                container,
                lambda url, token, conn: swift.put_object(
                    url,
                    token,
                    container,
                    name,
                    body,
                    content_type="application/octet-stream",
                    headers=headers,
                    http_conn=conn,
                ),
                replayable=False,
            )

        return _Stream(f"/{container}/{name}", request, store.settings.timeout)

    def _add_segment(self, stream: _Stream, etag: str) -> None:
        self._manifest.append({"path": stream.path, "etag": etag, "size_bytes": stream.sent})

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._check_open()
        view = memoryview(chunk).cast("B")
        if not view:
            return
        try:
            try:
                await self._write(view)
            except StoreError:
                raise
            except Exception as error:
                raise self._store._store_error(error, f"writing {self.key!r}") from error
        except BaseException:
            self._failed = True
            raise
        self._size += len(view)

    async def _write(self, view: memoryview) -> None:
        segment_size = self._store.settings.segment_size
        while view:
            if self._stream is None:
                self._stream = self._open_stream()
            room = len(view) if self.upload is None else segment_size - self._stream.sent
            await self._stream.send(view[:room])
            view = view[room:]
            if self.upload is not None and self._stream.sent == segment_size:
                await self._finish_segment()
        if self.upload is not None and time.monotonic() - self._touched > TOUCH_INTERVAL:
            upload = self.upload
            await run_in_thread(lambda: self._store._touch_marker(self.key, upload))
            self._touched = time.monotonic()

    async def _finish_segment(self) -> None:
        stream = self._stream
        assert stream is not None
        # Kept as the current stream until it has ended: a cancel that follows a cancelled
        # write waits for this segment to land before it lists what to remove.
        etag = await stream.finished()
        self._stream = None
        self._add_segment(stream, etag)
        self._touched = time.monotonic()

    def discarded(self) -> None:
        """`SwiftStore.discard` removed what this writer staged: it must not publish."""
        self._discarded = True
        if self._stream is not None:
            self._stream.abort("the upload was discarded")

    async def commit(self) -> StoredObject:
        self._check_open()
        self._committed = True
        self._store._release(self)
        try:
            # Abandoned (the caller cancelled while the thread ran on): the caller never learns
            # the location, so an object published after all is removed again.
            await self._store._in_thread(
                self._publish,
                f"committing {self.key!r}",
                lambda _: self._store._delete_object(self.key),
            )
        except BaseException:
            # Nothing is left behind: `_publish` removed what was staged.
            self._committed = False
            self._cancelled = True
            raise
        return StoredObject(location=self._store.location_for(self.key), size=self._size)

    def _publish(self) -> None:
        store = self._store
        try:
            if self._stream is not None and self.upload is not None:
                self._add_segment(self._stream, self._stream.finish())
            if self._discarded:
                raise StoreError(f"the staged upload of {self.key!r} was discarded")
            if self.upload is None:
                self._publish_object()
            else:
                self._publish_manifest(self.upload)
        except BaseException as error:
            try:
                self._remove_staged()
            except Exception:
                # The commit's own error is the one to report; what is left is purge_staging's.
                log.warning(
                    "could not clean up after a failed commit of %r", self.key, exc_info=True
                )
            if isinstance(error, ClientException) and error.http_status == 412:
                raise StoreError(
                    f"object {self.key!r} already exists in store {store.store_id!r}"
                ) from None
            raise

    def _publish_object(self) -> None:
        if self._stream is None:
            self._store._put(self._store.container, self.key, b"", headers={"If-None-Match": "*"})
        else:
            self._stream.finish()

    def _publish_manifest(self, upload: str) -> None:
        store = self._store
        if store._head(store.segments_container, f"{self.key}/{upload}") is None:
            raise StoreError(f"the staged upload of {self.key!r} was discarded or purged")
        if not self._manifest:
            # An SLO needs a segment: an empty object is a plain one.
            store._put(store.container, self.key, b"", headers={"If-None-Match": "*"})
        else:
            self._put_manifest(store.container, self.key, self._manifest, {"If-None-Match": "*"})
        try:
            store._remove([f"{self.key}/{upload}"])
        except Exception:
            # Published all the same; purge_staging sees the marker's manifest and keeps it.
            log.warning("could not remove the upload marker of %r", self.key, exc_info=True)

    def _put_manifest(
        self,
        container: str,
        name: str,
        entries: list[dict[str, object]],
        headers: dict[str, str] | None = None,
    ) -> str:
        store = self._store
        if len(entries) > MAX_MANIFEST_SEGMENTS:
            # Swift limits the segments of one manifest; a manifest's segments may be manifests.
            groups = [
                entries[start : start + MAX_MANIFEST_SEGMENTS]
                for start in range(0, len(entries), MAX_MANIFEST_SEGMENTS)
            ]
            entries = []
            for number, group in enumerate(groups, 1):
                part = f"{self.key}/{self.upload}/manifest-{number:06d}"
                etag = self._put_manifest(store.segments_container, part, group)
                entries.append(
                    {
                        "path": f"/{store.segments_container}/{part}",
                        "etag": etag,
                        "size_bytes": sum(int(str(entry["size_bytes"])) for entry in group),
                    }
                )
        return store._put(
            container,
            name,
            json.dumps(entries),
            headers=headers,
            query_string="multipart-manifest=put",
        )

    def _remove_staged(self) -> None:
        """Ends the current PUT and removes this upload's marker and segments, in a thread."""
        stream = self._stream
        if stream is not None:
            stream.abort("the upload was cancelled")
            stored = stream.wait()
            if stored and self.upload is None:
                # Its body had ended (a commit failing after): the object is this writer's.
                self._store._delete_object(self.key)
        if self.upload is not None:
            self._store._remove_upload(self.key, self.upload)

    async def cancel(self) -> None:
        # Safe more than once and after a failed commit (which already cleaned up); after a
        # successful commit the object is the caller's, to delete through the store.
        if self._cancelled or self._committed:
            return
        self._cancelled = True
        self._store._release(self)
        await self._store._in_thread(self._remove_staged, f"cancelling {self.key!r}")


if TYPE_CHECKING:
    # mypy proves that the driver fits the seam.
    _FITS: type[Store] = SwiftStore
