"""The web-download import method's source: which URIs it may fetch, and the fetching.

`POST /v2/images/{id}/import {"method": {"name": "web-download", "uri": ...}}` calls `check_uri`
(no DNS, so it answers at once): a URI that does not pass filtering is the request's 400, in
Glance's words. The import job then calls `open_download`, which filters again (the settings may
have changed since), filters every redirect target the same way, and lets the connection pool
connect only to addresses it has just checked (app/net.py): a name resolving to a non-public
address is refused at that moment, and cannot resolve to another one for the connection.

Filtering is Glance's `validate_import_uri` (settings: ImportSettings), read with urllib as
Glance does; the URL fetched is rebuilt from what was checked, so no second parser can read a
different host into it. Beyond Glance: only http and https; ports are filtered even when the URI
names none (the scheme's default); a numeric host is read however it is spelled (0x7f000001,
2130706433, 0177.0.0.1, 127.1, [::ffff:127.0.0.1]) and compared, like the host lists, in its
canonical form; a host that is a non-public address is refused unless allowed_hosts names it;
redirects from https to http are refused.

Credentials in a URI's userinfo are sent as basic auth to that URI's origin only. Messages show a
URI without its userinfo and query string (where signed URLs keep their secrets).
"""

from __future__ import annotations

import base64
import logging
import socket
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx

from app import net
from app.config import WEB_DOWNLOAD_SCHEMES, ImportSettings
from app.errors import BadRequest, GlintError

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

_T = TypeVar("_T")


class UriRefused(BadRequest):
    """A web-download URI that does not pass filtering (400, as Glance answers)."""

    def __init__(self, uri: object):
        super().__init__(f"URI for web-download does not pass filtering: {_shown(uri)}")


class DownloadFailed(GlintError):
    """Why a download failed, in words for the import task's message. 502 where it is ever
    answered: another server failed, or pointed somewhere it may not."""

    status_code = 502


# --- filtering -------------------------------------------------------------------------------


def _split(uri: str) -> tuple[urllib.parse.SplitResult, int | None] | None:
    """`uri`'s parts and its explicit port, as urllib (and so Glance) reads them; None for a
    URI that urllib cannot read, a port that is not a number below 65536 among them."""
    try:
        parts = urllib.parse.urlsplit(uri)
        return parts, parts.port
    except ValueError:
        return None


def _shown(uri: object) -> str:
    """`uri` for messages and logs: without userinfo, query string and fragment."""
    text = str(uri)
    split = _split(text)
    if split is None:
        # However malformed, whatever comes before its last @ may be userinfo.
        head, slashes, rest = text.partition("//")
        rest = rest.rpartition("@")[2]
        return head + slashes + rest.partition("?")[0].partition("#")[0]
    parts = split[0]
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")
    )


def _passes(value: _T, allowed: Sequence[_T], denied: Sequence[_T]) -> bool:
    # Glance: a non-empty allow list is all that counts, the deny list beside it is ignored.
    return value in allowed if allowed else value not in denied


@dataclass(frozen=True)
class _Target:
    """A URI that passed filtering, as it is fetched."""

    url: httpx.URL  # rebuilt from the checked parts: canonical host, no userinfo
    authorization: str | None  # basic auth, from the userinfo
    origin: tuple[str, str, int]
    shown: str


def _filtered(uri: str, settings: ImportSettings) -> _Target | None:
    """`uri` ready to fetch, or None when it does not pass filtering."""
    split = _split(uri)
    if split is None:
        return None
    parts, explicit_port = split
    scheme = parts.scheme  # lower case, from urllib
    if scheme not in WEB_DOWNLOAD_SCHEMES or not _passes(
        scheme, settings.allowed_schemes, settings.disallowed_schemes
    ):
        return None
    try:
        host = net.canonical_host(parts.hostname or "")
    except ValueError:
        return None
    if not _passes(host, settings.allowed_hosts, settings.disallowed_hosts):
        return None
    port = _DEFAULT_PORTS[scheme] if explicit_port is None else explicit_port
    if port == 0 or not _passes(port, settings.allowed_ports, settings.disallowed_ports):
        return None
    address = net.ip_literal(host)
    if (
        address is not None
        and host not in settings.allowed_hosts
        and net.non_public_kind(address) is not None
    ):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if explicit_port is not None:
        netloc += f":{explicit_port}"
    try:
        url = httpx.URL(urllib.parse.urlunsplit((scheme, netloc, parts.path, parts.query, "")))
    except httpx.InvalidURL:
        return None
    authorization = None
    if parts.username is not None:
        userinfo = f"{parts.username}:{parts.password or ''}"
        token = base64.b64encode(urllib.parse.unquote(userinfo).encode()).decode("ascii")
        authorization = f"Basic {token}"
    return _Target(url, authorization, (scheme, host, port), _shown(uri))


def check_uri(uri: object, settings: ImportSettings) -> str:
    """`uri`, if web-download may fetch it; UriRefused (400) if not. No DNS: what a name
    resolves to is checked when the download connects."""
    if not isinstance(uri, str) or _filtered(uri, settings) is None:
        raise UriRefused(uri)
    return uri


# --- fetching --------------------------------------------------------------------------------


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether a `kind` error is in `error`'s chain (httpx wraps httpcore's, which wraps the
    socket's)."""
    link: BaseException | None = error
    while link is not None:
        if isinstance(link, kind):
            return True
        link = link.__cause__ or link.__context__
    return False


