"""`/v2/tasks` (Glance's task API) and `/v2/images/{image_id}/tasks` (an image's tasks, v2.12).

Who sees which task is app.tasks.service's rule (a project its own, an admin all; Glance: admins
only). `POST /v2/tasks`, the legacy import, stays admin-only: it creates the image its
`image_properties` describe, checked as `POST /v2/images` checks a body, and imports `import_from`
into it as web-download does (app.images.imports).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.deps import ContextDep, ImportServiceDep, TaskServiceDep, read_json_object
from app.api.v2 import list_params
from app.api.v2.images import new_image
from app.api.v2.json_schemas import ImageValidatorDep
from app.api.v2.responses import ERROR_RESPONSES, error_responses, json_response
from app.api.v2.schemas import ImageTasksV2, TasksV2, TaskV2, timestamp
from app.config import LimitSettings
from app.errors import BadRequest
from app.images.imports import LegacyImport
from app.images.query import SortDir
from app.tasks.models import Task
from app.tasks.query import EXACT_FILTERS, SORT_KEYS, STATUSES, TYPES, TaskListQuery

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)
_STRING = {"type": "string"}


def task_stub_to_wire(task: Task) -> dict[str, Any]:
    """A task as lists show it, in Glance's key order."""
    body: dict[str, Any] = {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "owner": task.owner,
        "created_at": timestamp(task.created_at),
        "updated_at": timestamp(task.updated_at),
        "self": f"/v2/tasks/{task.id}",
        "schema": "/v2/schemas/task",
    }
    if task.expires_at:
        body["expires_at"] = timestamp(task.expires_at)
    return body


def task_to_wire(task: Task) -> dict[str, Any]:
    """A task as a show (and a create) answers it, in Glance's key order."""
    body: dict[str, Any] = {
        "id": task.id,
        "input": task.input,
        "type": task.type,
        "status": task.status,
        "owner": task.owner,
        "message": task.message,
        "result": task.result,
        "created_at": timestamp(task.created_at),
        "updated_at": timestamp(task.updated_at),
        "self": f"/v2/tasks/{task.id}",
        "schema": "/v2/schemas/task",
    }
    for name in ("image_id", "request_id", "user_id"):
        if getattr(task, name):
            body[name] = getattr(task, name)
    if task.expires_at:
        body["expires_at"] = timestamp(task.expires_at)
    return body


def _row_time(moment: datetime | None) -> str | None:
    # How Glance's JSON encoder (oslo's to_primitive) writes a naive datetime.
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def image_task_to_wire(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "owner": task.owner,
        "expires_at": _row_time(task.expires_at),
        "created_at": _row_time(task.created_at),
        "updated_at": _row_time(task.updated_at),
        "deleted_at": _row_time(task.deleted_at),
        "deleted": task.is_deleted,
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "input": task.input,
        "result": task.result,
        "message": task.message,
    }


# --- the query string of a list --------------------------------------------------------------


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def parse_list_query(params: list[tuple[str, str]], limits: LimitSettings) -> TaskListQuery:
    """`GET /v2/tasks`'s query string, checked in the order and with the messages of Glance's
    request deserializer."""
    # The last of repeated parameters counts, as webob's `params.get` reads them.
    values = dict(params)
    sort_dir = values.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction: {sort_dir}")
    for name, allowed in (("status", STATUSES), ("type", TYPES)):
        # Glance lets an empty value through, to match no task; refused here, as any other.
        if name in values and values[name] not in allowed:
            raise BadRequest(f"Invalid {name} value: {values[name]}")
    marker = values.get("marker")
    if marker is not None and not _is_uuid(marker):
        raise BadRequest("Invalid marker format")
    limit = list_params.limit(params, limits)
    sort_key = values.get("sort_key", "created_at")
    if sort_key not in SORT_KEYS:
        raise BadRequest("Sort key supplied was not valid.")
    return TaskListQuery(
        limit=limit,
        marker=marker,
        sort_key=sort_key,
        sort_dir=cast(SortDir, sort_dir),
        exact={name: values[name] for name in EXACT_FILTERS if name in values},
    )


