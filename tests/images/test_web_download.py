"""web-download's filtering (check_uri) and fetching (open_download), against real HTTP(S)
servers started here in threads on 127.0.0.1.

Loopback is refused unless allowed_hosts names it: most tests reach their server as `localhost`
with `allowed_hosts=["localhost"]`, so that the first hop is allowed by name while a redirect to
any spelling of 127.0.0.1 is not. The tests of the non-public rule itself on later hops use the
`public_loopback` fixture, which moves the line between public and not, and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from app import net
from app.config import ImportSettings
from app.errors import BadRequest
from app.images.web_download import (
    Download,
    DownloadFailed,
    UriRefused,
    check_uri,
    open_download,
)
from tests.faults import cuttable
from tests.http_servers import CountingHandler, LoopbackServer, running
from tests.tls import self_signed

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
DATA = bytes(range(256)) * (4 * CHUNK // 256) + b"tail"  # four chunks and a bit
BIG = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # more than the socket buffers hold
USER, PASSWORD, TOKEN = "alice", "s3cret-pw", "hunter2-token"
STALL = 2.0  # seconds a stalling server waits; tests time out far sooner


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- the servers -----------------------------------------------------------------------------


class Handler(CountingHandler):
    server: Server

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers.items())))
        path = self.path.partition("?")[0]
        try:
            self.route(path)
        except OSError:  # the client went away, as some tests make it
            self.server.client_went_away.set()
            self.close_connection = True

    def route(self, path: str) -> None:
        if path in self.server.redirects:
            self.send_response(302)
            self.send_header("Location", self.server.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/image":
            self.body(DATA)
        elif path == "/big":
            self.body(BIG)
        elif path == "/private":
            expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                self.body(DATA)
            else:
                self.empty(401)
        elif path == "/truncated":  # announces all, sends half, hangs up
            self.head(len(DATA))
            self.wfile.write(DATA[: len(DATA) // 2])
            self.close_connection = True
        elif path == "/stall-headers":
            time.sleep(STALL)
            self.body(DATA)
        elif path == "/stall-body":
            self.head(len(DATA))
            self.wfile.write(DATA[:CHUNK])
            self.wfile.flush()
            time.sleep(STALL)
            self.wfile.write(DATA[CHUNK:])
        elif path == "/huge":  # says 1 TiB, and would send it
            self.head(1 << 40)
            self.endless(lambda block: block)
        elif path == "/endless":  # chunked, no length, never ends
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.endless(lambda block: b"%x\r\n%s\r\n" % (len(block), block))
        else:
            self.empty(404)

    def head(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def body(self, data: bytes) -> None:
        self.head(len(data))
        self.wfile.write(data)

    def empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def endless(self, framed: Any) -> None:
        block = framed(bytes(CHUNK))
        self.close_connection = True
        while True:
            self.wfile.write(block)


class Server(LoopbackServer):
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(Handler, tls=tls)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.redirects: dict[str, str] = {}

    def url(self, path: str, host: str | None = "localhost") -> str:
        return super().url(path, host)

    @property
    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def settings(self, **changes: Any) -> ImportSettings:
        """Reached as localhost, on this server's port; chunks of CHUNK bytes."""
        fields = {
            "allowed_hosts": ["localhost"],
            "allowed_ports": [self.port],
            "timeout": 5.0,
            "read_chunk_size": CHUNK,
            **changes,
        }
        return ImportSettings(**fields)


