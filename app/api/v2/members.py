"""`/v2/images/{image_id}/members`: share an image with other projects."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, MemberServiceDep, read_json_object
from app.api.v2.responses import (
    ERROR_RESPONSES,
    error_responses,
    json_request_body,
    json_response,
)
from app.api.v2.schemas import MembersV2, MemberV2, member_to_wire
from app.errors import BadRequest

router = APIRouter(
    prefix="/v2/images/{image_id}/members",
    tags=["members"],
    responses={**ERROR_RESPONSES, **error_responses(404)},
)


@router.get("", response_model=MembersV2)
def list_members(image_id: str, ctx: ContextDep, members: MemberServiceDep) -> Response:
    found = members.list_members(ctx, image_id)
    return json_response(
        {"members": [member_to_wire(m) for m in found], "schema": "/v2/schemas/members"}
    )


@router.post(
    "",
    response_model=MemberV2,
    responses=error_responses(409, 413),
    openapi_extra=json_request_body("MemberCreateV2"),
)
async def create_member(
    image_id: str, request: Request, ctx: ContextDep, members: MemberServiceDep
) -> Response:
    member_id = (await read_json_object(request)).get("member")
    if not isinstance(member_id, str) or not member_id:
        raise BadRequest("Member to be added not specified")
    if len(member_id) > 255:
        raise BadRequest("Member id is longer than 255 characters.")
    member = await run_in_threadpool(members.create, ctx, image_id, member_id)
    return json_response(member_to_wire(member))


@router.get("/{member_id}", response_model=MemberV2)
def show_member(
    image_id: str, member_id: str, ctx: ContextDep, members: MemberServiceDep
) -> Response:
    return json_response(member_to_wire(members.get(ctx, image_id, member_id)))


@router.put(
    "/{member_id}", response_model=MemberV2, openapi_extra=json_request_body("MemberUpdateV2")
)
async def update_member(
    image_id: str, member_id: str, request: Request, ctx: ContextDep, members: MemberServiceDep
) -> Response:
    body = await read_json_object(request)
    if "status" not in body:
        raise BadRequest("Status not specified")
    member = await run_in_threadpool(members.update, ctx, image_id, member_id, body["status"])
    return json_response(member_to_wire(member))


@router.delete("/{member_id}", status_code=204)
def delete_member(
    image_id: str, member_id: str, ctx: ContextDep, members: MemberServiceDep
) -> Response:
    members.delete(ctx, image_id, member_id)
    return Response(status_code=204)
