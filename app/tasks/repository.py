"""Finds tasks and moves them through their statuses; compare-and-set, like image status."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from app.db.base import utcnow
from app.tasks.models import FINISHED, Task, TaskStatus
from app.tasks.query import TaskListQuery

# Glance's `task_time_to_live`: how long a finished task stays listed.
TIME_TO_LIVE = timedelta(hours=48)


class TaskRepository:
    def __init__(self, session: Session):
        self.session = session

    def add(
        self,
        *,
        type: str,
        owner: str | None,
        user_id: str | None,
        request_id: str | None,
        image_id: str | None,
        input: dict[str, Any],
    ) -> Task:
        now = utcnow()
        task = Task(
            id=str(uuid.uuid4()),
            type=type,
            owner=owner,
            user_id=user_id,
            request_id=request_id,
            image_id=image_id,
            input=input,
            created_at=now,
            updated_at=now,
        )
        self.session.add(task)
        self.session.flush()
        return task

    def find(self, task_id: str) -> Task | None:
        task = self.session.get(Task, task_id)
        return None if task is None or task.is_deleted else task

    def start(self, task_id: str) -> bool:
        """pending -> processing; False when the task is not pending (it already started, in
        an earlier attempt of its job, or it finished)."""
        return self._change(task_id, [TaskStatus.PENDING], status=TaskStatus.PROCESSING)

    def report(self, task_id: str, message: str) -> bool:
        """Progress of a running task; False when it is no longer running."""
        return self._change(task_id, [TaskStatus.PROCESSING], message=message)

    def finish(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        message: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """pending or processing -> success or failure; False when it had already finished."""
        assert status in FINISHED
        now = utcnow()
        values: dict[str, Any] = {"status": status, "expires_at": now + TIME_TO_LIVE}
        if message is not None:
            values["message"] = message
        if result is not None:
            values["result"] = result
        return self._change(task_id, [TaskStatus.PENDING, TaskStatus.PROCESSING], **values)

    def _change(self, task_id: str, from_: list[TaskStatus], **values: Any) -> bool:
        values.setdefault("updated_at", utcnow())
        result = self.session.execute(
            sa.update(Task)
            .where(col(Task.id) == task_id, col(Task.status).in_(from_))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    # --- reads -----------------------------------------------------------------------------

    def find_listed(self, task_id: str, *, owned_by: str | None) -> Task | None:
        """The task while it is listed (neither deleted nor expired); `owned_by`: only if that
        project owns it (None: whoever does)."""
        stmt = select(Task).where(col(Task.id) == task_id, *_listed(owned_by))
        return self.session.exec(stmt).first()

    def find_page(
        self, query: TaskListQuery, *, owned_by: str | None, after: Task | None = None
    ) -> list[Task]:
        """Listed tasks in the query's order, from the one after `after` (the marker)."""
        keys = [query.sort_key, *(key for key in ("created_at", "id") if key != query.sort_key)]
        order = [_sort_expression(key) for key in keys]
        stmt = select(Task).where(
            *_listed(owned_by),
            *(getattr(Task, name) == value for name, value in query.exact.items()),
        )
        if after is not None:
            # One direction for every key, so "after the marker" is one row comparison.
            position = sa.tuple_(*order)
            marker = tuple(_sort_value(after, key) for key in keys)
            stmt = stmt.where(position < marker if query.sort_dir == "desc" else position > marker)
        direction = sa.desc if query.sort_dir == "desc" else sa.asc
        stmt = stmt.order_by(*(direction(expression) for expression in order)).limit(query.limit)
        return list(self.session.exec(stmt).all())

    def find_of_image(self, image_id: str, *, owned_by: str | None) -> list[Task]:
        """The image's listed tasks, newest first."""
        stmt = (
            select(Task)
            .where(col(Task.image_id) == image_id, *_listed(owned_by))
            .order_by(col(Task.created_at).desc(), col(Task.id).desc())
        )
        return list(self.session.exec(stmt).all())


def _listed(owned_by: str | None) -> list[ColumnElement[bool]]:
    # An expired task is as good as deleted: Glance soft-deletes it when its owner next lists.
    expires_at = col(Task.expires_at)
    conditions = [
        col(Task.is_deleted).is_(False),
        sa.or_(expires_at.is_(None), expires_at > utcnow()),
    ]
    if owned_by is not None:
        conditions.append(col(Task.owner) == owned_by)
    return conditions


# NULL sorts first in ascending order on some databases and last on others: compare a non-null
# stand-in instead (as Glance's paging does), one that sorts before every real value.
_NULL_STAND_IN: dict[str, Any] = {
    "owner": "",
    "image_id": "",
    "request_id": "",
    "user_id": "",
    "expires_at": datetime(1970, 1, 1),
}


def _sort_expression(key: str) -> ColumnElement[Any]:
    column: ColumnElement[Any] = getattr(Task, key)
    if key in _NULL_STAND_IN:
        return sa.func.coalesce(column, _NULL_STAND_IN[key])
    return column


def _sort_value(task: Task, key: str) -> Any:
    value = getattr(task, key)
    return _NULL_STAND_IN[key] if value is None else value
