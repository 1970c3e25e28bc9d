"""Response helpers shared by the v2 routers."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from app.api.errors import GlintErrorBody


def error_responses(*described: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with Glint's error body."""
    return {
        code: {"model": GlintErrorBody, "description": description}
        for code, description in described
    }


# Declared on every v2 router so generated clients get typed errors.
ERROR_RESPONSES = error_responses(
    (400, "Malformed request"),
    (401, "No valid identity"),
    (403, "Not allowed"),
    (404, "Not found, or not visible to the caller"),
    (409, "Conflict with the current state"),
    (413, "Over a quota or limit"),
)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(content, separators=(", ", ": ")),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def json_request_body(
    model: type[BaseModel], media_type: str = "application/json", *, many: bool = False
) -> dict[str, Any]:
    """OpenAPI `requestBody` for routes that read their body themselves (to answer malformed
    input the way Glance does) instead of through a FastAPI body parameter."""
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
    if many:
        schema = {"type": "array", "items": schema}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}
