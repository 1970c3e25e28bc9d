"""Response helpers shared by the v2 routers."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from app.api.errors import GlintErrorBody

_DESCRIPTIONS = {
    400: "Malformed request: a bad URL, query parameter, header or body",
    401: "No valid identity",
    403: "Not allowed to the caller, or not in the image's current state",
    404: "Not found, or not visible to the caller",
    408: "No data arrived for uploads.idle_timeout seconds",
    409: "Conflict with the current state",
    410: "The image was deleted during the upload",
    413: "Over a quota or size limit",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    431: "Request headers too large",
    500: "Unexpected error (the body names the request id)",
    503: "A store or the database failed",
}


def error_responses(*codes: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with Glint's error body (app.api.docs adds
    its HTML and text forms); a code alone takes the usual description."""
    described = (code if isinstance(code, tuple) else (code, _DESCRIPTIONS[code]) for code in codes)
    return {
        code: {"model": GlintErrorBody, "description": description}
        for code, description in described
    }


# What any v2 call can answer: every call needs an identity that policy allows. Routes add what
# else they can answer; app.api.docs adds 400, 431 and 500, which the edge can answer anywhere.
ERROR_RESPONSES = error_responses(401, 403)


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
    schema_name: str, media_type: str = "application/json", *, many: bool = False
) -> dict[str, Any]:
    """OpenAPI `requestBody` for routes that read their body themselves (to answer malformed
    input the way Glance does) instead of through a FastAPI body parameter; `schema_name` is a
    component that app.api.docs registers."""
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{schema_name}"}
    if many:
        schema = {"type": "array", "items": schema}
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}
