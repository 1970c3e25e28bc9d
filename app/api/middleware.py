"""Edge checks that apply to every request, before routing (pure ASGI for speed).

- `x-openstack-request-id` on every response (the caller's, `req-` prefixed, or a new one);
- version aliases `/v2.N/...` rewritten to `/v2/...`, unknown versions answered with the versions
  document (300), as Glance's version negotiation does;
- hostile headers refused: too long, too many, or identity headers given twice;
- a body on GET/HEAD/DELETE refused, as Glance's `body_reject` routes do.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import render
from app.errors import BadRequest, GlintError, HeaderFieldsTooLarge

_VERSIONED = re.compile(r"^/v(\d+)(?:\.(\d+))?(/.*)?$")
_VERSION_MEDIA_TYPE = re.compile(rb"application/vnd\.openstack\.images-v(\d+)(?:\.(\d+))?")
# Served outside the versioned API; any other unversioned path gets the versions document.
_UNVERSIONED = ("/", "/versions", "/healthcheck", "/docs", "/openapi.json")
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


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        v2_minors: frozenset[int],
        versions_response: Callable[[Request], Response],
        max_request_id_length: int,
        max_header_line: int,
    ):
        self.app = app
        self.v2_minors = v2_minors
        self.versions_response = versions_response
        self.max_request_id_length = max_request_id_length
        self.max_header_line = max_header_line

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: bytes | None = None
        seen: set[bytes] = set()
        error: GlintError | None = None
        headers = scope["headers"]
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
        request_id = request_id or f"req-{uuid.uuid4()}".encode()

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-openstack-request-id", request_id),
                ]
            await send(message)

        if error is None:
            error = self._body_rejected(scope)
        if error is None and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            error = BadRequest("Request URL contains a NUL character.")
        if error is not None:
            await render(error, Request(scope))(scope, receive, send_with_request_id)
            return

        path = self._api_path(scope)
        if path is None:
            await self.versions_response(Request(scope))(scope, receive, send_with_request_id)
            return
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": None}
        await self.app(scope, receive, send_with_request_id)

    def _api_path(self, scope: Scope) -> str | None:
        """The path to route, with any version alias resolved; None for an unknown version."""
        path: str = scope["path"]
        if path in _UNVERSIONED or path.startswith("/docs/"):
            return path
        match = _VERSIONED.match(path)
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

    @staticmethod
    def _body_rejected(scope: Scope) -> GlintError | None:
        if scope["method"] not in ("GET", "HEAD", "DELETE"):
            return None
        for name, value in scope["headers"]:
            if (name == b"content-length" and value.strip() not in (b"", b"0")) or (
                name == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return BadRequest("A body is not expected with this request.")
        return None
