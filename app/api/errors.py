"""Error responses exactly as Glance (webob) renders them, chosen by the request's Accept header.

`*/*` or `text/html` gets an HTML page, `application/json` a JSON object, no Accept plain text.
python-glanceclient sends `Accept: */*` and parses the HTML; FastAPI's `{"detail": ...}` would
crash it, so every error in the app goes through here (unexpected exceptions through `render`,
from the edge middleware, which also adds the request id).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import BadRequest, GlintError, MethodNotAllowed, NotFound, UnsupportedMediaType


class GlintErrorBody(BaseModel):
    """The JSON error body (sent for `Accept: application/json`; HTML or text otherwise)."""

    message: str
    code: str
    title: str


_OFFERS = ("text/html", "application/json")
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


def negotiate(accept: str | None) -> str:
    """webob's acceptable_offers over (text/html, application/json); plain text otherwise."""
    if not accept:
        return "text/plain"
    best: tuple[float, int, str] | None = None
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        for index, offer in enumerate(_OFFERS):
            offer_type = offer.split("/")[0]
            if media in (offer, "*/*", f"{offer_type}/*") and quality > 0:
                candidate = (-quality, index, offer)
                if best is None or candidate < best:
                    best = candidate
    return best[2] if best else "text/plain"


# webob's titles, where they differ from the standard reason phrases.
_WEBOB_TITLES = {
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    416: "Request Range Not Satisfiable",
}


def _status_line(status_code: int) -> tuple[str, str]:
    title = _WEBOB_TITLES.get(status_code)
    if title is None:
        try:
            title = HTTPStatus(status_code).phrase
        except ValueError:
            title = "Error"
    return f"{status_code} {title}", title


def _body(exc: GlintError, method: str, escape: Callable[[str], str]) -> str:
    """webob's body template for the error, with the message and detail escaped."""
    message, detail = escape(exc.message), escape(exc.detail)
    if isinstance(exc, MethodNotAllowed):
        return f"The method {method} is not allowed for this resource. <br /><br />\n{detail}"
    if isinstance(exc, UnsupportedMediaType):
        return f"{message}\n<br /><br />\n{detail}"
    return f"{message}<br /><br />\n{detail}\n\n"


def _unescaped(text: str) -> str:
    return text


def render(exc: GlintError, request: Request) -> Response:
    status, title = _status_line(exc.status_code)
    media_type = negotiate(request.headers.get("accept"))
    if media_type == "text/html":
        body = (
            f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  <h1>{status}</h1>\n"
            f"  {_body(exc, request.method, html.escape)}\n </body>\n</html>"
        )
        content_type = "text/html; charset=UTF-8"
    elif media_type == "application/json":
        message = _body(exc, request.method, _unescaped)
        body = json.dumps({"message": message, "code": status, "title": title})
        content_type = "application/json"
    else:
        text = _body(exc, request.method, _unescaped).replace("<br />", "\n")
        body = f"{status}\n\n{text}"
        content_type = "text/plain; charset=UTF-8"
    return Response(body, status_code=exc.status_code, headers=exc.headers, media_type=content_type)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method routed for this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in app.state.api_routes:
        if route.path_regex.match(path):
            methods |= route.methods
    return [m for m in _METHOD_ORDER if m in methods]


def install(app: FastAPI) -> None:
    @app.exception_handler(GlintError)
    async def _glint_error(request: Request, exc: GlintError) -> Response:
        return render(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, request.url.path))
            return render(MethodNotAllowed(headers={"Allow": allow}), request)
        if exc.status_code == 404:
            return render(NotFound(), request)
        error = GlintError(exc.detail if isinstance(exc.detail, str) else None)
        error.status_code = exc.status_code
        return render(error, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return render(BadRequest(f"Invalid request: {problems}"), request)
