"""`/v2/images/{image_id}/tags/{tag}`: add and remove one tag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from app.api.deps import ContextDep, ImageServiceDep
from app.api.v2.json_schemas import ImageValidatorDep
from app.api.v2.responses import ERROR_RESPONSES, error_responses

router = APIRouter(
    prefix="/v2/images/{image_id}/tags",
    tags=["tags"],
    responses={**ERROR_RESPONSES, **error_responses(404)},
)


# Documented only: the image schema checks the tag, with Glance's message.
_Tag = Annotated[str, Path(json_schema_extra={"maxLength": 255})]


@router.put("/{tag}", status_code=204, responses=error_responses(413))
def add_tag(
    image_id: str,
    tag: _Tag,
    ctx: ContextDep,
    images: ImageServiceDep,
    validate: ImageValidatorDep,
) -> Response:
    validate({"tags": [tag]})
    images.add_tag(ctx, image_id, tag)
    return Response(status_code=204)


@router.delete("/{tag}", status_code=204)
def delete_tag(image_id: str, tag: _Tag, ctx: ContextDep, images: ImageServiceDep) -> Response:
    images.delete_tag(ctx, image_id, tag)
    return Response(status_code=204)
