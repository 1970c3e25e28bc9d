"""Edge checks that apply to every request, before routing (pure ASGI for speed).

- `x-openstack-request-id` on every response (the caller's, `req-` prefixed, or a new one);
- an unexpected exception answered here as Glance's 500, with the request id; every 5xx also
  says `Connection: close`, so a keep-alive client does not reuse a connection the server drops;
- version aliases `/v2.N/...` rewritten to `/v2/...`, unknown versions answered with the versions
  document (300), as Glance's version negotiation does;
- hostile headers refused: too long, too many, or identity headers given twice;
- a URL with a NUL character or with percent-escapes that are not UTF-8 refused (decoding would
  silently turn them into U+FFFD), and one whose path ends in a newline answered 404: the
  router's patterns end in `$`, which matches before a final newline, so `/v2/images%0A` would
  list images.

A body on GET/HEAD/DELETE is refused after routing (app.api.deps.reject_unexpected_body), so an
unrouted method is still 405.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.api.errors import render
from app.errors import BadRequest, GlintError, HeaderFieldsTooLarge, NotFound
from app.metrics import NO_METRICS, Metrics

# fullmatch and DOTALL: an id may contain a newline (`%0A`), which `.` and `$` would stop at.
_VERSIONED = re.compile(r"/v(\d+)(?:\.(\d+))?(/.*)?", re.DOTALL)
_VERSION_MEDIA_TYPE = re.compile(rb"application/vnd\.openstack\.images-v(\d+)(?:\.(\d+))?")
# Served outside the versioned API; any other unversioned path gets the versions document.
_UNVERSIONED = ("/", "/versions", "/healthcheck", "/docs", "/redoc", "/openapi.json", "/metrics")
_UNIQUE_HEADERS = frozenset(
    {
        b"x-identity-status",
        b"x-project-id",
        b"x-tenant-id",
        b"x-tenant",
        b"x-user-id",
        b"x-user",
        b"x-roles",
        b"x-role",
        b"x-openstack-request-id",
        b"content-length",
        b"content-type",
        b"x-openstack-image-size",
    }
)
_MAX_HEADERS = 100
# The image a request is about, for its log lines: /v2/images/{id}..., as sent (percent-escaped,
# so a hostile id cannot forge log lines); ids longer than any real one are not taken.
_IMAGE_PATH = re.compile(rb"^/v\d+(?:\.\d+)?/images/([0-9A-Za-z._~%-]{1,64})(?:/|$)")
# Access lines show at most this much of a request target (it may be up to 64 KiB).
_MAX_LOGGED_TARGET = 2048
# Where the scope carries the request's _Exchange (shared with any copy made while routing).
_EXCHANGE = "glint.exchange"

log = logging.getLogger(__name__)
access_log = logging.getLogger(logs.ACCESS_LOGGER)


@dataclass(slots=True)
class _Exchange:
    """What the access line and the metrics say about a request, filled in as it goes."""

    status: int | None = None
    sent: int = 0
    route: str | None = None


def _noting_the_route(app: ASGIApp) -> ASGIApp:
    """`app`, noting the template of the route that served a request (as Starlette's router
    leaves it in the scope, which may be a copy of the edge's) in the request's _Exchange."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            route = scope.get("route")
            exchange = scope.get(_EXCHANGE)
            if exchange is not None and route is not None:
                exchange.route = getattr(route, "path", None)

    return routed


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        v2_minors: frozenset[int],
        versions_response: Callable[[Request], Response],
        max_request_id_length: int,
        max_header_line: int,
        metrics: Metrics = NO_METRICS,
    ):
        self.app = _noting_the_route(app)
        self.metrics = metrics
        self.v2_minors = v2_minors
        self.versions_response = versions_response
        self.max_request_id_length = max_request_id_length
        self.max_header_line = max_header_line

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, error = self._check_headers(scope["headers"])
        response_started = False
        exchange = scope[_EXCHANGE] = _Exchange()
        target = _target(scope)
        image = _IMAGE_PATH.match(target)
        # Every line logged while this request runs names it (and its image).
        context = logs.bind(
            request_id=request_id.decode("latin-1"),
            image_id=image[1].decode("ascii") if image else None,
        )

        async def send_with_request_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                exchange.status = message["status"]
                headers = [*message.get("headers", []), (b"x-openstack-request-id", request_id)]
                if message["status"] >= 500:
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                exchange.sent += len(message.get("body", b""))
            await send(message)

        try:
            # Starlette's ServerErrorMiddleware, outside this one, would answer without the
            # request id and re-raise, and uvicorn would then drop the connection under a
            # keep-alive client.
            try:
                await self._route(scope, receive, send_with_request_id, error)
            except Exception:
                if response_started:
                    raise  # too late for an error response: uvicorn cuts the connection
                log.exception(
                    "unexpected error on %s %s (%s)",
                    scope["method"],
                    scope["path"],
                    request_id.decode("latin-1"),
                )
                await render(GlintError(), Request(scope))(scope, receive, send_with_request_id)
        finally:
            self._ended(scope, target, exchange, started)
        # Only now: when an error escapes, uvicorn logs it from this task, in this context. The
        # task ends with the request (uvicorn runs each request in a task of its own).
        logs.unbind(context)

    def _ended(self, scope: Scope, target: bytes, exchange: _Exchange, started: float) -> None:
        """The request's access line and metrics."""
        seconds = time.perf_counter() - started
        self.metrics.request(scope["method"], exchange.route, exchange.status, seconds)
        # A load balancer's or container runtime's probe every few seconds would drown the
        # log; a failing one is news.
        probe = exchange.route == "/healthcheck" and exchange.status == 200
        level = logging.DEBUG if probe else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        shown = target.decode("latin-1")
        if len(shown) > _MAX_LOGGED_TARGET:
            shown = shown[: _MAX_LOGGED_TARGET - 3] + "..."
        duration_ms = round(seconds * 1000, 1)
        access_log.log(
            level,
            "%s %s %s %d bytes %.1f ms",
            scope["method"],
            shown,
            "-" if exchange.status is None else exchange.status,
            exchange.sent,
            duration_ms,
            extra={
                "method": scope["method"],
                "path": shown,
                "status": exchange.status,
                "bytes": exchange.sent,
                "duration_ms": duration_ms,
            },
        )

    def _check_headers(self, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, GlintError | None]:
        """The request id (the caller's, `req-` prefixed, or a new one), and what is wrong with
        the headers if anything is."""
        request_id: bytes | None = None
        seen: set[bytes] = set()
        error: GlintError | None = None
        if len(headers) > _MAX_HEADERS:
            error = HeaderFieldsTooLarge(f"More than {_MAX_HEADERS} request headers.")
        for name, value in headers:
            if len(name) + len(value) > self.max_header_line:
                error = HeaderFieldsTooLarge(f"Header {name.decode('latin-1')} is too long.")
            if name in _UNIQUE_HEADERS:
                if name in seen:
                    error = BadRequest(f"Header {name.decode('latin-1')} may be given only once.")
                seen.add(name)
            if name == b"x-openstack-request-id":
                if len(value) > self.max_request_id_length:
                    error = HeaderFieldsTooLarge()
                request_id = value if value.startswith(b"req-") else b"req-" + value
        return request_id or f"req-{uuid.uuid4()}".encode(), error

    async def _route(
        self, scope: Scope, receive: Receive, send: Send, error: GlintError | None
    ) -> None:
        if error is None:
            error = _url_rejected(scope)
        if error is not None:
            await render(error, Request(scope))(scope, receive, send)
            return
        path = self._api_path(scope)
        if path is None:
            await self.versions_response(Request(scope))(scope, receive, send)
            return
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": None}
        await self.app(scope, receive, send)

    def _api_path(self, scope: Scope) -> str | None:
        """The path to route, with any version alias resolved; None for an unknown version."""
        path: str = scope["path"]
        if path in _UNVERSIONED or path.startswith("/docs/"):
            return path
        match = _VERSIONED.fullmatch(path)
        if match:
            major, minor, rest = match.groups()
        else:
            # Version by media type: `Accept: application/vnd.openstack.images-v2.N` on /images.
            accept = dict(scope["headers"]).get(b"accept", b"")
            media = _VERSION_MEDIA_TYPE.search(accept)
            if media is None:
                return None
            major, minor = (part.decode() if part else None for part in media.groups())
            rest = path
        if major != "2" or (minor is not None and int(minor) not in self.v2_minors):
            return None
        return "/v2" + (rest or "")


