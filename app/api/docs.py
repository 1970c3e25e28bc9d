"""The API's own documentation: the OpenAPI document at /openapi.json (FastAPI's, plus the request
models that routes read themselves) and Swagger UI at /docs, served from Glint itself so that it
works with no internet access.

app.main installs both. The committed openapi/v2.json is rendered by app.api.openapi, which builds
a whole app: that one imports app.main, so app.main must not import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from app.api.v2.schemas import (
    ImageCreateV2,
    MemberCreateV2,
    MemberUpdateV2,
    PatchOperationV2,
)

_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_PREFIX = "/docs/assets"
_REQUEST_MODELS = (ImageCreateV2, PatchOperationV2, MemberCreateV2, MemberUpdateV2)


def operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def build(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    # Request validation errors are answered 400 the Glance way (app.api.errors), never 422.
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 bodies
        schemas.pop(unused, None)
    for model in _REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return document


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
