"""Dependencies shared by the routers: who is calling, the services, and request bodies."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request

from app.context import RequestContext
from app.errors import BadRequest, PayloadTooLarge
from app.images.data import ImageDataService
from app.images.members import MemberService
from app.images.service import ImageService


# These are `async` only so that FastAPI calls them inline: a plain `def` dependency costs a
# thread-pool round trip per request.
async def get_context(request: Request) -> RequestContext:
    ctx: RequestContext = request.app.state.auth.authenticate(request.headers)
    return ctx


async def get_image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


async def get_data_service(request: Request) -> ImageDataService:
    service: ImageDataService = request.app.state.data_service
    return service


async def get_member_service(request: Request) -> MemberService:
    service: MemberService = request.app.state.member_service
    return service


ContextDep = Annotated[RequestContext, Depends(get_context)]
ImageServiceDep = Annotated[ImageService, Depends(get_image_service)]
MemberServiceDep = Annotated[MemberService, Depends(get_member_service)]
ImageDataServiceDep = Annotated[ImageDataService, Depends(get_data_service)]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The request body as JSON, with Glance's messages; bounded in size and depth."""
    limit: int = request.app.state.settings.limits.max_json_body
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge()
    if not body:
        raise BadRequest("Body expected in request.")
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("Malformed JSON in request body.") from exc
    if _has_nul(document):
        # No database stores it the same way (PostgreSQL refuses it outright).
        raise BadRequest("Request body contains a NUL character.")
    return document


def _has_nul(document: Any) -> bool:
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


async def read_json_object(request: Request) -> dict[str, Any]:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise BadRequest("Unexpected body type. Expected dict.")
    return document
