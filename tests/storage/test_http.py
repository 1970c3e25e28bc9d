"""The http store against real HTTP and HTTPS servers, started here in threads.

The servers listen on loopback, which the store refuses by default: most tests allow private
networks, the tests of that refusal do not, and those that need a loopback address to count as
public (to get past the first hop, or to go through the pinning network backend) say so with
the `public_loopback` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography import x509

from app import net
from app.config import HttpStoreSettings, StorageSettings
from app.net import non_public_kind
from app.storage.base import Capability
from app.storage.errors import (
    ForbiddenLocation,
    ObjectNotFound,
    ReadOnlyStore,
    StoreError,
    StoreUnavailable,
)
from app.storage.http import HttpStore
from app.storage.registry import StoreRegistry
from tests.faults import cuttable
from tests.http_servers import CountingHandler, LoopbackServer, running
from tests.storage.contract import MiB, payload, read, read_chunks
from tests.tls import self_signed

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
PAYLOADS = {
    "small": payload(200_000, seed=2),
    "empty": b"",
    "big": payload(3 * MiB, seed=7),
}
# How the test server answers /<mode>/<payload>: whether it honours Range, whether it says
# how long the body is (without a length, the body ends when the connection closes).
MODES = {
    "ranged": {"ranges": True, "length": True},
    "plain": {"ranges": False, "length": True},
    "nolength": {"ranges": True, "length": False},
    "streamed": {"ranges": False, "length": False},
}
# Pieces the server writes a body in: smaller than a chunk, so the store has to re-chunk.
PIECE = 10_000
USER, PASSWORD, TOKEN = "alice", "s3cret-pw", "hunter2-token"
SECRETS = (USER, PASSWORD, TOKEN)


# --- the servers -----------------------------------------------------------------------------


class Handler(CountingHandler):
    server: PayloadServer

    def do_HEAD(self) -> None:
        self.route(body=False)

    def do_GET(self) -> None:
        self.route(body=True)

    def route(self, body: bool) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers.items())))
        path, _, query = self.path.partition("?")
        match path.strip("/").split("/"):
            case ["hops", count, *rest]:
                left = int(count) - 1
                self.redirect(f"/hops/{left}/{'/'.join(rest)}" if left else f"/{'/'.join(rest)}")
            case ["to"]:
                self.redirect(parse_qs(query)["url"][0])
            case ["missing"]:
                self.status(404)
            case ["gone"]:
                self.status(410)
            case ["error"]:
                self.status(500)
            case ["slow"]:
                time.sleep(1)
                self.status(204)
            case ["private", name]:
                expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self.status(401)
                else:
                    self.serve(PAYLOADS[name], MODES["ranged"], body)
            case ["short", name]:
                self.short(PAYLOADS[name])
            case ["shortrange", name]:
                self.short_range(PAYLOADS[name])
            case ["wrongrange", name]:
                self.wrong_range(PAYLOADS[name])
            case ["endless"]:
                self.endless()
            case [mode, name] if mode in MODES and name in PAYLOADS:
                self.serve(PAYLOADS[name], MODES[mode], body)
            case _:
                self.status(404)

    def status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def redirect(self, target: str) -> None:
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def serve(self, data: bytes, mode: dict[str, bool], body: bool) -> None:
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        size = len(data)
        if mode["ranges"] and asked:
            first = int(asked[1])
            if first >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            last = min(int(asked[2]) if asked[2] else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            content = data[first : last + 1]
        else:
            self.send_response(200)
            content = data
        if mode["length"]:
            self.send_header("Content-Length", str(len(content)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            for start in range(0, len(content), PIECE):
                self.wfile.write(content[start : start + PIECE])

    def short(self, data: bytes) -> None:
        """Announces the whole body, sends half and hangs up: a server gone mid-download."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def short_range(self, data: bytes) -> None:
        """Announces the asked range in Content-Range only (the body ends when the connection
        does), sends half and hangs up."""
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        first = int(asked[1]) if asked else 0
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[first : (first + len(data)) // 2])
        self.close_connection = True

    def wrong_range(self, data: bytes) -> None:
        """Answers any Range with the object's start."""
        self.send_response(206)
        self.send_header("Content-Range", f"bytes 0-{CHUNK - 1}/{len(data)}")
        self.send_header("Content-Length", str(CHUNK))
        self.end_headers()
        self.wfile.write(data[:CHUNK])

    def endless(self) -> None:
        """A body far longer than any test reads, sent until the client goes away."""
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 40))
        self.end_headers()
        block = bytes(CHUNK)
        self.close_connection = True
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            self.server.client_went_away.set()