_LIST_PARAMETERS = [
    next(p for p in list_params.OPENAPI_PARAMETERS if p["name"] == "limit"),
    list_params.query_parameter(
        "marker",
        {"type": "string", "format": "uuid"},
        "Id of the last task of the previous page.",
    ),
    list_params.query_parameter(
        "sort_key",
        {"type": "string", "enum": list(SORT_KEYS)},
        "Sort by this column, then by created_at and id (default created_at).",
    ),
    list_params.query_parameter(
        "sort_dir",
        {"type": "string", "enum": ["asc", "desc"]},
        "One direction for every key (default desc).",
    ),
    list_params.query_parameter(
        "status", {"type": "string", "enum": list(STATUSES)}, "Only tasks in this status."
    ),
    list_params.query_parameter(
        "type", {"type": "string", "enum": list(TYPES)}, "Only tasks of this type."
    ),
    *(
        list_params.query_parameter(
            name, {"type": "string"}, f"Only tasks whose {name} is exactly this."
        )
        for name in EXACT_FILTERS
        if name not in ("status", "type")
    ),
]


# --- routes ----------------------------------------------------------------------------------


@router.get(
    "/v2/tasks",
    response_model=TasksV2,
    openapi_extra={"parameters": _LIST_PARAMETERS},
    description="The tasks the caller may see (its project's; an admin's: all), a page at a "
    "time (follow `next`). Finished tasks are listed until their `expires_at`.",
)
def list_tasks(request: Request, ctx: ContextDep, tasks: TaskServiceDep) -> Response:
    params = list(request.query_params.multi_items())
    query = parse_list_query(params, request.app.state.settings.limits)
    found = tasks.list_tasks(ctx, query)
    last = found[-1].id if found else None
    links = list_params.page_links("/v2/tasks", params, last, full=len(found) == query.limit)
    body = {
        "tasks": [task_stub_to_wire(task) for task in found],
        "first": links["first"],
        "schema": "/v2/schemas/tasks",
    }
    if "next" in links:
        body["next"] = links["next"]
    return json_response(body)


_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["import"]},
                        "input": {
                            "type": "object",
                            "properties": {
                                "import_from": {
                                    "type": "string",
                                    "description": "The http(s) URL to download (import.* "
                                    "filtering applies)",
                                },
                                "import_from_format": {"type": "string"},
                                "image_properties": {
                                    "type": "object",
                                    "description": "The image to create, as the body of "
                                    "`POST /v2/images`",
                                    "properties": {
                                        "disk_format": {"type": "string"},
                                        "container_format": {"type": "string"},
                                    },
                                    "required": ["disk_format", "container_format"],
                                },
                            },
                            "required": ["import_from", "image_properties"],
                        },
                    },
                    "required": ["type", "input"],
                }
            }
        },
    }
}


@router.post(
    "/v2/tasks",
    status_code=201,
    response_model=TaskV2,
    responses={
        201: {"headers": {"Location": {"description": "The task's URL", "schema": _STRING}}}
    },
    openapi_extra=_CREATE_BODY,
    description="The legacy import (deprecated in Glance for `POST /v2/images/{image_id}/import`): "
    "creates an image from a URL. Admins only.",
)
async def create_task(
    request: Request,
    ctx: ContextDep,
    tasks: TaskServiceDep,
    imports: ImportServiceDep,
    validate: ImageValidatorDep,
) -> Response:
    # Before the body is read, as Glance's deserializer checks access first.
    tasks.authorize_create(ctx)
    legacy = LegacyImport.parse(await read_json_object(request))
    # The image to create is checked as `POST /v2/images` checks its body.
    new = new_image(ctx, legacy.image_properties, validate)
    task: Task = await run_in_threadpool(imports.create_legacy_task, ctx, legacy, new)
    headers = {"Location": str(request.base_url).rstrip("/") + f"/v2/tasks/{task.id}"}
    return json_response(task_to_wire(task), 201, headers)


# No DELETE: tasks go when they expire, and an operation that can never succeed has no place in
# the API's document. Glint's 405 for an unrouted method has Glance's `Allow: GET`.
@router.get("/v2/tasks/{task_id}", response_model=TaskV2, responses=error_responses(404))
def show_task(task_id: str, ctx: ContextDep, tasks: TaskServiceDep) -> Response:
    return json_response(task_to_wire(tasks.get(ctx, task_id)))


@router.get(
    "/v2/images/{image_id}/tasks",
    response_model=ImageTasksV2,
    responses=error_responses(404),
    description="The caller's tasks of an image it can see (an admin's: all of them), newest "
    "first.",
)
def list_image_tasks(image_id: str, ctx: ContextDep, tasks: TaskServiceDep) -> Response:
    found = tasks.list_image_tasks(ctx, image_id)
    return json_response({"tasks": [image_task_to_wire(task) for task in found]})
