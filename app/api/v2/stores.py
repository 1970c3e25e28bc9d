"""Glance's multi-store API: `GET /v2/info/stores[/detail]` and
`DELETE /v2/stores/{store_id}/{image_id}`. Each answers 404 without multi-store."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, ImageServiceDep, StoreCatalogDep
from app.api.v2.responses import ERROR_RESPONSES, error_responses, json_response
from app.api.v2.schemas import StoreDetailsV2, StoresV2, store_to_wire

router = APIRouter(tags=["stores"], responses=ERROR_RESPONSES)
_NO_MULTISTORE = (404, "Multi-store is off (fewer than two stores configured)")


@router.get(
    "/v2/info/stores",
    response_model=StoresV2,
    responses=error_responses(_NO_MULTISTORE),
    description="The stores image data can be written to (`X-Image-Meta-Store`) or read from.",
)
def list_stores(ctx: ContextDep, catalog: StoreCatalogDep) -> Response:
    return json_response({"stores": [store_to_wire(e) for e in catalog.list_stores(ctx)]})


@router.get(
    "/v2/info/stores/detail",
    response_model=StoreDetailsV2,
    responses=error_responses(_NO_MULTISTORE),
    description="The stores with their type, weight and settings (never a credential): for "
    "admins and services.",
)
def list_store_details(ctx: ContextDep, catalog: StoreCatalogDep) -> Response:
    entries = catalog.describe_stores(ctx)
    return json_response({"stores": [store_to_wire(e, detailed=True) for e in entries]})


@router.delete(
    "/v2/stores/{store_id}/{image_id}",
    status_code=204,
    responses=error_responses(
        (403, "Not an admin, or the store holds the image's only copy"),
        (404, "Multi-store is off, the image is not visible, or not in that store"),
        (409, "No such store, or the image is not active"),
    ),
    description="Removes the image's copy from one store; its other copies stay.",
)
async def delete_image_from_store(
    store_id: str, image_id: str, ctx: ContextDep, images: ImageServiceDep
) -> Response:
    await run_in_threadpool(images.delete_from_store, ctx, store_id, image_id)
    return Response(status_code=204)