class PayloadServer(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(Handler, host, tls)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.requests]


@pytest.fixture
def server() -> Iterator[PayloadServer]:
    with running(PayloadServer()) as started:
        yield started


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA), and its key."""
    return self_signed(
        tmp_path_factory.mktemp("tls"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    )


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[PayloadServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with running(PayloadServer(tls=context)) as started:
        yield started


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 and ::1 (what localhost may resolve to) count as public addresses, and only
    they: 127.0.0.2 stays loopback.

    No public address reaches a test server, yet a store that refuses private networks must be
    seen to connect through its checked, pinned backend and to refuse later hops; this moves
    the line between public and not, and nothing else.
    """
    test_servers = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    real = net.non_public_kind

    def kind(address: net.IPAddress) -> str | None:
        return None if address in test_servers else real(address)

    monkeypatch.setattr(net, "non_public_kind", kind)


@contextlib.asynccontextmanager
async def opened(**settings: Any) -> AsyncIterator[HttpStore]:
    """A store reading in CHUNK-sized chunks, private networks allowed unless said otherwise."""
    settings = {"allow_private_networks": True, "timeout": 5.0, **settings}
    store = HttpStore("web", read_chunk_size=CHUNK, **settings)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def store() -> AsyncIterator[HttpStore]:
    async with opened() as opened_store:
        yield opened_store


async def read_into(
    got: bytearray, store: HttpStore, location: str, offset: int = 0, length: int | None = None
) -> None:
    """Reads into `got`, so that what came before a failure can be looked at."""
    async for chunk in store.open_reader(location, offset, length):
        got += chunk


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


# --- what it is ------------------------------------------------------------------------------


async def test_a_read_only_store(store: HttpStore) -> None:
    assert store.schemes == {"http", "https"}
    assert store.capabilities == Capability.READ | Capability.READ_RANDOM
    with pytest.raises(ReadOnlyStore, match="read-only"):
        await store.open_writer("key", 10)
    # The data is not ours: deleting or discarding leaves it where it is.
    await store.delete("https://example.com/image.img")
    await store.discard("key")
    assert await store.purge_staging(older_than=0) == 0


@pytest.mark.parametrize(
    ("location", "contained"),
    [
        ("http://example.com/image.img", True),
        ("https://example.com:8443/images/cirros.img?signature=x", True),
        ("https://user:password@example.com/image.img", True),
        ("http://[2001:db8::1]/image.img", True),
        ("http://127.0.0.1/image.img", True),  # contained; whether it may be read is separate
        ("http:///etc/passwd", False),
        ("https:/example.com/image.img", False),
        ("HTTP://example.com/image.img", False),  # the registry finds stores by exact scheme
        ("ftp://example.com/image.img", False),
        ("file:///etc/passwd", False),
        ("http://[::1/image.img", False),
        ("example.com/image.img", False),
    ],
)
def test_contains(location: str, contained: bool) -> None:
    assert HttpStore("web").contains(location) is contained


def test_the_registry_builds_it_from_settings(tmp_path: Path) -> None:
    settings = StorageSettings(
        default="web",
        stores={"web": HttpStoreSettings(max_redirects=2, read_chunk_size=CHUNK)},
    )
    registry = StoreRegistry.from_settings(settings, tmp_path)
    store = registry.for_location("https://example.com/image.img")
    assert isinstance(store, HttpStore)
    assert (store.store_id, store.max_redirects, store.read_chunk_size) == ("web", 2, CHUNK)
    assert store.allow_private_networks is False


