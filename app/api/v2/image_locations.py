"""`/v2/images/{image_id}/locations`: Glance's location API (v2.17), for services that keep an
image's data where it already is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, ImageServiceDep, ImageViewDep, read_json_object
from app.api.v2.json_schemas import location_schema, make_validator
from app.api.v2.responses import (
    ERROR_RESPONSES,
    error_responses,
    json_request_body,
    json_response,
)
from app.api.v2.schemas import LocationV2

router = APIRouter(
    prefix="/v2/images/{image_id}/locations",
    tags=["images"],
    responses={**ERROR_RESPONSES, **error_responses(404)},
)
_validate_location = make_validator(location_schema())


@router.post(
    "",
    status_code=202,
    responses={
        202: {"description": "The image is `importing` until its data is hashed"},
        **error_responses(409),
    },
    openapi_extra=json_request_body("LocationCreateV2"),
    description="Sets the data of a `queued` image to what a location holds. A job reads the "
    "data to hash it (and to check it against `validation_data`): the image is `importing` "
    "meanwhile, then `active`, or `queued` again when the data cannot be read or does not "
    "match. Callers without the service role may only name locations of a read-only (http) "
    "store.",
)
async def add_image_location(
    image_id: str, request: Request, ctx: ContextDep, images: ImageServiceDep
) -> Response:
    body: dict[str, Any] = await read_json_object(request)
    _validate_location({"add_location": body})
    await images.add_location(ctx, image_id, body["url"], body.get("validation_data") or {})
    return Response(status_code=202)


@router.get(
    "",
    response_model=list[LocationV2],
    description="Every location of the image, in its order: for services (and admins) only.",
)
async def list_image_locations(
    image_id: str, ctx: ContextDep, images: ImageServiceDep, view: ImageViewDep
) -> Response:
    rows = await run_in_threadpool(images.list_locations, ctx, image_id)
    return json_response([view.location(row) for row in rows])
