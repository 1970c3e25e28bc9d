"""`/v2/images`: create, list, show, update (JSON patch) and delete image records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, ImageServiceDep, ImageViewDep, read_json, read_json_object
from app.api.v2 import list_params, patch
from app.api.v2.json_schemas import ImageValidator, ImageValidatorDep
from app.api.v2.responses import (
    ERROR_RESPONSES,
    error_responses,
    json_request_body,
    json_response,
)
from app.api.v2.schemas import ImagesV2, ImageV2, image_to_wire
from app.context import RequestContext
from app.images import attributes
from app.images.service import NewImage

router = APIRouter(prefix="/v2/images", tags=["images"], responses=ERROR_RESPONSES)
_STRING = {"type": "string"}


def new_image(ctx: RequestContext, body: dict[str, Any], validate: ImageValidator) -> NewImage:
    """A create body, checked as Glance's request deserializer checks it (settable names, then
    the image schema), as the domain's new image."""
    for name in body:
        attributes.check_settable(name, creating=True)
    validate(body)
    columns = {
        name: patch.integral(name, body[name])
        for name in attributes.WRITABLE_COLUMNS
        if name in body
    }
    columns.setdefault("owner", ctx.project_id)
    return NewImage(
        id=body.get("id"),
        tags=body.get("tags", []),
        properties={k: v for k, v in body.items() if k not in attributes.BASE},
        **columns,
    )


@router.post(
    "",
    status_code=201,
    response_model=ImageV2,
    responses={
        201: {"headers": {"Location": {"description": "The image's URL", "schema": _STRING}}},
        **error_responses(409, 413),
    },
    openapi_extra=json_request_body("ImageCreateV2"),
)
async def create_image(
    request: Request,
    ctx: ContextDep,
    images: ImageServiceDep,
    validate: ImageValidatorDep,
    view: ImageViewDep,
) -> Response:
    new = new_image(ctx, await read_json_object(request), validate)
    record = await run_in_threadpool(images.create, ctx, new)
    headers = {"Location": str(request.base_url).rstrip("/") + f"/v2/images/{record.image.id}"}
    headers.update(request.app.state.image_create_headers)
    return json_response(image_to_wire(record, view), 201, headers)


@router.get(
    "",
    response_model=ImagesV2,
    openapi_extra={"parameters": list_params.OPENAPI_PARAMETERS},
    description="Images visible to the caller, a page at a time (follow `next`). Any query "
    "parameter not listed here filters on the custom property of that name, with the same "
    "`in:`/`eq:` syntax as the core filters.",
)
def list_images(
    request: Request, ctx: ContextDep, images: ImageServiceDep, view: ImageViewDep
) -> Response:
    params = list(request.query_params.multi_items())
    query = list_params.parse(params, request.app.state.settings.limits)
    records = images.list_images(ctx, query)
    last = records[-1].image.id if records else None
    links = list_params.page_links("/v2/images", params, last, full=len(records) == query.limit)
    body = {
        "images": [image_to_wire(record, view) for record in records],
        "first": links["first"],
        "schema": "/v2/schemas/images",
    }
    if "next" in links:
        body["next"] = links["next"]
    return json_response(body)


@router.get("/{image_id}", response_model=ImageV2, responses=error_responses(404))
def show_image(
    image_id: str, ctx: ContextDep, images: ImageServiceDep, view: ImageViewDep
) -> Response:
    return json_response(image_to_wire(images.get(ctx, image_id), view))


@router.patch(
    "/{image_id}",
    response_model=ImageV2,
    responses=error_responses(
        404,
        409,
        413,
        (415, "Not a JSON-patch media type"),
        (503, "The store of a new location could not be reached"),
    ),
    openapi_extra=json_request_body("PatchOperationV2", patch.PATCH_V21, many=True),
)
async def update_image(
    image_id: str,
    request: Request,
    ctx: ContextDep,
    images: ImageServiceDep,
    validate: ImageValidatorDep,
    view: ImageViewDep,
) -> Response:
    flavour = patch.media_type(request.headers.get("content-type"))
    changes = patch.parse(flavour, await read_json(request), validate)
    record = await images.update(ctx, image_id, changes)
    return json_response(image_to_wire(record, view))


@router.delete(
    "/{image_id}",
    status_code=204,
    responses=error_responses(
        (400, "Malformed request, or delayed delete is on and the image is deactivated"), 404, 409
    ),
)
def delete_image(image_id: str, ctx: ContextDep, images: ImageServiceDep) -> Response:
    images.delete(ctx, image_id)
    return Response(status_code=204)
