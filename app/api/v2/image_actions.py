"""`/v2/images/{image_id}/actions/{deactivate,reactivate}`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.api.deps import ContextDep, ImageServiceDep
from app.api.v2.responses import ERROR_RESPONSES, error_responses

router = APIRouter(
    prefix="/v2/images/{image_id}/actions",
    tags=["images"],
    responses={**ERROR_RESPONSES, **error_responses(404)},
)


@router.post("/deactivate", status_code=204)
def deactivate_image(image_id: str, ctx: ContextDep, images: ImageServiceDep) -> Response:
    images.deactivate(ctx, image_id)
    return Response(status_code=204)


@router.post("/reactivate", status_code=204)
def reactivate_image(image_id: str, ctx: ContextDep, images: ImageServiceDep) -> Response:
    images.reactivate(ctx, image_id)
    return Response(status_code=204)
