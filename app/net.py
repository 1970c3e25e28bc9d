"""Fetching from URLs that users give without being turned against the network Glint runs in.

What the http store and web-download import share (each adds its own rules on top):

- which addresses are not public (`non_public_kind`), and how a numeric host is read however it
  is spelled (`ip_literal`), as resolvers would read it, so that no spelling slips past a check;
- a network backend for httpcore that resolves a name once, checks every address it gets and
  connects to one of exactly those (`CheckedBackend`): a name cannot answer one address for the
  check and another for the connection (DNS rebinding), while TLS still sends SNI for, and
  verifies the certificate against, the name;
- an httpx transport over a pool with that backend (`Transport`), and the TLS contexts, built
  without the environment (no SSL_CERT_FILE).

Nothing here imports the rest of Glint: settings validation uses `canonical_host` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from pathlib import Path

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A label that the WHATWG URL standard, and inet_aton (which getaddrinfo falls back to), read
# as a number: a host whose last label is one names an IPv4 address, however it is spelled.
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# What a resolvable name is made of once IDNA-encoded; anything else (%, \, spaces) is a
# spelling that URL parsers and resolvers may each read differently.
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


# --- which addresses may be reached ----------------------------------------------------------


def non_public_kind(address: IPAddress) -> str | None:
    """What makes `address` unfit to fetch from ("loopback", "private", ...); None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # The IPv4 address is what the kernel connects to; on its own the mapped range only
            # counts as reserved, which would refuse ::ffff:<public address> too.
            return non_public_kind(address.ipv4_mapped)
        embedded = address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF) if address in _NAT64 else None
        )
        embedded_kind = None if embedded is None else non_public_kind(embedded)
        if embedded_kind is not None:
            return f"{embedded_kind} (through {embedded})"
    for kind, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Neither of the above, yet not globally reachable (shared address space, 100.64/10).
        ("non-global", not address.is_global),
    ):
        if applies:
            return kind
    return None


def _ipv4_number(part: str) -> int:
    """One part of a numeric IPv4 host as WHATWG reads it: 0x hex, leading-zero octal, decimal."""
    if part[:2] in ("0x", "0X"):
        digits, radix = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, radix = part[1:], 8
    else:
        digits, radix = part, 10
    if not digits:
        return 0  # "0x" alone is zero
    if not digits.isascii() or not digits.isalnum():
        raise ValueError(part)
    return int(digits, radix)  # ValueError for a digit outside the radix


def ip_literal(host: str) -> IPAddress | None:
    """The address a numeric `host` (as a URL spells it, IPv6 without brackets) names, however
    it is spelled: `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` all name 127.0.0.1, as
    they do to inet_aton and the WHATWG URL standard. None for a name; ValueError for a host
    that is numeric yet names no address (`1.2.3.4.5`, `example.123`)."""
    if ":" in host:
        return ipaddress.IPv6Address(host)
    # A trailing dot is the root of the DNS, not part of the address.
    parts = host.removesuffix(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or "" in parts:
        raise ValueError(f"{host!r} is not an IP address")
    numbers = [_ipv4_number(part) for part in parts]
    # The last part fills the bytes the others leave: 127.1 is 127.0.0.1.
    if any(number > 255 for number in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(parts)):
        raise ValueError(f"{host!r} is not an IP address")
    value = numbers[-1]
    for position, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def canonical_host(host: str) -> str:
    """`host` (a URL's, or an operator's, brackets and all) in the one form that host filters
    compare: an IP address, however spelled, as ipaddress writes it (an IPv4-mapped one as its
    IPv4 address); a name in lower-case ASCII (IDNA) without its trailing dot. ValueError for
    anything that is neither."""
    invalid = ValueError(f"{host!r} is not a host name or an IP address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        # IDNA first: it maps full-width digits to ASCII ones, so that what they spell is read
        # as the address it is.
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
        address = ip_literal(ascii_host.lower())
    except ValueError:  # UnicodeError among them
        raise invalid from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address is not None:
        return str(address)
    name = ascii_host.lower().removesuffix(".")
    if not _NAME.fullmatch(name):
        raise invalid
    return name


class NonPublicAddress(Exception):
    """A host resolved to an address that may not be reached."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, each once (OSError when it resolves to none)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def public_addresses(host: str, port: int) -> list[str]:
    """`resolve`, and NonPublicAddress when any address is non-public (a name with one private
    address among public ones leads there as well)."""
    addresses = await resolve(host, port)
    for address in addresses:
        kind = non_public_kind(ipaddress.ip_address(address))
        if kind is not None:
            raise NonPublicAddress(f"{host} resolves to {address}, a {kind} address")
    return addresses


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host only at the addresses that `public_addresses` just passed; the
    hosts in `trusted_hosts` (as URLs give them: lower-case ASCII) at whatever they resolve to.

    The pool asks the backend for a connection by host name; were the name resolved again by
    the socket layer, it could answer differently from the check (DNS rebinding). TLS is
    unaffected: the pool still verifies the certificate and sends SNI for the host name.
    """

    def __init__(self, trusted_hosts: Collection[str] = ()) -> None:
        self._backend = httpcore.AnyIOBackend()
        self._trusted_hosts = frozenset(trusted_hosts)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        lookup = resolve if host in self._trusted_hosts else public_addresses
        try:
            async with asyncio.timeout(timeout):
                addresses = await lookup(host, port)
        except TimeoutError as error:  # before OSError, which it is
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from error
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        for address in addresses[:-1]:
            with contextlib.suppress(httpcore.ConnectError):
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
        return await self._backend.connect_tcp(
            addresses[-1], port, timeout, local_address, socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# --- httpx over a pool with that backend -----------------------------------------------------

_HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
}


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's errors as the httpx ones they stand for, as httpx's own transport does."""
    try:
        yield
    except Exception as error:
        httpx_error = _HTTPX_ERRORS.get(type(error))
        if httpx_error is None:
            raise
        raise httpx_error(str(error)) from error


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._response.aclose()


class Transport(httpx.AsyncBaseTransport):
    """httpx's AsyncHTTPTransport over a pool whose network backend we choose (None: httpcore's
    own, unchecked), which httpx does not let its own transport be given."""

    def __init__(
        self, ssl_context: ssl.SSLContext, network_backend: httpcore.AsyncNetworkBackend | None
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            # No cap: a reader holds its connection for a whole download, and downloads queued
            # behind a cap would time out waiting for one.
            max_connections=None,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=network_backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("an async client's request has an async body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@functools.cache
def _default_ssl_context(verify: bool) -> ssl.SSLContext:
    # certifi's bundle, which httpx verifies with by default, not SSL_CERT_FILE's. Loading it
    # takes a while, and nothing changes a context once made: every user shares one.
    return httpx.create_ssl_context(verify=verify, trust_env=False)


def ssl_context(verify: bool | Path) -> ssl.SSLContext:
    """TLS that trusts the CA bundle at `verify`, or certifi's (True), or anything (False).
    OSError (ssl.SSLError among them) for a bundle that cannot be read or holds no
    certificate."""
    if isinstance(verify, Path):
        return ssl.create_default_context(cafile=verify)
    return _default_ssl_context(verify)