def test_a_ca_bundle_that_cannot_be_read_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot load the CA bundle"):
        HttpStore("web", verify=tmp_path / "missing.pem")
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(StoreError, match="cannot load the CA bundle"):
        HttpStore("web", verify=tmp_path / "empty.pem")


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["small", "empty", "big"])
async def test_whole_reads(server: PayloadServer, store: HttpStore, mode: str, name: str) -> None:
    data = PAYLOADS[name]
    chunks = await read_chunks(store, server.url(f"/{mode}/{name}"))
    assert b"".join(chunks) == data
    # Re-chunked from the server's small pieces into whole chunks.
    full, rest = divmod(len(data), CHUNK)
    assert [len(chunk) for chunk in chunks] == [CHUNK] * full + ([rest] if rest else [])
    assert all("Range" not in headers for _, _, headers in server.requests)
    assert all(headers["Accept-Encoding"] == "identity" for _, _, headers in server.requests)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        pytest.param(10, 100, slice(10, 110), id="middle"),
        pytest.param(1, None, slice(1, None), id="to-the-end"),
        pytest.param(0, 70_000, slice(0, 70_000), id="from-the-start"),
        pytest.param(70_000, 40_000, slice(70_000, 110_000), id="across-chunks"),
        pytest.param(196_000, 10_000, slice(196_000, None), id="past-eof-clamps"),
        pytest.param(0, 0, slice(0, 0), id="zero-length"),
        pytest.param(5_000, 0, slice(0, 0), id="zero-length-inside"),
        pytest.param(200_000, None, slice(0, 0), id="offset-at-eof"),
        pytest.param(300_000, 5, slice(0, 0), id="offset-past-eof"),
    ],
)
async def test_ranged_reads(
    server: PayloadServer,
    store: HttpStore,
    mode: str,
    offset: int,
    length: int | None,
    expected: slice,
) -> None:
    data = PAYLOADS["small"]
    assert await read(store, server.url(f"/{mode}/small"), offset, length) == data[expected]


async def test_ranged_reads_ask_for_the_range(server: PayloadServer, store: HttpStore) -> None:
    assert await read(store, server.url("/ranged/small"), 10, 100) == PAYLOADS["small"][10:110]
    assert await read(store, server.url("/ranged/small"), 7) == PAYLOADS["small"][7:]
    ranges = [headers.get("Range") for _, _, headers in server.requests]
    assert ranges == ["bytes=10-109", "bytes=7-"]


@pytest.mark.parametrize("mode", ["ranged", "plain"])
async def test_ranged_reads_come_in_whole_chunks(
    server: PayloadServer, store: HttpStore, mode: str
) -> None:
    # Also from a server that ignores Range, whose first bytes are skipped.
    chunks = await read_chunks(store, server.url(f"/{mode}/small"), 5, 70_000)
    assert b"".join(chunks) == PAYLOADS["small"][5:70_005]
    assert [len(chunk) for chunk in chunks] == [CHUNK, 70_000 - CHUNK]


async def test_a_range_other_than_the_one_asked_is_refused(
    server: PayloadServer, store: HttpStore
) -> None:
    with pytest.raises(StoreUnavailable, match="Content-Range 'bytes 0-65535/200000'"):
        await read(store, server.url("/wrongrange/small"), 10, 100)


