"""Finds and stores images. Queries only: no policy, no HTTP."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from app.context import RequestContext
from app.db.base import utcnow
from app.images.models import (
    Image,
    ImageLocation,
    ImageMember,
    ImageProperty,
    ImageTag,
    LocationStatus,
)
from app.images.query import ImageListQuery
from app.images.status import INVISIBLE, ImageStatus, check_transition


def _time_condition(column: Any, op: str, moment: datetime) -> ColumnElement[bool]:
    """Times are shown to the second but stored finer: a whole-second bound means that
    whole second, so `updated_at=lte:<the value an image shows>` includes that image."""
    if moment.microsecond:
        start, end = moment, moment + timedelta(microseconds=1)
    else:
        start, end = moment, moment + timedelta(seconds=1)
    conditions: dict[str, ColumnElement[bool]] = {
        "lt": column < start,
        "gte": column >= start,
        "lte": column < end,
        "gt": column >= end,
        "eq": sa.and_(column >= start, column < end),
        "neq": sa.or_(column < start, column >= end),
    }
    return conditions[op]


# NULL sorts first in ascending order on every database: compare a non-null stand-in instead.
_NULL_STAND_IN: dict[str, Any] = {
    "name": "",
    "container_format": "",
    "disk_format": "",
    "size": -1,
}


# Built once: building a statement costs more than running it on SQLite (a show is mostly this).
# Plain rows, not ORM objects: a 100-image page is mostly these two.
_PROPERTIES_OF = (
    sa.select(col(ImageProperty.image_id), col(ImageProperty.name), col(ImageProperty.value))
    .where(col(ImageProperty.image_id).in_(sa.bindparam("ids", expanding=True)))
    .order_by(col(ImageProperty.id))
)
_TAGS_OF = (
    sa.select(col(ImageTag.image_id), col(ImageTag.value))
    .where(col(ImageTag.image_id).in_(sa.bindparam("ids", expanding=True)))
    .order_by(col(ImageTag.id))
)
_MEMBER = select(ImageMember).where(
    col(ImageMember.image_id) == sa.bindparam("image_id"),
    col(ImageMember.member) == sa.bindparam("member"),
)


_ACTIVE_LOCATIONS_OF = (
    select(ImageLocation)
    .where(
        col(ImageLocation.image_id).in_(sa.bindparam("ids", expanding=True)),
        col(ImageLocation.status) == LocationStatus.ACTIVE,
    )
    .order_by(col(ImageLocation.position), col(ImageLocation.id))
)


@dataclass
class ImageRecord:
    """An image with its custom properties and tags, and its active locations in order when
    they were asked for."""

    image: Image
    properties: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    locations: list[ImageLocation] = field(default_factory=list)


def _sort_expression(key: str) -> ColumnElement[Any]:
    column: ColumnElement[Any] = getattr(Image, key)
    if key in _NULL_STAND_IN:
        return sa.func.coalesce(column, _NULL_STAND_IN[key])
    return column


class ImageRepository:
    def __init__(self, session: Session, *, lock: bool = False):
        """`lock`: rows found are locked until the transaction ends (SELECT ... FOR UPDATE), so
        that concurrent changes to one image queue instead of racing. SQLite needs no row
        locks: its write transactions already run one at a time."""
        self.session = session
        self.lock = lock

    # --- single images -------------------------------------------------------------------

    def find(self, image_id: str) -> Image | None:
        """The live image with this id (deleted and pending-delete images are not found)."""
        image = self.session.get(Image, image_id, with_for_update=self.lock or None)
        if image is None or image.is_deleted or image.status in INVISIBLE:
            return None
        return image

    def id_exists(self, image_id: str) -> bool:
        """Also true for deleted images: their ids are never reused."""
        return self.session.get(Image, image_id) is not None

    def is_member(self, image_id: str, project_id: str | None) -> bool:
        if project_id is None:
            return False
        return self.find_member(image_id, project_id) is not None

    def find_member(self, image_id: str, member: str) -> ImageMember | None:
        return self.session.exec(_MEMBER, params={"image_id": image_id, "member": member}).first()

    def list_members(self, image_id: str) -> Sequence[ImageMember]:
        return self.session.exec(
            select(ImageMember)
            .where(ImageMember.image_id == image_id)
            .order_by(col(ImageMember.created_at), col(ImageMember.id))
        ).all()

    def locations(self, image_id: str) -> list[ImageLocation]:
        """The image's active locations, in its order."""
        return list(self.session.exec(_ACTIVE_LOCATIONS_OF, params={"ids": [image_id]}).all())

    def find_location(self, location_id: int) -> ImageLocation | None:
        return self.session.get(ImageLocation, location_id)

    def is_referenced(
        self, url: str, *, besides_location: int | None = None, besides_image: str | None = None
    ) -> bool:
        """Whether an active location (other than `besides_location`, of an image other than
        `besides_image`) names `url`: then its bytes must stay."""
        conditions = [
            col(ImageLocation.url) == url,
            col(ImageLocation.status) == LocationStatus.ACTIVE,
        ]
        if besides_location is not None:
            conditions.append(col(ImageLocation.id) != besides_location)
        if besides_image is not None:
            conditions.append(col(ImageLocation.image_id) != besides_image)
        return self.session.exec(select(ImageLocation.id).where(*conditions)).first() is not None

    def load(self, images: Sequence[Image], *, with_locations: bool = False) -> list[ImageRecord]:
        """Attach properties and tags (and active locations), a query each for any number of
        images."""
        ids = [image.id for image in images]
        properties: dict[str, dict[str, str]] = defaultdict(dict)
        tags: dict[str, list[str]] = defaultdict(list)
        locations: dict[str, list[ImageLocation]] = defaultdict(list)
        if ids:
            for image_id, name, value in self.session.execute(_PROPERTIES_OF, {"ids": ids}):
                properties[image_id][name] = value
            for image_id, value in self.session.execute(_TAGS_OF, {"ids": ids}):
                tags[image_id].append(value)
            if with_locations:
                for location in self.session.exec(_ACTIVE_LOCATIONS_OF, params={"ids": ids}):
                    locations[location.image_id].append(location)
        return [
            ImageRecord(image, properties[image.id], tags[image.id], locations[image.id])
            for image in images
        ]

    def add(self, record: ImageRecord) -> None:
        self.session.add(record.image)
        self.session.flush()
        self.session.add_all(
            ImageProperty(image_id=record.image.id, name=name, value=value)
            for name, value in record.properties.items()
        )
        self.session.add_all(ImageTag(image_id=record.image.id, value=tag) for tag in record.tags)
        self.session.flush()

    def replace_properties(self, image_id: str, old: dict[str, str], new: dict[str, str]) -> None:
        removed = [name for name in old if name not in new]
        if removed:
            self.session.execute(
                sa.delete(ImageProperty).where(
                    col(ImageProperty.image_id) == image_id, col(ImageProperty.name).in_(removed)
                )
            )
        for name, value in new.items():
            if name not in old:
                self.session.add(ImageProperty(image_id=image_id, name=name, value=value))
            elif old[name] != value:
                self.session.execute(
                    sa.update(ImageProperty)
                    .where(col(ImageProperty.image_id) == image_id, col(ImageProperty.name) == name)
                    .values(value=value)
                )

    def replace_tags(self, image_id: str, old: Sequence[str], new: Sequence[str]) -> None:
        removed = [tag for tag in old if tag not in new]
        if removed:
            self.session.execute(
                sa.delete(ImageTag).where(
                    col(ImageTag.image_id) == image_id, col(ImageTag.value).in_(removed)
                )
            )
        self.session.add_all(
            ImageTag(image_id=image_id, value=tag) for tag in new if tag not in old
        )

    def set_properties(self, image_id: str, values: dict[str, str | None]) -> None:
        """Sets the named custom properties (None removes one), leaving the others alone."""
        rows = self.session.execute(
            sa.select(col(ImageProperty.name), col(ImageProperty.value)).where(
                col(ImageProperty.image_id) == image_id,
                col(ImageProperty.name).in_(list(values)),
            )
        )
        current = dict(rows.all())
        wanted = {**current, **values}
        self.replace_properties(
            image_id,
            current,
            {name: value for name, value in wanted.items() if value is not None},
        )

    def update_in_status(self, image_id: str, status: ImageStatus, **values: Any) -> bool:
        """Compare-and-set of other columns: only while the image is still in `status`."""
        values.setdefault("updated_at", utcnow())
        result = self.session.execute(
            sa.update(Image)
            .where(col(Image.id) == image_id, col(Image.status) == status)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    def transition(
        self, image_id: str, *, from_: ImageStatus, to: ImageStatus, **values: Any
    ) -> bool:
        """Compare-and-set: moves the image only if it is still in `from_`. A move the status
        table forbids raises InvalidImageTransition, whatever the row holds."""
        check_transition(from_, to)
        values.setdefault("updated_at", utcnow())
        if to == ImageStatus.DELETED:
            values.setdefault("is_deleted", True)
            values.setdefault("deleted_at", values["updated_at"])
        result = self.session.execute(
            sa.update(Image)
            .where(col(Image.id) == image_id, col(Image.status) == from_)
            .values(status=to, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    # --- lists -----------------------------------------------------------------------------

    def find_page(self, ctx: RequestContext, query: ImageListQuery) -> list[Image]:
        stmt = select(Image).where(*self._conditions(ctx, query))
        if query.marker is not None:
            marker = self.session.get(Image, query.marker)
            assert marker is not None, "the service checks the marker first"
            stmt = stmt.where(self._after_marker(query, marker))
        order = [*query.sort, *self._tie_breakers(query)]
        stmt = stmt.order_by(
            *(
                _sort_expression(key).desc() if direction == "desc" else _sort_expression(key).asc()
                for key, direction in order
            )
        ).limit(query.limit)
        return list(self.session.exec(stmt).all())

    def is_listable(self, ctx: RequestContext, query: ImageListQuery, image_id: str) -> bool:
        """Whether a marker names an image this caller could list."""
        visible = select(Image.id).where(
            col(Image.id) == image_id, *self._visibility_conditions(ctx, query)
        )
        return self.session.exec(visible).first() is not None

    @staticmethod
    def _tie_breakers(query: ImageListQuery) -> list[tuple[str, str]]:
        keys = {key for key, _ in query.sort}
        last_dir = query.sort[-1][1] if query.sort else "desc"
        return [(key, last_dir) for key in ("created_at", "id") if key not in keys]

    def _after_marker(self, query: ImageListQuery, marker: Image) -> ColumnElement[bool]:
        order = [*query.sort, *self._tie_breakers(query)]
        clauses: list[ColumnElement[bool]] = []
        equal_so_far: list[ColumnElement[bool]] = []
        bounds: list[ColumnElement[bool]] = []
        for key, direction in order:
            expr = _sort_expression(key)
            value = getattr(marker, key)
            if value is None:
                value = _NULL_STAND_IN[key]
            beyond = expr < value if direction == "desc" else expr > value
            clauses.append(sa.and_(*equal_so_far, beyond))
            equal_so_far.append(expr == value)
            if not bounds:
                # Implied by the disjunction; stated so that every planner can range-scan.
                bounds.append(expr <= value if direction == "desc" else expr >= value)
        return sa.and_(*bounds, sa.or_(*clauses))

    def _visibility_conditions(
        self, ctx: RequestContext, query: ImageListQuery
    ) -> list[ColumnElement[bool]]:
        live: list[ColumnElement[bool]] = [
            col(Image.is_deleted).is_(False),
            col(Image.status).not_in(list(INVISIBLE)),
        ]
        visibility = query.visibility
        if visibility not in (None, "all"):
            live.append(col(Image.visibility) == visibility)
        if ctx.is_admin:
            return live

        project = ctx.project_id
        owned = col(Image.owner) == project if project is not None else sa.false()
        member_statuses = (
            ["pending", "accepted", "rejected"]
            if query.member_status == "all"
            else [query.member_status]
        )
        shared_with_me = sa.and_(
            col(Image.visibility) == "shared",
            sa.exists().where(
                col(ImageMember.image_id) == col(Image.id),
                col(ImageMember.member) == project,
                col(ImageMember.status).in_(member_statuses),
            ),
        )
        if visibility == "private":
            seen = owned
        elif visibility == "public" or visibility == "community":
            seen = sa.true()
        elif visibility == "shared":
            seen = sa.or_(owned, shared_with_me)
        elif visibility == "all":
            seen = sa.or_(owned, col(Image.visibility).in_(["public", "community"]), shared_with_me)
        else:
            seen = sa.or_(owned, col(Image.visibility) == "public", shared_with_me)
        return [*live, seen]

    def _conditions(self, ctx: RequestContext, query: ImageListQuery) -> list[ColumnElement[bool]]:
        conditions = self._visibility_conditions(ctx, query)
        if "status" not in query.exact:
            conditions.append(col(Image.status) != ImageStatus.KILLED)
        conditions.append(col(Image.os_hidden).is_(query.os_hidden))
        if query.protected is not None:
            conditions.append(col(Image.protected).is_(query.protected))
        for key, values in query.exact.items():
            conditions.append(getattr(Image, key).in_(values))
        if query.size_min is not None:
            conditions.append(col(Image.size) >= query.size_min)
        if query.size_max is not None:
            conditions.append(col(Image.size) <= query.size_max)
        for key, op, moment in query.times:
            conditions.append(_time_condition(getattr(Image, key), op, moment))
        for tag in query.tags:
            conditions.append(
                sa.exists().where(
                    col(ImageTag.image_id) == col(Image.id), col(ImageTag.value) == tag
                )
            )
        for name, values in query.properties.items():
            conditions.append(
                sa.exists().where(
                    col(ImageProperty.image_id) == col(Image.id),
                    col(ImageProperty.name) == name,
                    col(ImageProperty.value).in_(values),
                )
            )
        return conditions
