"""Task use cases for the API: who sees which tasks, and the reads they may make.

Deliberately unlike Glance, which opens the task API to admins only (`tasks_api_access`): a
project sees its own tasks (reader role at least), so that it can follow its imports, and an
admin sees every task. `_owned_by` is that rule, and every read goes through it.
"""

from __future__ import annotations

from app.context import RequestContext
from app.db.engine import Database
from app.errors import BadRequest, NotFound
from app.images import policy
from app.images.errors import PolicyDenied
from app.images.repository import ImageRepository
from app.images.service import ImageService
from app.tasks.models import Task
from app.tasks.query import TaskListQuery
from app.tasks.repository import TaskRepository

# The policy name Glance checks on every task call; Glint's 403s name it too.
_ACCESS = "tasks_api_access"


class TaskNotFound(NotFound):
    def __init__(self, task_id: str):
        super().__init__(f"Could not find task {task_id}")


class UnknownTaskMarker(BadRequest):
    def __init__(self, marker: str):
        super().__init__(f"Task with the given id {marker} was not found")


def _owned_by(ctx: RequestContext) -> str | None:
    """The project whose tasks the caller sees, or None for an admin, who sees all of them."""
    if ctx.is_admin:
        return None
    if not ctx.is_reader or ctx.project_id is None:
        raise PolicyDenied(_ACCESS)
    return ctx.project_id


class TaskService:
    def __init__(self, db: Database):
        self.db = db

    def list_tasks(self, ctx: RequestContext, query: TaskListQuery) -> list[Task]:
        owned_by = _owned_by(ctx)
        with self.db.session(write=False) as session:
            repo = TaskRepository(session)
            marker = None
            if query.marker is not None:
                marker = repo.find_listed(query.marker, owned_by=owned_by)
                if marker is None:
                    raise UnknownTaskMarker(query.marker)
            if query.limit == 0:
                return []
            return repo.find_page(query, owned_by=owned_by, after=marker)

    def get(self, ctx: RequestContext, task_id: str) -> Task:
        owned_by = _owned_by(ctx)
        with self.db.session(write=False) as session:
            task = TaskRepository(session).find_listed(task_id, owned_by=owned_by)
            if task is None:
                raise TaskNotFound(task_id)
            return task

    def list_image_tasks(self, ctx: RequestContext, image_id: str) -> list[Task]:
        """`GET /v2/images/{id}/tasks`: the caller's tasks of an image it can see."""
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            # Glance answers a bare 404 here, not its usual image-not-found message.
            ImageService.visible_image(ImageRepository(session), ctx, image_id, missing=NotFound())
            return TaskRepository(session).find_of_image(image_id, owned_by=_owned_by(ctx))

    @staticmethod
    def authorize_create(ctx: RequestContext) -> None:
        """`POST /v2/tasks` (the legacy import) stays admin-only, as in Glance."""
        if not ctx.is_admin:
            raise PolicyDenied(_ACCESS)