async def test_concurrent_readers(server: PayloadServer, store: HttpStore) -> None:
    data = PAYLOADS["big"]
    offsets = range(0, len(data), len(data) // 6)
    results = await asyncio.gather(
        *(read(store, server.url("/ranged/big"), offset) for offset in offsets)
    )
    assert results == [data[offset:] for offset in offsets]


# --- stat ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "name", "requests"),
    [
        pytest.param("ranged", "small", ["HEAD"], id="content-length"),
        pytest.param("plain", "small", ["HEAD"], id="content-length-no-ranges"),
        pytest.param("nolength", "small", ["HEAD", "GET bytes=0-0"], id="content-range"),
        pytest.param("nolength", "empty", ["HEAD", "GET bytes=0-0"], id="content-range-empty"),
        pytest.param("ranged", "empty", ["HEAD"], id="empty"),
    ],
)
async def test_stat(
    server: PayloadServer, store: HttpStore, mode: str, name: str, requests: list[str]
) -> None:
    assert await store.stat(server.url(f"/{mode}/{name}")) == len(PAYLOADS[name])
    made = [
        f"{method} {headers['Range']}" if "Range" in headers else method
        for method, _, headers in server.requests
    ]
    assert made == requests


async def test_stat_of_an_object_of_unknown_size(server: PayloadServer, store: HttpStore) -> None:
    with pytest.raises(StoreError, match=r"size of .*/streamed/small is unknown"):
        await store.stat(server.url("/streamed/small"))


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/missing", "/gone"])
async def test_missing_objects(server: PayloadServer, store: HttpStore, path: str) -> None:
    with pytest.raises(ObjectNotFound):
        await store.stat(server.url(path))
    reader = store.open_reader(server.url(path))
    with pytest.raises(ObjectNotFound):
        await anext(reader)
    with pytest.raises(ObjectNotFound):
        await read(store, server.url(path), 0, 0)


async def test_server_errors(server: PayloadServer, store: HttpStore) -> None:
    location = server.url("/error")
    for attempt in (store.stat(location), read(store, location), read(store, location, 5, 5)):
        with pytest.raises(StoreUnavailable) as raised:
            await attempt
        assert str(raised.value) == (
            f"store 'web': 127.0.0.1 answered 500 Internal Server Error for {location}"
        )


async def test_an_unreachable_server(store: HttpStore) -> None:
    location = f"http://127.0.0.1:{closed_port()}/image.img"
    with pytest.raises(StoreUnavailable, match=r"store 'web' cannot reach 127\.0\.0\.1 .*Connect"):
        await store.stat(location)
    with pytest.raises(StoreUnavailable, match="ConnectError"):
        await read(store, location)


async def test_a_server_that_does_not_answer_in_time(server: PayloadServer) -> None:
    async with opened(timeout=0.2) as store:
        with pytest.raises(StoreUnavailable, match="ReadTimeout"):
            await store.stat(server.url("/slow"))


async def test_a_body_shorter_than_announced(server: PayloadServer, store: HttpStore) -> None:
    got = bytearray()
    with pytest.raises(StoreUnavailable, match=r"cannot reach 127\.0\.0\.1"):
        await read_into(got, store, server.url("/short/big"))
    assert got, "what came before the end was passed on"


async def test_a_range_shorter_than_announced(server: PayloadServer, store: HttpStore) -> None:
    # No Content-Length, so only Content-Range tells that the body ended early.
    data, offset = PAYLOADS["big"], 10
    sent, announced = (offset + len(data)) // 2 - offset, len(data) - offset
    got = bytearray()
    with pytest.raises(StoreUnavailable, match=f"sent {sent} of the {announced} bytes announced"):
        await read_into(got, store, server.url("/shortrange/big"), offset)
    assert got, "what came before the end was passed on"
    assert data[offset:].startswith(got)


@pytest.mark.parametrize(("offset", "length"), [(0, None), (100_000, None), (100_000, 2 * MiB)])
async def test_the_server_vanishing_mid_download(
    server: PayloadServer, store: HttpStore, offset: int, length: int | None
) -> None:
    with cuttable("127.0.0.1", server.port) as forwarder:
        forwarder.cut_after_downstream(MiB)
        location = f"{forwarder.url}/ranged/big"
        got = bytearray()
        with pytest.raises(StoreUnavailable, match=r"cannot reach 127\.0\.0\.1"):
            await read_into(got, store, location, offset, length)
        assert forwarder.is_cut
        assert 0 < len(got) < MiB
        assert PAYLOADS["big"][offset:].startswith(got)


