"""Image use cases: each public method is one transaction and applies every domain rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
from sqlalchemy.exc import IntegrityError

from app.config import LimitSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    ImageIdTaken,
    ImageNotFound,
    NotFound,
    QuotaExceeded,
    ReadOnlyAttribute,
)
from app.images import attributes, policy
from app.images.models import Image
from app.images.query import ImageListQuery
from app.images.repository import ImageRecord, ImageRepository
from app.images.status import ImageStatus
from app.jobs.queue import enqueue

DELETE_DATA_JOB = "image.delete_data"

# Validates a whole image document against the published image schema; raises SchemaViolation.
ImageValidator = Callable[[dict[str, Any]], None]

MAX_PROPERTY_NAME = 255
MAX_INTEGER = 2**31 - 1  # min_ram and min_disk are 32-bit columns, as in Glance
MAX_PROPERTY_VALUE = 65535


@dataclass(frozen=True)
class PatchOperation:
    """One JSON-patch operation on a top-level image attribute, already well-formed."""

    op: str  # add | replace | remove
    name: str
    value: Any = None
    # The deprecated v2.0 patch media type refuses `add` of an existing property.
    strict_add: bool = False


def _deduplicate(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class ImageService:
    def __init__(
        self,
        db: Database,
        *,
        limits: LimitSettings,
        validate: ImageValidator,
        on_job_enqueued: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.limits = limits
        self.validate = validate
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
                raise BadRequest(f"No image found with ID {query.marker}")
            if query.limit == 0:
                return []
            return repo.load(repo.find_page(ctx, query))

    # --- writes ----------------------------------------------------------------------------

    def create(self, ctx: RequestContext, body: dict[str, Any]) -> ImageRecord:
        for name in body:
            self._check_settable(name)
        self.validate(body)
        self._check_values(body)
        policy.require_member(ctx, "add_image")
        owner = body.get("owner", ctx.project_id)
        if owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden(detail=f"You are not permitted to create images owned by '{owner}'")
        visibility = body.get("visibility", "shared")
        policy.require_visibility_allowed(ctx, visibility)
        properties = {k: v for k, v in body.items() if k not in attributes.BASE}
        tags = _deduplicate(body.get("tags", []))
        self._check_quotas(properties, tags)

        now = utcnow()
        image = Image(
            id=body.get("id") or str(uuid.uuid4()),
            owner=owner,
            visibility=visibility,
            created_at=now,
            updated_at=now,
            **{
                k: body[k]
                for k in attributes.WRITABLE_COLUMNS
                if k in body and k not in ("owner", "visibility")
            },
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
        self, ctx: RequestContext, image_id: str, operations: list[PatchOperation]
    ) -> ImageRecord:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self.visible_image(repo, ctx, image_id)
            policy.require_owner_member(ctx, image, "modify_image")
            record = repo.load([image])[0]
            for operation in operations:
                self._check_patchable(ctx, operation)
            document = self._patch(self._document(record), operations)
            self.validate(document)
            self._check_values(document)
            changed = {k for k in attributes.WRITABLE_COLUMNS if document[k] != getattr(image, k)}
            if changed & {"disk_format", "container_format"} and image.status != ImageStatus.QUEUED:
                name = sorted(changed & {"disk_format", "container_format"})[0]
                raise Forbidden(f"Attribute '{name}' can be only replaced for a queued image.")
            if "visibility" in changed:
                policy.require_visibility_allowed(ctx, document["visibility"])
            properties = {k: v for k, v in document.items() if k not in attributes.BASE}
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
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            if not repo.transition(image.id, from_=image.status, to=ImageStatus.DELETED):
                raise Conflict(f"Image {image_id} changed while it was being deleted; retry.")
            locations = [location.url for location in repo.locations(image.id)]
            if locations:
                # The bytes go only once this transaction has committed, by a job that
                # exists exactly when the deletion does.
                enqueue(
                    session,
                    DELETE_DATA_JOB,
                    {"image_id": image.id, "locations": locations},
                    lock=image.id,
                )
        if locations:
            self.on_job_enqueued()

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
                self.validate({"tags": [tag]})
                if tag in tags:
                    return
                new_tags = [*tags, tag]
                self._check_quotas({}, new_tags)
            else:
                if tag not in tags:
                    raise NotFound()
                new_tags = [t for t in tags if t != tag]
            repo.replace_tags(image.id, tags, new_tags)
            image.updated_at = utcnow()
            session.add(image)

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
    def _check_settable(name: str) -> None:
        if (name in attributes.READ_ONLY and name != "id") or name in attributes.DISALLOWED:
            raise ReadOnlyAttribute(name)
        if attributes.is_reserved(name):
            raise Forbidden(detail=f"Attribute '{name}' is reserved.")

    @staticmethod
    def _check_patchable(ctx: RequestContext, operation: PatchOperation) -> None:
        name = operation.name
        if name in attributes.READ_ONLY or name in attributes.DISALLOWED:
            raise ReadOnlyAttribute(name)
        if attributes.is_reserved(name):
            raise Forbidden(detail=f"Attribute '{name}' is reserved.")
        if operation.op == "remove" and name in attributes.WRITABLE_CORE:
            raise Forbidden(detail=f"Property {name} may not be removed.")
        if name == "owner" and not ctx.is_admin:
            raise Forbidden(detail="Owner can't be updated by non admin.")

    def _check_values(self, document: dict[str, Any]) -> None:
        """Rules the image schema does not express (Glance checks them in code)."""
        for name in ("min_ram", "min_disk"):
            value = document.get(name)
            if isinstance(value, float):  # JSON Schema counts 5.0 as an integer
                value = document[name] = int(value)
            if isinstance(value, int) and value < 0:
                raise BadRequest(
                    f"Invalid value '{value}' for parameter '{name}': Cannot be a negative value"
                )
            if isinstance(value, int) and value > MAX_INTEGER:
                raise BadRequest(
                    f"Invalid value '{value}' for parameter '{name}': "
                    f"Cannot be greater than {MAX_INTEGER}"
                )
        for name, value in document.items():
            if name in attributes.BASE:
                continue
            if len(name) > MAX_PROPERTY_NAME:
                raise BadRequest(f"Property name is longer than {MAX_PROPERTY_NAME} characters.")
            if isinstance(value, str) and len(value) > MAX_PROPERTY_VALUE:
                raise BadRequest(
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
    def _patch(document: dict[str, Any], operations: list[PatchOperation]) -> dict[str, Any]:
        """Applies the operations in order; RFC 6902 already refuses to replace or remove a
        missing member, which is Glance's 409."""
        document = dict(document)
        for operation in operations:
            if operation.strict_add and operation.op == "add" and operation.name in document:
                raise Conflict(detail=f"Property {operation.name} already present.")
            if operation.op != "add" and operation.name not in document:
                raise Conflict(detail=f"Property {operation.name} does not exist.")
            step: dict[str, Any] = {
                "op": operation.op,
                "path": "/" + jsonpointer.escape(operation.name),
            }
            if operation.op != "remove":
                step["value"] = operation.value
            try:
                document = jsonpatch.apply_patch(document, [step], in_place=True)
            except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
                raise Conflict() from exc
        return document
