"""Interoperable import: `GET /v2/info/import` and `POST /v2/images/{image_id}/import`
(the staging upload, `PUT .../stage`, is with the other data routes in image_data.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, ImportServiceDep, read_json_object
from app.api.v2.responses import (
    ERROR_RESPONSES,
    error_responses,
    json_request_body,
    json_response,
)
from app.api.v2.schemas import ImportInfoV2

router = APIRouter(tags=["imports"], responses=ERROR_RESPONSES)


@router.get(
    "/v2/info/import",
    response_model=ImportInfoV2,
    description="The import methods this service runs (`import.methods`).",
)
def show_import_info(ctx: ContextDep, imports: ImportServiceDep) -> Response:
    del ctx  # any identity may ask
    return json_response(
        {
            "import-methods": {
                "description": "Import methods available.",
                "type": "array",
                "value": list(imports.methods),
            }
        }
    )


@router.post(
    "/v2/images/{image_id}/import",
    status_code=202,
    responses={
        202: {
            "description": "The import runs as a task (`GET /v2/images/{image_id}/tasks`); the "
            "image is `importing` until it ends `active`, or `queued` again if it failed"
        },
        **error_responses(
            (
                400,
                "A malformed body, an unknown method, or a web-download URI that filtering refuses",
            ),
            404,
            (
                409,
                "The image is not in a status the method needs, has no formats, has an "
                "import running, or a store is unknown",
            ),
        ),
    },
    openapi_extra={
        **json_request_body("ImageImportV2"),
        "parameters": [
            {
                "name": "X-Image-Meta-Store",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Multi-store: the store to import into (instead of `stores`).",
            }
        ],
    },
    description="Starts importing data into a `queued` (web-download), staged (glance-direct) "
    "or `active` (copy-image, admins only) image.",
)
async def import_image(
    image_id: str, request: Request, ctx: ContextDep, imports: ImportServiceDep
) -> Response:
    body: dict[str, Any] = await read_json_object(request)
    await run_in_threadpool(
        imports.import_image,
        ctx,
        image_id,
        body,
        store_header=request.headers.get("x-image-meta-store"),
    )
    return Response(status_code=202)