def _unreachable(target: _Target, error: httpx.TransportError, timeout: float) -> DownloadFailed:
    if isinstance(error, httpx.ConnectTimeout):  # resolving included
        return DownloadFailed(f"cannot connect to {target.shown} within {timeout:g} s")
    if isinstance(error, httpx.ReadTimeout):
        return DownloadFailed(f"no data from {target.shown} for {timeout:g} s")
    if _caused_by(error, socket.gaierror):
        return DownloadFailed(f"cannot resolve {target.origin[1]}")
    if _caused_by(error, ConnectionRefusedError):
        return DownloadFailed(f"connection refused by {target.shown}")
    # TLS failures among them: "[SSL: CERTIFICATE_VERIFY_FAILED] ...".
    return DownloadFailed(f"cannot fetch {target.shown}: {str(error) or type(error).__name__}")


class Download:
    """An opened download. `size` is the Content-Length, when the server sent one. Iterate it
    (once) for the body in chunks of `read_chunk_size` bytes (the last one shorter); errors on
    the way are DownloadFailed. The iterator ends with the body, however long: a size cap is
    the caller's. Reaching the end, an error or `aclose` (or leaving `async with`) closes the
    connection; call `aclose` when stopping early."""

    def __init__(
        self,
        transport: net.Transport,
        response: httpx.Response,
        url: str,
        settings: ImportSettings,
    ) -> None:
        self._transport = transport
        self._response = response
        self._settings = settings
        # Where the body comes from (after redirects), as messages show it.
        self.url = url
        length = response.headers.get("content-length", "")
        self.size: int | None = int(length) if length.isdigit() else None
        self._chunks = self._read()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def _read(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.aiter_raw(self._settings.read_chunk_size):
                yield chunk
        except httpx.ReadTimeout as error:
            raise DownloadFailed(
                f"no data from {self.url} for {self._settings.timeout:g} s "
                f"(after {self._response.num_bytes_downloaded} bytes)"
            ) from error
        except httpx.TransportError as error:  # reset, or closed before Content-Length
            total = "" if self.size is None else f" of {self.size}"
            raise DownloadFailed(
                f"{self.url} broke off after {self._response.num_bytes_downloaded}{total} bytes"
            ) from error
        finally:
            await self._release()

    async def _release(self) -> None:
        await self._response.aclose()
        await self._transport.aclose()

    async def aclose(self) -> None:
        await self._chunks.aclose()  # a generator never started runs no finally
        await self._release()

    async def __aenter__(self) -> Download:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _get(
    transport: net.Transport, target: _Target, settings: ImportSettings
) -> tuple[httpx.Response, _Target]:
    """The response to GET `target` once redirects are followed (streaming: the caller closes
    it), and the target that gave it.

    Straight to the transport, not through an httpx client: a client parses each Location
    itself (refusing some that the filters would read, and report, differently) and keeps
    cookies across hops; here every hop is this function's."""
    first = credentials = target  # credentials: the target whose origin the auth belongs to
    redirects = 0
    while True:
        headers = {"User-Agent": "Glint", "Accept-Encoding": "identity"}
        if credentials.authorization is not None and target.origin == credentials.origin:
            headers["Authorization"] = credentials.authorization
        request = httpx.Request(
            "GET",
            target.url,
            headers=headers,
            extensions={"timeout": httpx.Timeout(settings.timeout).as_dict()},
        )
        try:
            response = await transport.handle_async_request(request)
        except net.NonPublicAddress as error:  # from the backend, for a name
            raise DownloadFailed(f"{error}, which is not allowed") from None
        except httpx.TransportError as error:
            raise _unreachable(target, error, settings.timeout) from error
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or location is None:
            return response, target
        await response.aclose()
        if redirects == settings.max_redirects:
            raise DownloadFailed(f"more than {redirects} redirects from {first.shown}")
        redirects += 1
        next_uri = urllib.parse.urljoin(str(target.url), location)
        hop = _filtered(next_uri, settings)
        if hop is None:
            raise DownloadFailed(
                f"{target.shown} redirected to {_shown(next_uri)}, which does not pass filtering"
            )
        if target.url.scheme == "https" and hop.url.scheme == "http":
            raise DownloadFailed(f"{target.shown} redirected to {hop.shown}, down from https")
        log.debug("web-download: %s redirects to %s", target.shown, hop.shown)
        if hop.authorization is not None:
            credentials = hop
        target = hop


async def open_download(
    settings: ImportSettings, uri: str, max_size: int | None = None
) -> Download:
    """`uri`'s body, opened (see Download). DownloadFailed when it does not pass filtering (the
    settings may have changed since check_uri), cannot be fetched, or says it is longer than
    `max_size` bytes."""
    target = _filtered(uri, settings)
    if target is None:
        raise DownloadFailed(f"URI for web-download does not pass filtering: {_shown(uri)}")
    try:
        tls = net.ssl_context(settings.verify)
    except OSError as error:  # a CA bundle that was readable at start-up
        raise DownloadFailed(f"cannot load the CA bundle {settings.verify}: {error}") from error
    # A pool per download: its one connection lives as long as the download.
    transport = net.Transport(tls, net.CheckedBackend(trusted_hosts=settings.allowed_hosts))
    try:
        response, target = await _get(transport, target, settings)
    except BaseException:
        await transport.aclose()
        raise
    download = Download(transport, response, target.shown, settings)
    failure = None
    if response.status_code != 200:
        failure = DownloadFailed(f"HTTP {response.status_code} from {target.shown}")
    elif max_size is not None and download.size is not None and download.size > max_size:
        failure = DownloadFailed(
            f"{target.shown} is {download.size} bytes long, more than the maximum image size "
            f"of {max_size} bytes"
        )
    if failure is not None:
        await download.aclose()
        raise failure
    return download
