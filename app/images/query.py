"""A list request in domain terms: filters, order and page, already validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SortDir = Literal["asc", "desc"]
TimeOp = Literal["gt", "gte", "eq", "neq", "lt", "lte"]

SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
# Core columns filtered by exact value (or `in:` lists).
EXACT_FILTERS = (
    "name",
    "id",
    "status",
    "container_format",
    "disk_format",
    "owner",
    "checksum",
    "os_hash_value",
)


@dataclass
class ImageListQuery:
    limit: int
    marker: str | None = None
    sort: list[tuple[str, SortDir]] = field(default_factory=lambda: [("created_at", "desc")])
    exact: dict[str, list[str]] = field(default_factory=dict)
    properties: dict[str, list[str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    visibility: str | None = None
    member_status: str = "accepted"
    size_min: int | None = None
    size_max: int | None = None
    os_hidden: bool = False
    protected: bool | None = None
    times: list[tuple[str, TimeOp, datetime]] = field(default_factory=list)