async def test_a_reader_closed_early_releases_its_connection(
    server: PayloadServer, store: HttpStore
) -> None:
    reader = store.open_reader(server.url("/endless"))
    assert await anext(reader) == bytes(CHUNK)
    assert server.open_connections == 1
    await reader.aclose()  # type: ignore[attr-defined]
    # The server, still sending, sees the connection go.
    assert await asyncio.to_thread(server.client_went_away.wait, 5)
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.open_connections == 0
    assert await read(store, server.url("/ranged/small")) == PAYLOADS["small"]


def test_a_store_used_from_one_event_loop_after_another(server: PayloadServer) -> None:
    # As the registry is, from one test client (and its event loop) after another. "nolength"
    # closes each connection, so the first loop leaves nothing behind in its pool.
    store = HttpStore("web", allow_private_networks=True)
    location = server.url("/nolength/small")
    assert asyncio.run(read(store, location)) == PAYLOADS["small"]

    async def read_and_close() -> bytes:
        try:
            return await read(store, location)
        finally:
            await store.aclose()

    assert asyncio.run(read_and_close()) == PAYLOADS["small"]


# --- redirects -------------------------------------------------------------------------------


async def test_redirects_are_followed_up_to_the_limit(server: PayloadServer) -> None:
    async with opened(max_redirects=2) as store:
        assert await read(store, server.url("/hops/2/ranged/small")) == PAYLOADS["small"]
        assert await store.stat(server.url("/hops/2/ranged/small")) == len(PAYLOADS["small"])
        # A range survives the hops.
        assert (
            await read(store, server.url("/hops/2/ranged/small"), 10, 5)
            == (PAYLOADS["small"][10:15])
        )
        assert server.requests[-1][2]["Range"] == "bytes=10-14"

        server.requests.clear()
        with pytest.raises(StoreUnavailable, match="redirects again after 2 redirects"):
            await read(store, server.url("/hops/3/ranged/small"))
        assert server.paths == [
            "/hops/3/ranged/small",
            "/hops/2/ranged/small",
            "/hops/1/ranged/small",
        ]

    async with opened(max_redirects=0) as store:
        with pytest.raises(StoreUnavailable, match="after 0 redirects"):
            await store.stat(server.url("/hops/1/ranged/small"))


async def test_redirects_to_other_servers(server: PayloadServer, store: HttpStore) -> None:
    with running(PayloadServer()) as other:
        location = server.url(f"/to?url={other.url('/ranged/small')}")
        assert await read(store, location) == PAYLOADS["small"]
        assert other.paths == ["/ranged/small"]


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://user:password@127.0.0.1/image.img"]
)
async def test_redirects_to_other_schemes_are_refused(
    server: PayloadServer, store: HttpStore, target: str
) -> None:
    with pytest.raises(ForbiddenLocation, match=r"not an http\(s\) URL with a host"):
        await read(store, server.url(f"/to?url={target}"))


# --- hostile locations -----------------------------------------------------------------------


async def test_loopback_is_refused_by_default(server: PayloadServer) -> None:
    async with opened(allow_private_networks=False) as store:
        location = server.url("/ranged/small")
        for attempt in (
            store.check_location(location),
            store.stat(location),
            read(store, location),
        ):
            with pytest.raises(ForbiddenLocation) as raised:
                await attempt
            assert str(raised.value) == (
                f"store 'web' refuses {location}: 127.0.0.1 is a loopback address"
            )
        # A name is resolved and its addresses checked, before any connection.
        by_name = server.url("/ranged/small", host="localhost")
        for attempt in (store.check_location(by_name), read(store, by_name)):
            with pytest.raises(ForbiddenLocation) as raised:
                await attempt
            # ::1 too where the hosts file says so.
            assert re.fullmatch(
                rf"store 'web' refuses {re.escape(by_name)}: "
                r"localhost resolves to (127\.0\.0\.1|::1), a loopback address",
                str(raised.value),
            )
    assert server.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0x7f.0.0.1",
        "0177.0.0.1",  # octal
        "017700000001",
        "127.1",  # short forms
        "127.0.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[2002:7f00:1::]",  # 6to4
        "[::1]",
        "[::]",
        "0.0.0.0",
        "0",
    ],
)
async def test_spellings_of_loopback_are_refused(server: PayloadServer, host: str) -> None:
    location = server.url("/ranged/small", host=host)
    async with opened(allow_private_networks=False) as store:
        with pytest.raises(ForbiddenLocation):
            await store.check_location(location)
        with pytest.raises(ForbiddenLocation):
            await read(store, location)
    assert server.requests == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1"])
