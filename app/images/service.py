"""Image use cases: each public method is one transaction and applies every domain rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.config import LimitSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import NotFound
from app.images import attributes, policy
from app.images.errors import (
    CoreAttributeRemoval,
    ForeignOwner,
    FormatChangeDenied,
    ImageChanged,
    ImageIdTaken,
    ImageNotFound,
    ImageProtected,
    InvalidAttributeValue,
    OwnerChangeDenied,
    PropertyExists,
    PropertyMissing,
    PropertyTooLong,
    QuotaExceeded,
    StatusActionRefused,
    TagNotFound,
    UnknownMarker,
)
from app.images.models import Image
from app.images.query import ImageListQuery
from app.images.repository import ImageRecord, ImageRepository
from app.images.status import ImageStatus
from app.images.uploads import UploadLeases
from app.jobs.queue import enqueue

DELETE_DATA_JOB = "image.delete_data"

MAX_PROPERTY_NAME = 255
MAX_INTEGER = 2**31 - 1  # min_ram and min_disk are 32-bit columns, as in Glance
MAX_PROPERTY_VALUE = 65535


@dataclass(frozen=True)
class NewImage:
    """An image to create, whichever API describes it; values already of their types."""

    owner: str | None
    id: str | None = None  # None: a new UUID
    name: str | None = None
    visibility: str = "shared"
    protected: bool = False
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    min_ram: int = 0
    min_disk: int = 0
    tags: Sequence[str] = ()
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SetAttribute:
    """Sets a core attribute (a WRITABLE_CORE name) or a custom property."""

    name: str
    value: Any
    # v2's JSON-patch semantics: `replace` needs the attribute to exist, and the deprecated
    # v2.0 patch media type's `add` needs it absent.
    must_exist: bool = False
    must_be_absent: bool = False


@dataclass(frozen=True)
class RemoveAttribute:
    """Removes a custom property (core attributes cannot be removed)."""

    name: str


ImageChange = SetAttribute | RemoveAttribute


def _deduplicate(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class ImageService:
    def __init__(
        self,
        db: Database,
        *,
        limits: LimitSettings,
        on_job_enqueued: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.limits = limits
        self.on_job_enqueued = on_job_enqueued

    # --- reads -----------------------------------------------------------------------------

    def get(self, ctx: RequestContext, image_id: str) -> ImageRecord:
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            return repo.load([self.visible_image(repo, ctx, image_id)])[0]

    def list_images(self, ctx: RequestContext, query: ImageListQuery) -> list[ImageRecord]:
        policy.require_reader(ctx, "get_images")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            if query.marker is not None and not repo.is_listable(ctx, query, query.marker):
                raise UnknownMarker(query.marker)
            if query.limit == 0:
                return []
            return repo.load(repo.find_page(ctx, query))

    # --- writes ----------------------------------------------------------------------------

    def create(self, ctx: RequestContext, new: NewImage) -> ImageRecord:
        for name in new.properties:
            attributes.check_settable(name, creating=True)
        self._check_values(new.min_ram, new.min_disk, new.properties)
        policy.require_member(ctx, "add_image")
        if new.owner != ctx.project_id and not ctx.is_admin:
            raise ForeignOwner(new.owner)
        policy.require_visibility_allowed(ctx, new.visibility)
        properties = dict(new.properties)
        tags = _deduplicate(new.tags)
        self._check_quotas(properties, tags)

        now = utcnow()
        image = Image(
            id=new.id or str(uuid.uuid4()),
            created_at=now,
            updated_at=now,
            **{name: getattr(new, name) for name in attributes.WRITABLE_COLUMNS},
        )
        record = ImageRecord(image, properties, tags)
        try:
            with self.db.session() as session:
                repo = ImageRepository(session, lock=True)
                if repo.id_exists(image.id):
                    raise ImageIdTaken(image.id)
                repo.add(record)
        except IntegrityError as exc:  # a concurrent create with the same id won the race
            raise ImageIdTaken(image.id) from exc
        return record

    def update(
        self, ctx: RequestContext, image_id: str, changes: Sequence[ImageChange]
    ) -> ImageRecord:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, "modify_image")
            record = repo.load([image])[0]
            for change in changes:
                self._check_changeable(ctx, change)
            document = self._apply(self._document(record), changes)
            properties = {k: v for k, v in document.items() if k not in attributes.BASE}
            self._check_values(document["min_ram"], document["min_disk"], properties)
            changed = {k for k in attributes.WRITABLE_COLUMNS if document[k] != getattr(image, k)}
            if changed & {"disk_format", "container_format"} and image.status != ImageStatus.QUEUED:
                name = sorted(changed & {"disk_format", "container_format"})[0]
                raise FormatChangeDenied(name)
            if "visibility" in changed:
                policy.require_visibility_allowed(ctx, document["visibility"])
            tags = _deduplicate(document["tags"])
            self._check_quotas(properties, tags)

            for name in changed:
                setattr(image, name, document[name])
            image.updated_at = utcnow()
            repo.replace_properties(image.id, record.properties, properties)
            repo.replace_tags(image.id, record.tags, tags)
            session.add(image)
            return ImageRecord(image, properties, tags)

    def delete(self, ctx: RequestContext, image_id: str) -> None:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            missing = NotFound(f"Failed to find image {image_id} to delete")
            image = self.visible_image(repo, ctx, image_id, missing=missing)
            policy.require_owner_member(ctx, image, "delete_image")
            if image.protected:
                raise ImageProtected(image_id)
            if not repo.transition(image.id, from_=image.status, to=ImageStatus.DELETED):
                raise ImageChanged(image_id, "it was being deleted")
            locations = [location.url for location in repo.locations(image.id)]
            # An upload still running (or whose process died) loses the image with its lease;
            # its partial bytes go with the rest.
            partial = UploadLeases.release_any(session, image.id)
            needs_job = bool(locations or partial)
            if needs_job:
                # The bytes go only once this transaction has committed, by a job that
                # exists exactly when the deletion does.
                enqueue(
                    session,
                    DELETE_DATA_JOB,
                    {
                        "image_id": image.id,
                        "locations": locations,
                        "partial": [partial] if partial else [],
                    },
                    lock=image.id,
                )
        if needs_job:
            self.on_job_enqueued()

    def deactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._toggle(ctx, image_id, "deactivate", ImageStatus.ACTIVE, ImageStatus.DEACTIVATED)

    def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        self._toggle(ctx, image_id, "reactivate", ImageStatus.DEACTIVATED, ImageStatus.ACTIVE)

    def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        self._change_tags(ctx, image_id, tag, add=True)

    def delete_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        self._change_tags(ctx, image_id, tag, add=False)

    # --- helpers -----------------------------------------------------------------------------

    def _change_tags(self, ctx: RequestContext, image_id: str, tag: str, *, add: bool) -> None:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            missing = NotFound(f"Image {image_id} not found.")
            image = self.visible_image(repo, ctx, image_id, missing=missing)
            policy.require_owner_member(ctx, image, "modify_image")
            tags = repo.load([image])[0].tags
            if add:
                if tag in tags:
                    return
                new_tags = [*tags, tag]
                self._check_quotas({}, new_tags)
            else:
                if tag not in tags:
                    raise TagNotFound()
                new_tags = [t for t in tags if t != tag]
            repo.replace_tags(image.id, tags, new_tags)
            image.updated_at = utcnow()
            session.add(image)

    def _toggle(
        self,
        ctx: RequestContext,
        image_id: str,
        action: str,
        from_: ImageStatus,
        to: ImageStatus,
    ) -> None:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, action)
            if image.status == to:
                return
            if image.status != from_ or not repo.transition(image_id, from_=from_, to=to):
                raise StatusActionRefused(action, image.status)

    @staticmethod
    def _find_visible(repo: ImageRepository, ctx: RequestContext, image_id: str) -> Image | None:
        image = repo.find(image_id)
        if image is None:
            return None
        is_member = image.visibility == "shared" and repo.is_member(image.id, ctx.project_id)
        return image if policy.can_see(ctx, image, is_member_of=is_member) else None

    @classmethod
    def visible_image(
        cls,
        repo: ImageRepository,
        ctx: RequestContext,
        image_id: str,
        *,
        missing: NotFound | None = None,
    ) -> Image:
        """The image if this caller may see it; `missing` (default ImageNotFound) otherwise,
        never a 403."""
        image = cls._find_visible(repo, ctx, image_id)
        if image is None:
            raise missing or ImageNotFound(image_id)
        return image

    @staticmethod
    def _check_changeable(ctx: RequestContext, change: ImageChange) -> None:
        name = change.name
        attributes.check_settable(name, creating=False)
        if isinstance(change, RemoveAttribute) and name in attributes.WRITABLE_CORE:
            raise CoreAttributeRemoval(name)
        if name == "owner" and not ctx.is_admin:
            raise OwnerChangeDenied()

    @staticmethod
    def _check_values(min_ram: int, min_disk: int, properties: Mapping[str, str]) -> None:
        """Rules the image schema does not express (Glance checks them in code)."""
        for name, value in (("min_ram", min_ram), ("min_disk", min_disk)):
            if value < 0:
                raise InvalidAttributeValue(name, value, "Cannot be a negative value")
            if value > MAX_INTEGER:
                raise InvalidAttributeValue(name, value, f"Cannot be greater than {MAX_INTEGER}")
        for name, text in properties.items():
            if len(name) > MAX_PROPERTY_NAME:
                raise PropertyTooLong(
                    f"Property name is longer than {MAX_PROPERTY_NAME} characters."
                )
            if len(text) > MAX_PROPERTY_VALUE:
                raise PropertyTooLong(
                    f"Value of property {name!r} is longer than {MAX_PROPERTY_VALUE} characters."
                )

    def _check_quotas(self, properties: dict[str, str], tags: list[str]) -> None:
        limit = self.limits.image_property_quota
        if 0 <= limit < len(properties):
            raise QuotaExceeded(
                "The limit has been exceeded on the number of allowed image properties. "
                f"Attempted: {len(properties)}, Maximum: {limit}"
            )
        limit = self.limits.image_tag_quota
        if 0 <= limit < len(tags):
            raise QuotaExceeded(
                "The limit has been exceeded on the number of allowed image tags. "
                f"Attempted: {len(tags)}, Maximum: {limit}"
            )

    @staticmethod
    def _document(record: ImageRecord) -> dict[str, Any]:
        image = record.image
        return {
            **record.properties,
            **{name: getattr(image, name) for name in attributes.WRITABLE_COLUMNS},
            "tags": list(record.tags),
        }

    @staticmethod
    def _apply(document: dict[str, Any], changes: Sequence[ImageChange]) -> dict[str, Any]:
        """The document with the changes made in order."""
        document = dict(document)
        for change in changes:
            present = change.name in document
            if isinstance(change, RemoveAttribute):
                if not present:
                    raise PropertyMissing(change.name)
                del document[change.name]
                continue
            if change.must_be_absent and present:
                raise PropertyExists(change.name)
            if change.must_exist and not present:
                raise PropertyMissing(change.name)
            document[change.name] = change.value
        return document
