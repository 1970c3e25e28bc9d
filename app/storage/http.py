"""The http store: read-only, for image data that stays at an http(s) URL.

Its locations are URLs that an admin (or, for http URLs, an image owner) typed in, so each is
hostile until checked, on every hop:

- Unless `allow_private_networks`, a host that is, or resolves to, a loopback, private,
  link-local, multicast, reserved or otherwise non-public address is refused (ForbiddenLocation).
  Names are resolved by the connection pool's own network backend (app.net's, which
  web-download import uses too), which checks every address it gets and then connects to one of
  exactly those: a name cannot answer one address for the check and another for the connection
  (DNS rebinding).
- A numeric host must be spelled canonically: `2130706433`, `0x7f000001`, `127.1` and
  `0177.0.0.1` are refused, not left for the resolver to read as 127.0.0.1. An IPv6 address that
  embeds an IPv4 one (mapped, 6to4, NAT64) is judged by that one too.
- Redirects are followed here, not by httpx: at most `max_redirects`, each target checked like
  the first URL, and never from https down to http.
- Nothing comes from the environment (proxies, netrc, SSL_CERT_FILE), and TLS is verified by
  default, unlike Glance's http store.
- Credentials in a URL's userinfo are sent as basic auth to that URL's origin only; neither they
  nor the query string appear in any message or log line of this module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import httpx

from app import net
from app.config import HttpStoreSettings
from app.storage.base import Capability, Store, StoreWriter
from app.storage.errors import (
    ForbiddenLocation,
    ObjectNotFound,
    ReadOnlyStore,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_FOUND = frozenset({404, 410})
_CONTENT_RANGE = re.compile(r"bytes +(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


def literal_address(host: str) -> net.IPAddress | None:
    """The address that a numeric `host` (as a URL spells it, IPv6 without brackets) names;
    None for a name. ForbiddenLocation for a number that is not a canonical address."""
    refusal = ForbiddenLocation(f"{host!r} is not a canonically written IP address")
    try:
        address = net.ip_literal(host)
    except ValueError:
        raise refusal from None
    # Only dotted decimal without leading zeros (a trailing dot is the root of the DNS): any
    # other spelling is one that resolvers disagree on (inet_aton reads 0177 as octal, some
    # refuse it), so none is guessed at.
    if isinstance(address, ipaddress.IPv4Address) and str(address) != host.removesuffix("."):
        raise refusal
    return address


# --- URLs ------------------------------------------------------------------------------------


def _parse(location: str) -> httpx.URL | None:
    """`location` as an http(s) URL with a host; None when it is not one."""
    if location.partition(":")[0] not in SCHEMES:  # as the registry reads it: lower case only
        return None
    try:
        url = httpx.URL(location)
    except httpx.InvalidURL:
        return None
    return url if url.raw_host else None


def _redacted(url: httpx.URL) -> str:
    """`url` without its userinfo, query and fragment, for messages (netloc has no userinfo)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def _host(url: httpx.URL) -> str:
    # The ASCII (IDNA) form: the one resolved and connected to.
    return url.raw_host.decode("ascii")