async def test_ambiguous_spellings_are_refused_even_with_private_networks_allowed(
    server: PayloadServer, store: HttpStore, host: str
) -> None:
    location = server.url("/ranged/small", host=host)
    with pytest.raises(ForbiddenLocation):
        await store.check_location(location)
    with pytest.raises(ForbiddenLocation):
        await read(store, location)
    assert server.requests == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1"])
async def test_ambiguous_spellings_are_refused_on_every_hop(
    server: PayloadServer, store: HttpStore, host: str
) -> None:
    # (httpx refuses a Location of 0177.0.0.1 itself, as an invalid URL.)
    with pytest.raises(ForbiddenLocation, match="not a canonically written IP address"):
        await read(store, server.url(f"/to?url=http://{host}:{server.port}/ranged/small"))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("2002:7f00:1::", "loopback (through 127.0.0.1)"),
        ("2002:a00:1::", "private (through 10.0.0.1)"),
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("2002:808:808::", None),
    ],
)
def test_non_public_kinds(address: str, kind: str | None) -> None:
    assert non_public_kind(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "64:ff9b::a00:1"]
)
def test_reserved_and_documentation_ranges_are_not_public(address: str) -> None:
    # Python versions disagree on which of these flags apply: only "not public" is certain.
    assert non_public_kind(ipaddress.ip_address(address)) is not None


@pytest.mark.usefixtures("public_loopback")
async def test_checked_connections_reach_their_hosts(server: PayloadServer) -> None:
    async with opened(allow_private_networks=False) as store:
        for host in ("127.0.0.1", "localhost"):
            location = server.url("/ranged/small", host=host)
            await store.check_location(location)
            assert await read(store, location) == PAYLOADS["small"]
            assert await store.stat(location) == len(PAYLOADS["small"])
    # Pinned to the address, the request still names the host.
    assert [headers["Host"] for _, _, headers in server.requests] == [
        f"127.0.0.1:{server.port}",
        f"127.0.0.1:{server.port}",
        f"localhost:{server.port}",
        f"localhost:{server.port}",
    ]


@pytest.mark.usefixtures("public_loopback")
async def test_redirects_to_private_addresses_are_refused(server: PayloadServer) -> None:
    with running(PayloadServer("127.0.0.2")) as inside:
        async with opened(allow_private_networks=False) as store:
            target = inside.url("/ranged/small")
            with pytest.raises(ForbiddenLocation) as raised:
                await read(store, server.url(f"/to?url={target}"))
            assert str(raised.value) == (
                f"store 'web' refuses {target}: 127.0.0.2 is a loopback address"
            )
            metadata = "http://169.254.169.254/latest/meta-data/"
            with pytest.raises(
                ForbiddenLocation, match=r"169\.254\.169\.254 is a link-local address"
            ):
                await store.stat(server.url(f"/to?url={metadata}"))
        assert inside.requests == []


async def test_redirects_from_https_to_http_are_refused(
    server: PayloadServer, tls_server: PayloadServer, certificate: tuple[Path, Path]
) -> None:
    async with opened(verify=certificate[0]) as store:
        location = tls_server.url(f"/to?url={server.url('/ranged/small')}")
        with pytest.raises(ForbiddenLocation, match="redirected to it from https"):
            await read(store, location)
    assert server.requests == []