@pytest.fixture
def server() -> Iterator[Server]:
    with running(Server()) as started:
        yield started


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` only (not 127.0.0.1, the address
    connected to), and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"), x509.DNSName("localhost"))


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with running(Server(tls=context)) as started:
        yield started


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 counts as a public address, and only it: 127.0.0.2 stays loopback. No public
    address reaches a test server, yet the non-public rule must be seen to refuse later hops
    when allowed_hosts is empty."""
    real = net.non_public_kind
    test_server = ipaddress.ip_address("127.0.0.1")

    def kind(address: net.IPAddress) -> str | None:
        return None if address == test_server else real(address)

    monkeypatch.setattr(net, "non_public_kind", kind)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


async def read_all(download: Download, into: bytearray | None = None) -> bytes:
    got = bytearray() if into is None else into
    async with download:
        async for chunk in download:
            got += chunk
    return bytes(got)


async def fails(uri: str, settings: ImportSettings, max_size: int | None = None) -> str:
    """The message of the DownloadFailed that opening `uri` raises."""
    with pytest.raises(DownloadFailed) as raised:
        await open_download(settings, uri, max_size)
    return str(raised.value)


async def wait_until_disconnected(server: Server) -> None:
    assert await asyncio.to_thread(server.client_went_away.wait, 5), "the client went away"
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.open_connections == 0


# --- downloads -------------------------------------------------------------------------------


async def test_a_download(server: Server) -> None:
    download = await open_download(server.settings(), server.url("/image"))
    assert download.size == len(DATA)
    chunks = []
    async with download:
        async for chunk in download:
            chunks.append(chunk)
    assert b"".join(chunks) == DATA
    # Large chunks, each whole but the last: never the whole body at once.
    assert [len(chunk) for chunk in chunks] == [CHUNK] * 4 + [len(b"tail")]
    # Pinned to the checked address, the request still names the host.
    assert server.requests[0][1]["Host"] == f"localhost:{server.port}"
    assert server.requests[0][1]["Accept-Encoding"] == "identity"


async def test_a_missing_file(server: Server) -> None:
    url = server.url("/missing.bin")
    assert await fails(url, server.settings()) == f"HTTP 404 from {url}"


async def test_a_closed_port() -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/image"
    settings = ImportSettings(allowed_hosts=["127.0.0.1"], allowed_ports=[port])
    assert await fails(url, settings) == f"connection refused by {url}"


async def test_a_name_that_does_not_resolve() -> None:
    # .invalid never resolves (RFC 2606).
    url = "http://glint-test.invalid/image"
    assert await fails(url, ImportSettings()) == "cannot resolve glint-test.invalid"


async def test_a_name_that_resolves_to_loopback(server: Server) -> None:
    # Allowed by every filter, but no host is named in allowed_hosts: the address is checked
    # when connecting.
    settings = server.settings(allowed_hosts=[])
    assert check_uri(server.url("/image"), settings) == server.url("/image")
    message = await fails(server.url("/image"), settings)
    assert message == "localhost resolves to 127.0.0.1, a loopback address, which is not allowed"
    assert server.requests == []


async def test_a_body_shorter_than_announced(server: Server) -> None:
    url = server.url("/truncated")
    download = await open_download(server.settings(), url)
    got = bytearray()
    with pytest.raises(DownloadFailed) as raised:
        await read_all(download, got)
    half = len(DATA) // 2
    assert str(raised.value) == f"{url} broke off after {half} of {len(DATA)} bytes"
    assert got, "what came before the end was passed on"
    assert DATA.startswith(got)


async def test_a_connection_reset_mid_body(server: Server) -> None:
    with cuttable("127.0.0.1", server.port) as forwarder:
        forwarder.cut_after_downstream(len(BIG) // 4)
        url = f"{forwarder.url}/big"
        settings = ImportSettings(
            allowed_hosts=["127.0.0.1"], allowed_ports=[forwarder.port], read_chunk_size=CHUNK
        )
        download = await open_download(settings, url)
        got = bytearray()
        with pytest.raises(DownloadFailed) as raised:
            await read_all(download, got)
        assert forwarder.is_cut
    assert re.fullmatch(
        rf"{re.escape(url)} broke off after (\d+) of {len(BIG)} bytes", str(raised.value)
    )
    assert 0 < len(got) < len(BIG)
    assert BIG.startswith(got)


async def test_a_server_that_stalls_before_answering(server: Server) -> None:
    url = server.url("/stall-headers")
    started = time.monotonic()
    assert await fails(url, server.settings(timeout=0.3)) == f"no data from {url} for 0.3 s"
    assert time.monotonic() - started < STALL


async def test_a_server_that_stalls_mid_body(server: Server) -> None:
    url = server.url("/stall-body")
    download = await open_download(server.settings(timeout=0.3), url)
    got = bytearray()
    with pytest.raises(DownloadFailed) as raised:
        await read_all(download, got)
    assert str(raised.value) == f"no data from {url} for 0.3 s (after {CHUNK} bytes)"
    assert bytes(got) == DATA[:CHUNK]


async def test_a_content_length_above_the_cap_fails_at_once(server: Server) -> None:
    url = server.url("/huge")
    message = await fails(url, server.settings(), max_size=10 * CHUNK)
    assert message == (
        f"{url} is {1 << 40} bytes long, more than the maximum image size of {10 * CHUNK} bytes"
    )
    await wait_until_disconnected(server)
    # Within the cap, the same server is read (and the caller's cap is what stops it).
    within = await open_download(server.settings(), url, 1 << 40)
    assert within.size == 1 << 40
    assert len(await anext(aiter(within))) == CHUNK
    await within.aclose()


async def test_an_endless_body_is_stopped_by_the_callers_cap(server: Server) -> None:
    cap = 20 * CHUNK
    download = await open_download(server.settings(), server.url("/endless"), cap)
    assert download.size is None
    received = 0

    async def ingest() -> None:  # as the caller's pipeline does, raising ImageTooLarge
        nonlocal received
        async with download:
            async for chunk in download:
                received += len(chunk)
                if received > cap:
                    raise OverflowError

    with pytest.raises(OverflowError):
        await ingest()
    assert received == cap + CHUNK
    await wait_until_disconnected(server)


async def test_a_download_closed_early_releases_its_connection(server: Server) -> None:
    download = await open_download(server.settings(), server.url("/huge"))
    assert await anext(aiter(download)) == bytes(CHUNK)
    assert server.open_connections == 1
    await download.aclose()
    await wait_until_disconnected(server)


async def test_a_download_closed_unread_releases_its_connection(server: Server) -> None:
    download = await open_download(server.settings(), server.url("/huge"))
    await download.aclose()
    await wait_until_disconnected(server)


# --- redirects -------------------------------------------------------------------------------


async def test_redirects_are_followed(server: Server) -> None:
    server.redirects["/a"] = "/b"
    server.redirects["/b"] = server.url("/image")
    download = await open_download(server.settings(), server.url("/a"))
    assert await read_all(download) == DATA
    assert download.url == server.url("/image")
    assert server.paths == ["/a", "/b", "/image"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/image",
        "http://[::1]:{port}/image",
        "http://0x7f000001:{port}/image",
        "http://2130706433:{port}/image",
        "http://0177.0.0.1:{port}/image",
        "http://127.1:{port}/image",
        "http://[::ffff:127.0.0.1]:{port}/image",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://localhost:{port}/image",
        "http://localhost:1/image",
    ],
)
async def test_redirects_that_do_not_pass_filtering(server: Server, target: str) -> None:
    target = target.format(port=server.port)
    server.redirects["/go"] = target
    url = server.url("/go")
    assert await fails(url, server.settings()) == (
        f"{url} redirected to {target}, which does not pass filtering"
    )
    assert server.paths == ["/go"]


@pytest.mark.usefixtures("public_loopback")
@pytest.mark.parametrize(
    "host", ["127.0.0.2", "0x7f000002", "2130706434", "127.2", "[::ffff:127.0.0.2]", "[::1]"]
)
async def test_redirects_to_non_public_addresses(server: Server, host: str) -> None:
    # No allowed_hosts: the first hop passes as a public address, the next is refused for
    # being a loopback one, however spelled.
    settings = server.settings(allowed_hosts=[])
    server.redirects["/inside"] = f"http://{host}:{server.port}/image"
    server.redirects["/outside"] = server.url("/image", host="127.0.0.1")
    outside = await open_download(settings, server.url("/outside", "127.0.0.1"))
    assert await read_all(outside) == DATA
    url = server.url("/inside", host="127.0.0.1")
    assert await fails(url, settings) == (
        f"{url} redirected to http://{host}:{server.port}/image, which does not pass filtering"
    )


async def test_a_redirect_loop(server: Server) -> None:
    server.redirects["/loop"] = "/loop"
    url = server.url("/loop")
    assert await fails(url, server.settings()) == f"more than 5 redirects from {url}"
    assert server.paths == ["/loop"] * 6
    server.requests.clear()
    assert await fails(url, server.settings(max_redirects=0)) == f"more than 0 redirects from {url}"
    assert server.paths == ["/loop"]


# --- TLS -------------------------------------------------------------------------------------


async def test_tls_is_verified_against_the_name(
    tls_server: Server, certificate: tuple[Path, Path]
) -> None:
    # Connected to the checked address, the certificate (for `localhost` only) is still checked
    # against the name, which SNI sends.
    settings = tls_server.settings(verify=certificate[0])
    assert await read_all(await open_download(settings, tls_server.url("/image"))) == DATA

    url = tls_server.url("/image")
    message = await fails(url, tls_server.settings())
    assert message.startswith(f"cannot fetch {url}: [SSL: CERTIFICATE_VERIFY_FAILED]")
    # The address itself is not what the certificate names.
    by_address = tls_server.settings(verify=certificate[0], allowed_hosts=["127.0.0.1"])
    message = await fails(tls_server.url("/image", "127.0.0.1"), by_address)
    assert "CERTIFICATE_VERIFY_FAILED" in message


async def test_redirects_from_https_to_http_are_refused(
    tls_server: Server, server: Server, certificate: tuple[Path, Path]
) -> None:
    settings = tls_server.settings(
        verify=certificate[0], allowed_ports=[tls_server.port, server.port]
    )
    tls_server.redirects["/down"] = server.url("/image")
    url = tls_server.url("/down")
    assert await fails(url, settings) == (
        f"{url} redirected to {server.url('/image')}, down from https"
    )
    assert server.requests == []


# --- credentials -----------------------------------------------------------------------------


def with_secrets(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{USER}:{PASSWORD}@{rest}?token={TOKEN}"


async def test_credentials_are_sent_to_their_origin_only(server: Server) -> None:
    download = await open_download(server.settings(), with_secrets(server.url("/private")))
    assert await read_all(download) == DATA
    assert await fails(server.url("/private"), server.settings()) == (
        f"HTTP 401 from {server.url('/private')}"
    )
    with running(Server()) as other:
        server.redirects["/elsewhere"] = other.url("/image")
        settings = server.settings(allowed_ports=[server.port, other.port])
        download = await open_download(settings, with_secrets(server.url("/elsewhere")))
        assert await read_all(download) == DATA
        assert "Authorization" not in other.requests[0][1]


async def test_credentials_never_appear_in_messages(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = server.settings(max_redirects=1)
    server.redirects["/hop"] = "/missing"
    server.redirects["/out"] = with_secrets("http://127.0.0.1/x")
    server.redirects["/twice"] = "/hop"
    closed = closed_port()
    messages = []
    for uri in [
        server.url("/hop"),
        server.url("/out"),
        server.url("/twice"),
        f"http://localhost:{closed}/image",
    ]:
        with pytest.raises(DownloadFailed) as raised:
            await open_download(
                server.settings(max_redirects=1, allowed_ports=[server.port, closed]),
                with_secrets(uri),
            )
        messages.append(str(raised.value))
    for uri in [
        with_secrets("ftp://localhost/x"),
        with_secrets(f"http://localhost:{closed}/x"),
        with_secrets("http://127.0.0.1/x"),
        with_secrets("http://[::1/x"),
        # Malformed (a / in the password): whatever precedes the last @ is still left out.
        f"http://{USER}:{PASSWORD}/x@localhost/?token={TOKEN}",
    ]:
        with pytest.raises(UriRefused) as refused:
            check_uri(uri, settings)
        messages.append(str(refused.value))
    refusal = "URI for web-download does not pass filtering: "
    assert messages == [
        f"HTTP 404 from {server.url('/missing')}",
        f"{server.url('/out')} redirected to http://127.0.0.1/x, which does not pass filtering",
        f"more than 1 redirects from {server.url('/twice')}",
        f"connection refused by http://localhost:{closed}/image",
        f"{refusal}ftp://localhost/x",
        f"{refusal}http://localhost:{closed}/x",
        f"{refusal}http://127.0.0.1/x",
        f"{refusal}http://[::1/x",
        f"{refusal}http://localhost/",
    ]
    for message in messages:
        assert not any(secret in message for secret in (USER, PASSWORD, TOKEN)), message
    # Glint's own; app/logs.py keeps httpcore's (which traces raw headers) at WARNING.
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("app.")]
    assert any("redirects to" in line for line in ours)
    for line in ours:
        assert not any(secret in line for secret in (USER, PASSWORD, TOKEN)), line


# --- check_uri -------------------------------------------------------------------------------


def refused(uri: object, **settings: Any) -> bool:
    try:
        accepted = check_uri(uri, ImportSettings(**settings))
    except UriRefused:
        return True
    assert accepted == uri
    return False


@pytest.mark.parametrize(
    ("uri", "settings", "is_refused"),
    [
        ("http://example.com/image.img", {}, False),
        ("https://example.com/image.img", {}, False),
        ("HTTPS://example.com/image.img", {}, False),
        ("ftp://example.com/image.img", {}, True),
        ("file:///etc/passwd", {}, True),
        ("file:///etc/passwd", {"allowed_schemes": []}, True),  # http(s) only, always
        ("gopher://example.com/", {"allowed_schemes": []}, True),
        ("http://example.com/", {"allowed_schemes": ["https"]}, True),
        ("http://example.com/", {"allowed_schemes": [], "disallowed_schemes": ["http"]}, True),
        ("https://example.com/", {"allowed_schemes": [], "disallowed_schemes": ["HTTP"]}, False),
        # Glance: an allow list and a deny list both set, only the allow list counts.
        ("http://example.com/", {"disallowed_schemes": ["http"]}, False),
        ("example.com/image.img", {}, True),
        ("//example.com/image.img", {}, True),
    ],
)
def test_schemes(uri: str, settings: dict[str, Any], is_refused: bool) -> None:
    assert refused(uri, **settings) is is_refused


@pytest.mark.parametrize(
    ("uri", "settings", "is_refused"),
    [
        ("http://example.com:80/", {}, False),
        ("https://example.com:443/", {}, False),
        ("http://example.com:8080/", {}, True),
        ("https://example.com:80/", {}, False),
        ("http://example.com:8080/", {"allowed_ports": [8080]}, False),
        ("http://example.com/", {"allowed_ports": [8080]}, True),  # 80 by default
        ("http://example.com:9000/", {"allowed_ports": [], "disallowed_ports": [8080]}, False),
        ("http://example.com:8080/", {"allowed_ports": [], "disallowed_ports": [8080]}, True),
        ("http://example.com/", {"allowed_ports": [], "disallowed_ports": [80]}, True),
        ("http://example.com:8080/", {"allowed_ports": [8080], "disallowed_ports": [8080]}, False),
        ("http://example.com:0/", {"allowed_ports": []}, True),
        ("http://example.com:65536/", {"allowed_ports": []}, True),
        ("http://example.com:http/", {"allowed_ports": []}, True),
    ],
)
def test_ports(uri: str, settings: dict[str, Any], is_refused: bool) -> None:
    assert refused(uri, **settings) is is_refused


@pytest.mark.parametrize(
    ("uri", "settings", "is_refused"),
    [
        ("http://mirror.example/", {"allowed_hosts": ["mirror.example"]}, False),
        ("http://MIRROR.example./", {"allowed_hosts": ["mirror.example"]}, False),
        ("http://other.example/", {"allowed_hosts": ["mirror.example"]}, True),
        ("http://mirror.example.evil/", {"allowed_hosts": ["mirror.example"]}, True),
        ("http://evil.example/", {"disallowed_hosts": ["evil.example"]}, True),
        ("http://EVIL.example./", {"disallowed_hosts": ["evil.example"]}, True),
        ("http://good.example/", {"disallowed_hosts": ["evil.example"]}, False),
        (
            "http://evil.example/",
            {"allowed_hosts": ["evil.example"], "disallowed_hosts": ["evil.example"]},
            False,
        ),
        ("http://bücher.example/", {"allowed_hosts": ["xn--bcher-kva.example"]}, False),
        ("http://8.8.8.8/", {"disallowed_hosts": ["8.8.8.8"]}, True),
        ("http://134744072/", {"disallowed_hosts": ["8.8.8.8"]}, True),
        ("http://0x08080808/", {"disallowed_hosts": ["8.8.8.8"]}, True),
        ("http://[::ffff:8.8.8.8]/", {"disallowed_hosts": ["8.8.8.8"]}, True),
        ("http://134744072/", {}, False),  # 8.8.8.8: public, however spelled
        ("http://[2001:4860:4860::8888]/", {}, False),
        ("http:///image.img", {}, True),
        ("http://ex%61mple.com/", {}, True),
        ("http://exa mple.com/", {}, True),
        ("http://example.123/", {}, True),
        ("http://1.2.3.4.5/", {}, True),
        ("http://[::1/", {}, True),
    ],
)
def test_hosts(uri: str, settings: dict[str, Any], is_refused: bool) -> None:
    assert refused(uri, **settings) is is_refused


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "017700000001",
        "127.1",
        "0x7f.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[::1]",
        "[::]",
        "0.0.0.0",
        "0",
        "10.0.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "[fe80::1]",
        "[fd00::1]",
        "224.0.0.1",
        "100.64.0.1",
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits: IDNA makes them ASCII
    ],
)
def test_non_public_addresses_however_spelled(host: str) -> None:
    assert refused(f"http://{host}/image.img")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
        ("127.0.0.1", "0x7f000001"),
        ("[0:0::1]", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_allowed_hosts_may_be_non_public(host: str, allowed: str) -> None:
    assert not refused(f"http://{host}/image.img", allowed_hosts=[allowed])
    assert refused(f"http://{host}/image.img", allowed_hosts=["mirror.example"])


@pytest.mark.parametrize("uri", [None, "", 42, ["http://example.com/"]])
def test_no_uri(uri: object) -> None:
    with pytest.raises(UriRefused) as raised:
        check_uri(uri, ImportSettings())
    assert str(raised.value) == f"URI for web-download does not pass filtering: {uri}"


def test_the_message_is_glances() -> None:
    with pytest.raises(UriRefused) as raised:
        check_uri(
            f"ftp://{USER}:{PASSWORD}@example.com/image.img?token={TOKEN}#x", ImportSettings()
        )
    assert str(raised.value) == (
        "URI for web-download does not pass filtering: ftp://example.com/image.img"
    )
    assert isinstance(raised.value, BadRequest)
    assert raised.value.status_code == 400


async def test_open_download_filters_too() -> None:
    # The settings may have changed since the import was accepted.
    uri = "http://example.com/image.img"
    settings = ImportSettings(disallowed_hosts=["example.com"], allowed_hosts=[])
    assert await fails(uri, settings) == f"URI for web-download does not pass filtering: {uri}"