def _port(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS[url.scheme]


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, _host(url), _port(url)


def _split_credentials(url: httpx.URL) -> tuple[httpx.URL, httpx.BasicAuth | None]:
    """`url` without userinfo, and the basic auth it stood for: kept out of the URL, they stay
    out of everything that prints one (httpx's request log among them)."""
    if not url.userinfo:
        return url, None
    return url.copy_with(username=None, password=None), httpx.BasicAuth(url.username, url.password)


class _ContentRange(NamedTuple):
    first: int | None  # None in `bytes */<total>`, the answer to a range past the end
    last: int | None
    total: int | None  # None in `bytes <first>-<last>/*`


def _content_range(response: httpx.Response) -> _ContentRange | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None:
        return None
    first, last, total = match.groups()
    return _ContentRange(
        None if first is None else int(first),
        None if last is None else int(last),
        None if total == "*" else int(total),
    )


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


# --- the store -------------------------------------------------------------------------------


class HttpStore:
    schemes: frozenset[str] = SCHEMES
    capabilities: Capability = Capability.READ | Capability.READ_RANDOM

    def __init__(
        self,
        store_id: str,
        *,
        verify: bool | Path = True,
        timeout: float = 60.0,
        max_redirects: int = 5,
        allow_private_networks: bool = False,
        read_chunk_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.store_id = store_id
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.allow_private_networks = allow_private_networks
        self.read_chunk_size = read_chunk_size
        # Now, so that a CA bundle that cannot be read stops start-up, not the first download.
        try:
            self._ssl_context = net.ssl_context(verify)
        except OSError as error:  # ssl.SSLError too: a file that holds no certificate
            raise StoreError(
                f"store {store_id!r}: cannot load the CA bundle {verify}: {error}"
            ) from error
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, store_id: str, settings: HttpStoreSettings, data_dir: Path) -> HttpStore:
        return cls(
            store_id,
            verify=settings.verify,
            timeout=settings.timeout,
            max_redirects=settings.max_redirects,
            allow_private_networks=settings.allow_private_networks,
            read_chunk_size=settings.read_chunk_size,
        )

    def __repr__(self) -> str:
        return f"HttpStore({self.store_id!r})"

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # Pooled connections belong to the event loop that opened them. The registry is
            # built once, and may be used from several loops in turn (one per test client or
            # CLI command): each gets a pool of its own.
            network_backend = None if self.allow_private_networks else net.CheckedBackend()
            self._client = httpx.AsyncClient(
                transport=net.Transport(self._ssl_context, network_backend),
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,
                # Identity: Range and Content-Length then count the bytes that are stored.
                headers={"User-Agent": "Glint", "Accept-Encoding": "identity"},
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Closes the pooled connections; the store opens new ones if used again."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # --- locations ---------------------------------------------------------------------------

    def contains(self, location: str) -> bool:
        return _parse(location) is not None

    def _url(self, location: str) -> httpx.URL:
        url = _parse(location)
        if url is None:
            # The location itself is not repeated: it may hold credentials.
            raise ForbiddenLocation(f"store {self.store_id!r}: not an http(s) URL with a host")
        return url

    def _refusal(self, url: httpx.URL, reason: str) -> ForbiddenLocation:
        return ForbiddenLocation(f"store {self.store_id!r} refuses {_redacted(url)}: {reason}")

    def _check_hop(self, url: httpx.URL, previous: httpx.URL | None) -> net.IPAddress | None:
        """Refuses `url` (reached from `previous`) if what it names cannot be fetched; returns
        the address it names when its host is numeric."""
        if url.scheme not in SCHEMES or not url.raw_host:
            raise self._refusal(url, "not an http(s) URL with a host")
        if previous is not None and previous.scheme == "https" and url.scheme == "http":
            raise self._refusal(url, f"redirected to it from https ({_redacted(previous)})")
        try:
            address = literal_address(_host(url))
        except ForbiddenLocation as error:
            raise self._refusal(url, str(error)) from None
        if address is not None and not self.allow_private_networks:
            kind = net.non_public_kind(address)
            if kind is not None:
                raise self._refusal(url, f"{address} is a {kind} address")
        return address

    async def check_location(self, location: str) -> None:
        """Refuses a location that this store would not read: not an http(s) URL with a host,
        a numeric host spelled ambiguously, or (unless allow_private_networks) a host that is
        or resolves to a non-public address (ForbiddenLocation); StoreUnavailable when its
        name cannot be resolved now. For the layer that accepts locations: reads check every
        hop again, at connection time."""
        url = self._url(location)
        if self._check_hop(url, None) is not None or self.allow_private_networks:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await net.public_addresses(_host(url), _port(url))
        except net.NonPublicAddress as error:
            raise self._refusal(url, str(error)) from None
        except OSError as error:  # TimeoutError among them
            raise StoreUnavailable(
                f"store {self.store_id!r} cannot resolve {_host(url)}: {str(error) or 'timed out'}"
            ) from None

    # --- requests ----------------------------------------------------------------------------

    def _unreachable(self, url: httpx.URL, error: httpx.TransportError) -> StoreUnavailable:
        # Timeouts often come without a message: their type says it all.
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return StoreUnavailable(
            f"store {self.store_id!r} cannot reach {_host(url)} ({_redacted(url)}): {detail}"
        )

    def _bad_status(self, response: httpx.Response, url: httpx.URL) -> StoreUnavailable:
        return StoreUnavailable(
            f"store {self.store_id!r}: {_host(url)} answered {response.status_code} "
            f"{response.reason_phrase} for {_redacted(url)}"
        )

    def _not_found(self, response: httpx.Response, url: httpx.URL) -> ObjectNotFound:
        return ObjectNotFound(
            f"store {self.store_id!r}: nothing at {_redacted(url)} ({response.status_code})"
        )

    async def _request(
        self, method: str, location: str, headers: Mapping[str, str] | None = None
    ) -> tuple[httpx.Response, httpx.URL]:
        """The response to `method` on `location` once redirects are followed (streaming: the
        caller closes it), and the URL that gave it."""
        url, auth = _split_credentials(self._url(location))
        # Where the credentials came from: the only origin they are sent to.
        credentials_url = url
        client = self._http()
        previous: httpx.URL | None = None
        redirects = 0
        while True:
            self._check_hop(url, previous)
            request = client.build_request(method, url, headers=headers)
            try:
                response = await client.send(
                    request,
                    auth=auth if _origin(url) == _origin(credentials_url) else None,
                    stream=True,
                )
            except net.NonPublicAddress as error:  # from the backend: a bad address
                raise self._refusal(url, str(error)) from None
            except httpx.TransportError as error:
                raise self._unreachable(url, error) from error
            target = response.headers.get("location")
            if response.status_code not in _REDIRECTS or target is None:
                return response, url
            await response.aclose()
            if redirects == self.max_redirects:
                raise StoreUnavailable(
                    f"store {self.store_id!r}: {_redacted(url)} redirects again after "
                    f"{redirects} redirects, the most followed"
                )
            redirects += 1
            # A Location that is not a URL never gets here: httpx refuses it while receiving
            # the response (RemoteProtocolError).
            next_url, next_auth = _split_credentials(url.join(target))
            if next_auth is not None:
                auth, credentials_url = next_auth, next_url
            log.debug(
                "store %s: %s redirects to %s", self.store_id, _redacted(url), _redacted(next_url)
            )
            previous, url = url, next_url

    # --- reading -----------------------------------------------------------------------------

    async def stat(self, location: str) -> int:
        response, url = await self._request("HEAD", location)
        await response.aclose()
        if response.status_code in _NOT_FOUND:
            raise self._not_found(response, url)
        size = _content_length(response) if response.is_success else None
        if size is not None:
            return size
        # No size from HEAD (none given, or HEAD refused, as URLs signed for GET only are):
        # the first byte's Content-Range gives the whole size.
        response, url = await self._request("GET", location, {"Range": "bytes=0-0"})
        try:
            if response.status_code in _NOT_FOUND:
                raise self._not_found(response, url)
            if response.status_code in (206, 416):  # 416: `bytes */0`, an empty object
                content_range = _content_range(response)
                if content_range is not None and content_range.total is not None:
                    return content_range.total
            elif response.status_code == 200:
                size = _content_length(response)
                if size is not None:
                    return size
            else:
                raise self._bad_status(response, url)
        finally:
            await response.aclose()
        raise StoreError(
            f"store {self.store_id!r}: the size of {_redacted(url)} is unknown "
            f"({_host(url)} gives neither Content-Length nor Content-Range)"
        )

    def _range_size(
        self, response: httpx.Response, url: httpx.URL, offset: int, last: int | None
    ) -> int:
        """How many bytes a 206 answering `bytes=<offset>-<last>` holds; StoreUnavailable when
        it answers another range, which the reader would otherwise pass off as the one asked."""
        content_range = _content_range(response)
        if (
            content_range is None
            or content_range.first != offset
            or content_range.last is None
            or content_range.last < offset
            or (last is not None and content_range.last > last)
        ):
            asked = f"{offset}-{'' if last is None else last}"
            raise StoreUnavailable(
                f"store {self.store_id!r}: {_host(url)} answered bytes {asked} of "
                f"{_redacted(url)} with Content-Range {response.headers.get('content-range')!r}"
            )
        return content_range.last - offset + 1

    async def open_reader(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        ranged = offset > 0 or length is not None
        # A range cannot be empty: a zero length still asks for a byte, so that a missing
        # object is still reported.
        last = None if length is None else offset + max(length, 1) - 1
        headers = {"Range": f"bytes={offset}-{'' if last is None else last}"} if ranged else {}
        response, url = await self._request("GET", location, headers)
        try:
            status = response.status_code
            if status in _NOT_FOUND:
                raise self._not_found(response, url)
            if ranged and status == 416:  # the range starts at or past the end
                return
            if ranged and status == 206:
                skip = 0
                range_size = self._range_size(response, url, offset, last)
                expected: int | None = range_size
                wanted: int | None = range_size if length is None else min(range_size, length)
            elif status == 200:  # Range ignored: the whole object, from its start
                skip = offset
                expected = _content_length(response)
                wanted = length
            else:
                raise self._bad_status(response, url)
            if wanted == 0:
                return
            received = 0
            buffer = bytearray()
            try:
                async for piece in response.aiter_raw():
                    received += len(piece)
                    if skip >= len(piece):
                        skip -= len(piece)
                        continue
                    if skip:
                        piece, skip = piece[skip:], 0
                    if wanted is not None:
                        piece = piece[:wanted]
                        wanted -= len(piece)
                    buffer += piece
                    # httpx hands over what each socket read gave: readers get large chunks.
                    while len(buffer) >= self.read_chunk_size:
                        chunk = bytes(buffer[: self.read_chunk_size])
                        del buffer[: self.read_chunk_size]
                        yield chunk
                    if wanted == 0:
                        break
                else:
                    if expected is not None and received < expected:
                        raise StoreUnavailable(
                            f"store {self.store_id!r}: {_host(url)} sent {received} of the "
                            f"{expected} bytes announced for {_redacted(url)}"
                        )
            except httpx.TransportError as error:
                raise self._unreachable(url, error) from error
            if buffer:
                yield bytes(buffer)
        finally:
            # Early too (the reader closed before the end): the connection is not left open.
            await response.aclose()

    # --- what a read-only store does not do --------------------------------------------------

    async def open_writer(self, key: str, size_hint: int | None = None) -> StoreWriter:
        raise ReadOnlyStore(
            f"store {self.store_id!r} is read-only: its data stays at the URLs given as locations"
        )

    async def delete(self, location: str) -> None:
        """Nothing: the data at a URL is not ours to remove."""

    async def discard(self, key: str) -> None:
        """Nothing: no writer ever left anything here."""

    async def purge_staging(self, older_than: float, *, keep: Collection[str] = ()) -> int:
        return 0


if TYPE_CHECKING:
    # mypy proves that the driver fits the seam.
    _FITS: type[Store] = HttpStore
