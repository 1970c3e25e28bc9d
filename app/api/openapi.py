"""The OpenAPI document: FastAPI's, plus the request models that routes read themselves."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.api.v2.schemas import (
    ImageCreateV2,
    MemberCreateV2,
    MemberUpdateV2,
    PatchOperationV2,
)
from app.config import default_settings

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
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render_document() -> str:
    """The committed `openapi/v2.json`: stable text, independent of the environment."""
    from app.db.engine import Database
    from app.main import create_app

    app = create_app(default_settings(), database=Database("sqlite://"))
    return json.dumps(app.openapi(), indent=2) + "\n"