# --- TLS -------------------------------------------------------------------------------------


async def test_tls_is_verified_by_default(tls_server: PayloadServer) -> None:
    async with opened() as store:
        with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await read(store, tls_server.url("/ranged/small"))


async def test_tls_with_a_ca_bundle(
    tls_server: PayloadServer, certificate: tuple[Path, Path]
) -> None:
    async with opened(verify=certificate[0]) as store:
        for host in ("127.0.0.1", "localhost"):
            location = tls_server.url("/ranged/small", host=host)
            assert await read(store, location, 10, 100_000) == PAYLOADS["small"][10:100_010]
            assert await store.stat(location) == len(PAYLOADS["small"])


@pytest.mark.usefixtures("public_loopback")
async def test_tls_over_checked_connections(
    tls_server: PayloadServer, certificate: tuple[Path, Path]
) -> None:
    # Connected to the checked address, the certificate is still checked against the name.
    async with opened(verify=certificate[0], allow_private_networks=False) as store:
        location = tls_server.url("/ranged/small", host="localhost")
        assert await read(store, location) == PAYLOADS["small"]


async def test_tls_unverified_when_asked(tls_server: PayloadServer) -> None:
    async with opened(verify=False) as store:
        assert await read(store, tls_server.url("/ranged/small")) == PAYLOADS["small"]


# --- credentials -----------------------------------------------------------------------------


def with_secrets(url: str) -> str:
    scheme, _, rest = url.partition("://")
    separator = "&" if "?" in rest else "?"
    return f"{scheme}://{USER}:{PASSWORD}@{rest}{separator}token={TOKEN}"


async def test_credentials_in_a_url_are_used(server: PayloadServer, store: HttpStore) -> None:
    assert await read(store, with_secrets(server.url("/private/small"))) == PAYLOADS["small"]
    with pytest.raises(StoreUnavailable, match="answered 401"):
        await read(store, server.url("/private/small"))
    # Only for the origin they were given with, not where it redirects to.
    with running(PayloadServer()) as other:
        location = with_secrets(server.url(f"/to?url={other.url('/ranged/small')}"))
        assert await read(store, location) == PAYLOADS["small"]
        assert "Authorization" not in other.requests[0][2]


async def test_credentials_never_appear_in_messages(
    server: PayloadServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    async def fails(error: type[StoreError], attempt: Awaitable[object]) -> None:
        with pytest.raises(error) as raised:
            await attempt
        messages.append(str(raised.value))

    async with opened(max_redirects=3) as store:
        for error, location in [
            (StoreUnavailable, server.url("/error")),
            (ObjectNotFound, server.url("/missing")),
            (StoreUnavailable, f"http://127.0.0.1:{closed_port()}/image.img"),
            (StoreUnavailable, server.url("/hops/9/ranged/small")),
            (ForbiddenLocation, "http://[::1/image.img"),
            (ForbiddenLocation, "http://2130706433/image.img"),
        ]:
            await fails(error, store.stat(with_secrets(location)))
            await fails(error, read(store, with_secrets(location)))
        await fails(StoreError, store.stat(with_secrets(server.url("/streamed/small"))))
        await fails(StoreUnavailable, read(store, with_secrets(server.url("/short/big"))))
        await fails(StoreUnavailable, read(store, with_secrets(server.url("/wrongrange/big")), 9))
    async with opened(allow_private_networks=False) as store:
        for host in ("127.0.0.1", "localhost"):
            location = with_secrets(server.url("/ranged/small", host=host))
            await fails(ForbiddenLocation, store.check_location(location))
            await fails(ForbiddenLocation, read(store, location))
    assert len(messages) == 19
    for message in messages:
        assert not any(secret in message for secret in SECRETS), message
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("app.")]
    assert ours, "the redirects were logged"
    for line in ours:
        assert not any(secret in line for secret in SECRETS), line
