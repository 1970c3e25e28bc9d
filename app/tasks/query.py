"""A task list request in domain terms: filters, order and page, already validated."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.images.query import SortDir
from app.tasks.models import TaskStatus

# The types Glance's task schema lists (Glint creates the first two, app.tasks.models.TaskType).
TYPES = ("import", "api_image_import", "location_import")
STATUSES = tuple(status.value for status in TaskStatus)
# Glance sorts on any column of its task table; `deleted` and `deleted_at` are left out, as every
# listed task has the same values there.
SORT_KEYS = (
    "id",
    "type",
    "status",
    "owner",
    "expires_at",
    "image_id",
    "request_id",
    "user_id",
    "created_at",
    "updated_at",
)
# Glance also filters on any other column named in the query string, by exact value; its time
# columns it compares with the raw string, which no client relies on, so those are left out.
EXACT_FILTERS = ("id", "type", "status", "owner", "image_id", "request_id", "user_id")


@dataclass
class TaskListQuery:
    limit: int
    marker: str | None = None
    sort_key: str = "created_at"
    # One direction for every key: Glance's task list has no per-key directions.
    sort_dir: SortDir = "desc"
    exact: dict[str, str] = field(default_factory=dict)
