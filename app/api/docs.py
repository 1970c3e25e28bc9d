"""The API's own documentation: the OpenAPI document at /openapi.json (FastAPI's, plus the request
models that routes read themselves and what every operation shares), Swagger UI at /docs and
ReDoc at /redoc, served from Glint itself so that they work with no internet access.

app.main installs both. The committed openapi/v2.json is rendered by app.api.openapi, which builds
a whole app: that one imports app.main, so app.main must not import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from app.api.v2.responses import error_responses
from app.api.v2.schemas import (
    ImageCreateV2,
    ImageImportV2,
    LocationCreateV2,
    MemberCreateV2,
    MemberUpdateV2,
    patch_operation_schemas,
)

_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_PREFIX = "/docs/assets"
_REQUEST_MODELS = (
    ImageCreateV2,
    ImageImportV2,
    LocationCreateV2,
    MemberCreateV2,
    MemberUpdateV2,
)
_ERROR_BODY = {"$ref": "#/components/schemas/GlintErrorBody"}
# Every route can answer these: the edge refuses a malformed URL or a body where none belongs
# (400) and oversized headers (431), and answers an unexpected failure with 500.
_EDGE_ERRORS = error_responses(400, 431, 500)
_REQUEST_ID = "x-openstack-request-id"
_REQUEST_ID_PARAMETER = {
    "name": _REQUEST_ID,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 64},
    "description": "An id for this request, to find it in the logs (`req-` is prefixed when "
    "missing); without it the server makes one. Limited by limits.max_request_id_length.",
}
_REQUEST_ID_HEADER = {
    "description": "The request's id (the caller's, or one the server made), as in its logs",
    "schema": {"type": "string"},
}
_SECURITY_SCHEMES = {
    "token": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": "A Keystone token, checked by the auth_token middleware in front of "
        "Glint (or by Glint's keystone strategy).",
    },
    **{
        scheme: {"type": "apiKey", "in": "header", "name": header, "description": description}
        for scheme, header, description in (
            (
                "identityStatus",
                "X-Identity-Status",
                "`Confirmed` when the other identity headers are to be trusted; any other "
                "value is 401.",
            ),
            ("projectId", "X-Project-Id", "The caller's project (or X-Tenant-Id)."),
            ("userId", "X-User-Id", "The caller."),
            ("roles", "X-Roles", "The caller's roles, comma-separated: reader, member, admin."),
        )
    },
}
# No identity at all is allowed too: with the noauth strategy such a request acts as the
# configured default identity.
_SECURITY: list[dict[str, list[str]]] = [
    {},
    {"token": []},
    {"identityStatus": [], "projectId": [], "userId": [], "roles": []},
]
_DESCRIPTION = """

Errors come in the media type the request's `Accept` asks for, as Glance sends them: JSON
(`Accept: application/json`, the `GlintErrorBody` schema), an HTML page (`*/*` or `text/html`),
or plain text (no `Accept`). Every response carries `x-openstack-request-id`.

Identity: behind Keystone's auth_token middleware, send `X-Auth-Token`; with the `noauth`
strategy, either no identity (the configured default identity) or the headers auth_token sets:
`X-Identity-Status: Confirmed`, `X-Project-Id`, `X-User-Id`, `X-Roles`."""


def operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def build(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=(app.description or "") + _DESCRIPTION,
        routes=app.routes,
    )
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _complete(operation, identified=path.startswith("/v2/"))
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 bodies
        schemas.pop(unused, None)
    for model in _REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas.update(patch_operation_schemas())
    components["securitySchemes"] = _SECURITY_SCHEMES
    document["security"] = _SECURITY
    return document


def _complete(operation: dict[str, Any], *, identified: bool) -> None:
    """What every operation shares: the edge's errors, each error in the three media types
    the server negotiates, and the request id; outside the API proper, no identity."""
    responses = operation.setdefault("responses", {})
    # Request validation errors are answered 400 the Glance way (app.api.errors), never 422.
    responses.pop("422", None)
    for code, response in _EDGE_ERRORS.items():
        responses.setdefault(str(code), {"description": response["description"]})
    for code, response in responses.items():
        if code[0] in "45":
            response["content"] = {
                "application/json": {"schema": _ERROR_BODY},
                "text/html": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            }
        response.setdefault("headers", {})[_REQUEST_ID] = _REQUEST_ID_HEADER
    operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)
    if not identified:
        operation["security"] = []  # overrides the document's: no identity is looked at
    # Status codes in order, as a reader expects them.
    operation["responses"] = dict(sorted(responses.items()))


def install(app: FastAPI) -> None:
    """/openapi.json built by `build` (once, on first use) and the Swagger UI at /docs."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(_PREFIX, StaticFiles(directory=_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Glint image service",
            swagger_js_url=f"{_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{_PREFIX}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Glint image service",
            redoc_js_url=f"{_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{_PREFIX}/favicon.png",
            with_google_fonts=False,
        )
