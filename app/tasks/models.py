"""The task table. A task is Glance's API resource; the work itself is a job (app/jobs)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db.base import MYSQL_TABLE_OPTIONS, LongText, Timestamp, utcnow
from app.images.models import JsonObject


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILURE = "failure"


FINISHED = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE})


class TaskType(enum.StrEnum):
    # `POST /v2/tasks`, the legacy import that creates its own image.
    IMPORT = "import"
    # `POST /v2/images/{id}/import`.
    API_IMAGE_IMPORT = "api_image_import"


class Task(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        # Default list order and keyset paging, as for images.
        sa.Index("ix_task_created_at_id", "created_at", "id"),
        sa.Index("ix_task_owner_created_at", "owner", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: str = Field(sa_column=sa.Column(sa.String(36), primary_key=True))
    type: str = Field(sa_column=sa.Column(sa.String(30), nullable=False))
    status: str = Field(
        default=TaskStatus.PENDING, sa_column=sa.Column(sa.String(30), nullable=False)
    )
    owner: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    user_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    request_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    # No foreign key: a task outlives its image (Glance shows tasks of deleted images).
    image_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(36), index=True))
    input: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JsonObject(), nullable=False)
    )
    result: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JsonObject()))
    # Progress while running, the cause after a failure.
    message: str = Field(default="", sa_column=sa.Column(LongText, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=sa.Column(Timestamp))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    deleted_at: datetime | None = Field(default=None, sa_column=sa.Column(Timestamp))
    is_deleted: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
