"""Image tables. Column names follow Glance's (`checksum`, `os_hash_algo`, `min_ram`, ...)."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db.base import MYSQL_TABLE_OPTIONS, LongText, Timestamp, utcnow
from app.images.status import ImageStatus


class JsonObject(sa.types.TypeDecorator[dict[str, Any]]):
    """A JSON object, stored as text: the same column type on every database (MariaDB's JSON
    is a checked LONGTEXT that the others would not reflect alike)."""

    impl = sa.Text()
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> dict[str, Any] | None:
        return None if value is None else dict(json.loads(value))


def image_id_field() -> Any:
    """The image a row belongs to; the row goes with the image."""
    return Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("image.id", ondelete="CASCADE"), nullable=False
        )
    )


class StatusColumn(sa.types.TypeDecorator[ImageStatus]):
    """Stored as its string value; read back as ImageStatus."""

    impl = sa.String(30)
    cache_ok = True

    def process_bind_param(
        self, value: ImageStatus | str | None, dialect: sa.Dialect
    ) -> str | None:
        # Unknown strings (a list filter for a status that does not exist) match nothing.
        return value.value if isinstance(value, ImageStatus) else value

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> ImageStatus | None:
        return None if value is None else ImageStatus(value)


class Image(SQLModel, table=True):
    __tablename__ = "image"
    __table_args__ = (
        # Default order and keyset paging: (created_at, id) with both directions.
        sa.Index("ix_image_created_at_id", "created_at", "id"),
        sa.Index("ix_image_updated_at_id", "updated_at", "id"),
        sa.Index("ix_image_owner_created_at", "owner", "created_at"),
        sa.Index("ix_image_visibility_created_at", "visibility", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: str = Field(sa_column=sa.Column(sa.String(36), primary_key=True))
    name: str | None = Field(default=None, sa_column=sa.Column(sa.String(255), index=True))
    status: ImageStatus = Field(
        default=ImageStatus.QUEUED,
        sa_column=sa.Column(StatusColumn(), nullable=False),
    )
    visibility: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    protected: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    os_hidden: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    checksum: str | None = Field(default=None, sa_column=sa.Column(sa.String(32), index=True))
    os_hash_algo: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    os_hash_value: str | None = Field(default=None, sa_column=sa.Column(sa.String(128), index=True))
    owner: str | None = Field(default=None, sa_column=sa.Column(sa.String(255)))
    size: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    virtual_size: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    disk_format: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    container_format: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    min_ram: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    min_disk: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    deleted_at: datetime | None = Field(default=None, sa_column=sa.Column(Timestamp))
    # Soft delete: the row stays so that its id can never be used again (OSSN-0075).
    # Deliberately not indexed, like status: a low-cardinality index tempts SQLite into reading
    # every live image and sorting them instead of walking (created_at, id) for a page.
    is_deleted: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))


class ImageProperty(SQLModel, table=True):
    """A custom (user-defined) image property; always a string value."""

    __tablename__ = "image_property"
    __table_args__ = (sa.UniqueConstraint("image_id", "name"), MYSQL_TABLE_OPTIONS)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    image_id: str = image_id_field()
    name: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, index=True))
    value: str = Field(sa_column=sa.Column(LongText, nullable=False))


class ImageTag(SQLModel, table=True):
    __tablename__ = "image_tag"
    __table_args__ = (sa.UniqueConstraint("image_id", "value"), MYSQL_TABLE_OPTIONS)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    image_id: str = image_id_field()
    value: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, index=True))


class ImageMember(SQLModel, table=True):
    __tablename__ = "image_member"
    __table_args__ = (sa.UniqueConstraint("image_id", "member"), MYSQL_TABLE_OPTIONS)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    image_id: str = image_id_field()
    member: str = Field(sa_column=sa.Column(sa.String(255), nullable=False, index=True))
    status: str = Field(default="pending", sa_column=sa.Column(sa.String(20), nullable=False))
    can_share: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )


class LocationStatus(StrEnum):
    ACTIVE = "active"
    # Removed from its image; a job deletes the bytes, then the row.
    PENDING_DELETE = "pending_delete"


class ImageLocation(SQLModel, table=True):
    """Where an image's bytes are: one row per stored copy, in the image's order (`position`)."""

    __tablename__ = "image_location"
    __table_args__ = (sa.Index("ix_image_location_image_id", "image_id"), MYSQL_TABLE_OPTIONS)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, primary_key=True))
    image_id: str = image_id_field()
    store_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    position: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    # What the client said about the location (Glance's `metadata`); the store is `store_id`.
    location_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column("metadata", JsonObject(), nullable=False)
    )
    status: LocationStatus = Field(
        default=LocationStatus.ACTIVE, sa_column=sa.Column(sa.String(30), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )


class ImageUpload(SQLModel, table=True):
    """The lease of an upload in progress (v2 data upload, stage; later v1 and imports).

    Taken in the transaction that moves the image into `status`, renewed while bytes flow and
    dropped with the transaction that ends the upload. A lease that has run out belongs to a
    process that died: the worker puts the image back and removes `object_key`'s partial bytes.
    """

    __tablename__ = "image_upload"
    __table_args__ = (sa.Index("ix_image_upload_lease_until", "lease_until"), MYSQL_TABLE_OPTIONS)

    image_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
        )
    )
    status: ImageStatus = Field(sa_column=sa.Column(StatusColumn(), nullable=False))
    store_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    object_key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    holder: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    lease_until: datetime = Field(sa_column=sa.Column(Timestamp, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )


class ImageStaging(SQLModel, table=True):
    """Data staged for a glance-direct import (`PUT .../stage`): a committed object in the
    staging store (the default store, so that a worker on any machine can read it), with the
    facts measured while it arrived. The import reads it into the target stores; the object
    goes (by a job) when the import ends or the image is deleted."""

    __tablename__ = "image_staging"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    image_id: str = Field(
        sa_column=sa.Column(
            sa.String(36), sa.ForeignKey("image.id", ondelete="CASCADE"), primary_key=True
        )
    )
    store_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    # The key the object was written under: what `Store.discard` removes.
    object_key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    checksum: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    os_hash_algo: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    os_hash_value: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    virtual_size: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    # Why the data may not become the image (an unsafe or mismatched disk image), found while
    # staging and reported by the import, as Glance reports it: the stage itself succeeds.
    format_problem: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(Timestamp, nullable=False)
    )