def _target(scope: Scope) -> bytes:
    """The request target as sent: the path percent-escaped, and the query if there is one."""
    raw_path: bytes | None = scope.get("raw_path")
    path = raw_path if raw_path is not None else scope["path"].encode("utf-8", "replace")
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


def _url_rejected(scope: Scope) -> GlintError | None:
    if scope["path"].endswith("\n"):
        return NotFound()
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
        return BadRequest("Request URL contains a NUL character.")
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None and b"%" in raw_path:
        for segment in raw_path.split(b"/"):
            if not _is_utf8(segment):
                return BadRequest(f"Invalid value in the URL path: {_shown(segment)} is not UTF-8.")
    query: bytes = scope["query_string"]
    if b"%" in query:
        for pair in query.split(b"&"):
            name, _, value = pair.partition(b"=")
            if not _is_utf8(name):
                return BadRequest(f"Invalid query parameter name: {_shown(name)} is not UTF-8.")
            if not _is_utf8(value):
                return BadRequest(
                    f"Invalid value for '{_shown(name)}': {_shown(value)} is not UTF-8."
                )
    return None


def _is_utf8(escaped: bytes) -> bool:
    try:
        unquote_to_bytes(escaped).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _shown(escaped: bytes) -> str:
    """Percent-escaped URL text as the client sent it; safe to echo (ASCII, no NUL)."""
    text = escaped.decode("latin-1")
    return text if len(text) <= 64 else text[:61] + "..."
