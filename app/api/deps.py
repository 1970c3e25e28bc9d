"""Dependencies shared by the routers: who is calling, the services, and request bodies."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Depends, Request

from app.api.v2.schemas import ImageView
from app.auth import AuthStrategy
from app.context import RequestContext
from app.errors import BadRequest, PayloadTooLarge
from app.images.data import ImageDataService
from app.images.imports import ImportService
from app.images.members import MemberService
from app.images.service import ImageService
from app.images.stores import StoreCatalog
from app.tasks.service import TaskService


# These are `async` only so that FastAPI calls them inline: a plain `def` dependency costs a
# thread-pool round trip per request.
async def get_context(request: Request) -> RequestContext:
    auth: AuthStrategy = request.app.state.auth
    return await auth.authenticate(request.headers)


async def get_image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


async def get_data_service(request: Request) -> ImageDataService:
    service: ImageDataService = request.app.state.data_service
    return service


async def get_import_service(request: Request) -> ImportService:
    service: ImportService = request.app.state.import_service
    return service


async def get_member_service(request: Request) -> MemberService:
    service: MemberService = request.app.state.member_service
    return service


async def get_task_service(request: Request) -> TaskService:
    service: TaskService = request.app.state.task_service
    return service


async def get_store_catalog(request: Request) -> StoreCatalog:
    catalog: StoreCatalog = request.app.state.store_catalog
    return catalog


async def get_image_view(request: Request) -> ImageView:
    view: ImageView = request.app.state.image_view
    return view


async def reject_unexpected_body(request: Request) -> None:
    """A body on GET/HEAD/DELETE is 400, as on Glance's `body_reject` routes: only once the
    route is known, so an unrouted method stays 405."""
    if request.method not in ("GET", "HEAD", "DELETE"):
        return
    length = request.headers.get("content-length", "").strip()
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if length not in ("", "0") or chunked:
        raise BadRequest("A body is not expected with this request.")


ContextDep = Annotated[RequestContext, Depends(get_context)]
ImageServiceDep = Annotated[ImageService, Depends(get_image_service)]
MemberServiceDep = Annotated[MemberService, Depends(get_member_service)]
ImportServiceDep = Annotated[ImportService, Depends(get_import_service)]
ImageDataServiceDep = Annotated[ImageDataService, Depends(get_data_service)]
TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
StoreCatalogDep = Annotated[StoreCatalog, Depends(get_store_catalog)]
ImageViewDep = Annotated[ImageView, Depends(get_image_view)]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# No database stores these faithfully: PostgreSQL refuses NUL, and a lone surrogate (which JSON's
# `\ud800` escape, or CESU-8 bytes, can produce) cannot be encoded to UTF-8 at all.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


async def read_json(request: Request) -> Any:
    """The request body as JSON, with Glance's messages; bounded in size and depth, and with
    only strings that every database can store."""
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
    _refuse_unstorable(document)
    return document


def _unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL characters are not allowed."
    return f"U+{ord(found.group()):04X} is a lone UTF-16 surrogate, not a character."


def _refuse_unstorable(document: Any) -> None:
    # Iterative, so that a deeply nested document cannot exhaust the stack.
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            problem = _unstorable(item)
            if problem is not None:
                field = _field(document, where) or "request body"
                raise BadRequest(f"Invalid value for '{field}': {problem}")
        elif isinstance(item, dict):
            for key, value in item.items():
                problem = _unstorable(key)
                if problem is not None:
                    field = _field(document, where)
                    inside = f" in '{field}'" if field else ""
                    raise BadRequest(f"Invalid property name{inside}: {problem}")
                pending.append((value, (*where, key)))
        elif isinstance(item, list):
            pending.extend((value, (*where, index)) for index, value in enumerate(item))


def _field(document: Any, where: tuple[str | int, ...]) -> str:
    """What a client calls the place `where` in `document` (`name`, `tags`, `locations/url`;
    for a JSON-patch operation's value, the property it patches), or "" for the top level."""
    if len(where) >= 2 and isinstance(where[0], int) and where[1] == "value":
        target = document[where[0]].get("path")
        if isinstance(target, str):
            where = (target.lstrip("/"), *where[2:])
    field = "/".join(part for part in where if isinstance(part, str))
    # The message must itself be storable and sendable.
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", field)


async def read_json_object(request: Request) -> dict[str, Any]:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise BadRequest("Unexpected body type. Expected dict.")
    return document
