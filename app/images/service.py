"""Image use cases: each public method is one transaction and applies every domain rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.config import LimitSettings, LocationSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import BadRequest, Conflict, Forbidden, NotFound
from app.images import attributes, locations, policy
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
    PolicyDenied,
    PropertyExists,
    PropertyMissing,
    PropertyTooLong,
    QuotaExceeded,
    StatusActionRefused,
    TagNotFound,
    UnknownMarker,
)
from app.images.ingest import HASH_ALGORITHM
from app.images.locations import LocationChange, LocationEdit, ProbedLocation
from app.images.models import Image, ImageLocation, LocationStatus
from app.images.query import ImageListQuery
from app.images.repository import ImageRecord, ImageRepository
from app.images.status import ImageStatus, can_transition
from app.images.uploads import DISCARD_UPLOAD_JOB, UploadLeases
from app.jobs.queue import enqueue
from app.storage.registry import StoreRegistry

DELETE_DATA_JOB = "image.delete_data"
DELETE_LOCATION_JOB = "image.delete_location"
ADD_LOCATION_JOB = "image.add_location"

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


AttributeChange = SetAttribute | RemoveAttribute
ImageChange = AttributeChange | LocationChange


def _deduplicate(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class StoreNotOnThisNode(Conflict):
    def __init__(self, store_id: str):
        super().__init__(f"The selected store {store_id} is not available on this node.")


class OnlyCopy(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "Cannot delete image data from the only store containing it. Consider deleting "
            "the image instead."
        )


class NotInStore(NotFound):
    def __init__(self, image_id: str, store_id: str):
        super().__init__(f"Image {image_id} is not stored in store {store_id}.")


class StoreDeleteOfInactive(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "It's not allowed to remove image data from store if image status is not 'active'"
        )


class LocationApiRestricted(Forbidden):
    def __init__(self) -> None:
        super().__init__("http store must be enabled to use location API by normal user.")


class PendingDeleteRefused(BadRequest):
    """Delayed delete of an image with data that Glance's status table keeps from waiting for
    the scrubber (a deactivated one): Glance's 400, not a conflict."""

    def __init__(self, status: str):
        super().__init__(f"Image status transition from {status} to pending_delete is not allowed")


class ImageService:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        *,
        limits: LimitSettings,
        locations: LocationSettings,
        multistore: bool,
        delayed_delete: bool = False,
        on_job_enqueued: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.stores = stores
        self.limits = limits
        self.location_settings = locations
        self.multistore = multistore
        self.delayed_delete = delayed_delete
        self.on_job_enqueued = on_job_enqueued
        # Images are shown with their locations only when something in the answer needs them.
        self.shows_locations = (
            locations.show_multiple_locations or locations.show_image_direct_url or multistore
        )

    # --- reads -----------------------------------------------------------------------------

    def get(self, ctx: RequestContext, image_id: str) -> ImageRecord:
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = self.visible_image(repo, ctx, image_id)
            return self._load(repo, ctx, [image])[0]

    def list_images(self, ctx: RequestContext, query: ImageListQuery) -> list[ImageRecord]:
        policy.require_reader(ctx, "get_images")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            if query.marker is not None and not repo.is_listable(ctx, query, query.marker):
                raise UnknownMarker(query.marker)
            if query.limit == 0:
                return []
            return self._load(repo, ctx, repo.find_page(ctx, query))

    def list_locations(self, ctx: RequestContext, image_id: str) -> list[ImageLocation]:
        """`GET /v2/images/{id}/locations`: for services only."""
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = self.visible_image(repo, ctx, image_id)
            policy.require_service(ctx, "fetch_image_location")
            return self._load(repo, ctx, [image], with_locations=True)[0].locations

    # --- writes ----------------------------------------------------------------------------

    def create(self, ctx: RequestContext, new: NewImage) -> ImageRecord:
        record = self.new_record(ctx, new)
        try:
            with self.db.session() as session:
                self.insert(ImageRepository(session, lock=True), record)
        except IntegrityError as exc:  # a concurrent create with the same id won the race
            raise ImageIdTaken(record.image.id) from exc
        return record

    def new_record(self, ctx: RequestContext, new: NewImage) -> ImageRecord:
        """The image `new` describes, if the caller may create it (not stored yet)."""
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
        return ImageRecord(image, properties, tags)

    @staticmethod
    def insert(repo: ImageRepository, record: ImageRecord) -> None:
        """Stores a new image in the caller's transaction (ids are never reused)."""
        if repo.id_exists(record.image.id):
            raise ImageIdTaken(record.image.id)
        repo.add(record)

    async def update(
        self, ctx: RequestContext, image_id: str, changes: Sequence[ImageChange]
    ) -> ImageRecord:
        """A JSON patch, all or nothing. Locations it names are looked at in their stores
        first, outside the transaction, and only for a caller allowed to change them."""
        probed: dict[str, ProbedLocation | None] = {}
        urls = locations.named_urls(changes)
        if urls:
            await to_thread.run_sync(self._check_locations_changeable, ctx, image_id, changes)
            probed = await locations.probe(self.stores, urls)
        record, jobs = await to_thread.run_sync(self._update, ctx, image_id, changes, probed)
        if jobs:
            self.on_job_enqueued()
        return record

    def _check_locations_changeable(
        self, ctx: RequestContext, image_id: str, changes: Sequence[ImageChange]
    ) -> None:
        """Refuses, before any store is asked about them, location changes that would be
        refused whatever the locations are."""
        policy.require_reader(ctx, "get_image")
        with self.db.session(write=False) as session:
            image = self.visible_image(ImageRepository(session), ctx, image_id)
            self._authorize(ctx, image, changes)
            first = next(c for c in changes if not isinstance(c, SetAttribute | RemoveAttribute))
            locations.require_enabled(self.location_settings.show_multiple_locations, first)

    def _update(
        self,
        ctx: RequestContext,
        image_id: str,
        changes: Sequence[ImageChange],
        probed: dict[str, ProbedLocation | None],
    ) -> tuple[ImageRecord, bool]:
        """The patched image, and whether jobs were enqueued."""
        policy.require_reader(ctx, "get_image")
        attribute_changes = [c for c in changes if isinstance(c, SetAttribute | RemoveAttribute)]
        location_changes = [c for c in changes if not isinstance(c, SetAttribute | RemoveAttribute)]
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self.visible_image(repo, ctx, image_id)
            self._authorize(ctx, image, changes)
            record = self._load(repo, ctx, [image], with_locations=bool(location_changes))[0]
            for change in attribute_changes:
                self._check_changeable(ctx, change)
            document = self._apply(self._document(record), attribute_changes)
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
            edit = LocationEdit(
                image,
                record.locations,
                probed,
                enabled=self.location_settings.show_multiple_locations,
                quota=self.limits.image_location_quota,
                hash_algorithm=HASH_ALGORITHM,
            )
            for location_change in location_changes:
                edit.apply(location_change)

            for name in changed:
                setattr(image, name, document[name])
            image.updated_at = utcnow()
            repo.replace_properties(image.id, record.properties, properties)
            repo.replace_tags(image.id, record.tags, tags)
            session.add(image)
            jobs = bool(location_changes) and self._save_locations(session, repo, image, edit)
            return ImageRecord(image, properties, tags, edit.locations), jobs

    def delete(self, ctx: RequestContext, image_id: str) -> None:
        """As Glance's domain does it: with delayed delete on, an image with data only becomes
        `pending_delete`, hidden but restorable until the scrubber (app/images/scrubber.py)
        lets its bytes go; any other image becomes `deleted`, its bytes removed by a job."""
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            missing = NotFound(f"Failed to find image {image_id} to delete")
            image = self.visible_image(repo, ctx, image_id, missing=missing)
            policy.require_owner_member(ctx, image, "delete_image")
            if image.protected:
                raise ImageProtected(image_id)
            locations = [location.url for location in repo.locations(image.id)]
            pending = self.delayed_delete and bool(locations)
            if pending:
                if not can_transition(image.status, ImageStatus.PENDING_DELETE):
                    raise PendingDeleteRefused(image.status)
                now = utcnow()
                # Deleted as far as every reader can tell (Glance's image_destroy sets both);
                # the scrubber counts scrub_time from deleted_at. The locations stay active:
                # their bytes stay referenced, and a restore finds them.
                moved = repo.transition(
                    image.id,
                    from_=image.status,
                    to=ImageStatus.PENDING_DELETE,
                    is_deleted=True,
                    deleted_at=now,
                    updated_at=now,
                )
            else:
                moved = repo.transition(image.id, from_=image.status, to=ImageStatus.DELETED)
            if not moved:
                raise ImageChanged(image_id, "it was being deleted")
            # An upload still running (or whose process died) loses the image with its lease;
            # its partial bytes go with the rest.
            partial = UploadLeases.release_any(session, image.id)
            if pending:
                # Only the upload's bytes: the image's own wait for the scrubber (a data job
                # would also forget the locations that a restore needs).
                needs_job = partial is not None
                if partial is not None:
                    enqueue(session, DISCARD_UPLOAD_JOB, partial, lock=image.id)
            else:
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

    def delete_from_store(self, ctx: RequestContext, store_id: str, image_id: str) -> None:
        """`DELETE /v2/stores/{store_id}/{image_id}`: the image's copy in one store goes (its
        bytes by a job, after this commits); the image keeps its other copies."""
        if not self.multistore:
            raise NotFound()
        if store_id not in self.stores.ids():
            raise StoreNotOnThisNode(store_id)
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            missing = NotFound(f"Failed to find image {image_id}")
            image = self.visible_image(repo, ctx, image_id, missing=missing)
            policy.require_owner_reader(ctx, image, "get_image_location")
            policy.require_admin(ctx, "delete_image_location")
            if image.status != ImageStatus.ACTIVE:
                raise StoreDeleteOfInactive()
            copies = repo.locations(image.id)
            if len(copies) == 1:
                raise OnlyCopy()
            copy = next((row for row in copies if row.store_id == store_id), None)
            if copy is None:
                raise NotInStore(image_id, store_id)
            self._forget_locations(session, image, [copy])
        self.on_job_enqueued()

    async def add_location(
        self,
        ctx: RequestContext,
        image_id: str,
        url: str,
        validation_data: dict[str, str],
    ) -> None:
        """`POST /v2/images/{id}/locations`: the queued image becomes `importing`, and a job
        reads the location's bytes to hash them (and check them against `validation_data`)
        before the image becomes `active` with that location."""
        await to_thread.run_sync(self._begin_location_import, ctx, image_id, url, validation_data)
        self.on_job_enqueued()

    def _begin_location_import(
        self, ctx: RequestContext, image_id: str, url: str, validation_data: dict[str, str]
    ) -> None:
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self.visible_image(repo, ctx, image_id)
            if image.status != ImageStatus.QUEUED:
                raise locations.LocationsLocked("add", image.status)
            if not (ctx.is_service or (ctx.is_member and policy.owns(ctx, image))):
                raise PolicyDenied("add_image_location")
            store_id = locations.store_of(self.stores, url)
            # Other callers may only point at data that stays where it is (an http store).
            if not ctx.has_service_role and (
                store_id is None or not self.stores.is_read_only(store_id)
            ):
                raise LocationApiRestricted()
            locations.check_hashing_data(validation_data, HASH_ALGORITHM)
            if store_id is None:
                raise locations.InvalidLocation()
            if not repo.transition(image_id, from_=ImageStatus.QUEUED, to=ImageStatus.IMPORTING):
                raise ImageChanged(image_id, "its location was added")
            enqueue(
                session,
                ADD_LOCATION_JOB,
                {"image_id": image_id, "url": url, "validation_data": validation_data},
                lock=image_id,
            )

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

    def _load(
        self,
        repo: ImageRepository,
        ctx: RequestContext,
        images: Sequence[Image],
        *,
        with_locations: bool = False,
    ) -> list[ImageRecord]:
        """The images' records, with the locations this caller may see: none of a
        deactivated image, unless an admin asks (as in Glance's database layer)."""
        records = repo.load(images, with_locations=with_locations or self.shows_locations)
        if not ctx.is_admin:
            for record in records:
                if record.image.status == ImageStatus.DEACTIVATED:
                    record.locations = []
        return records

    @staticmethod
    def _authorize(ctx: RequestContext, image: Image, changes: Sequence[ImageChange]) -> None:
        """Glance's policy for each change, in order (a patch of nothing needs modify_image)."""
        if not changes:
            policy.require_owner_member(ctx, image, "modify_image")
        for change in changes:
            if isinstance(change, locations.RemoveLocation):
                policy.require_admin(ctx, "delete_image_location")
            elif isinstance(change, locations.AddLocation | locations.ReplaceLocations):
                if isinstance(change, locations.ReplaceLocations) and not change.locations:
                    raise locations.NoLocations()
                policy.require_owner_member(ctx, image, "set_image_location")
            else:
                policy.require_owner_member(ctx, image, "modify_image")

    def _save_locations(
        self, session: Session, repo: ImageRepository, image: Image, edit: LocationEdit
    ) -> bool:
        """Writes what `edit` made of the image's locations and data facts; whether jobs
        were enqueued (to delete removed locations' bytes)."""
        for position, row in enumerate(edit.locations):
            row.position = position
            session.add(row)
        facts = {key: value for key, value in edit.facts.items() if getattr(image, key) != value}
        if edit.status != image.status:
            session.flush()
            if not repo.transition(image.id, from_=image.status, to=edit.status, **facts):
                raise ImageChanged(image.id, "its locations changed")
            session.refresh(image)
        else:
            for key, value in facts.items():
                setattr(image, key, value)
        self._forget_locations(session, image, edit.removed)
        return bool(edit.removed)

    @staticmethod
    def _forget_locations(session: Session, image: Image, removed: Sequence[ImageLocation]) -> None:
        """The locations leave the image now; their bytes go by a job, once this commits."""
        for row in removed:
            row.status = LocationStatus.PENDING_DELETE
            session.add(row)
        session.flush()
        for row in removed:
            enqueue(
                session,
                DELETE_LOCATION_JOB,
                {"image_id": image.id, "location_id": row.id},
                lock=image.id,
            )

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
    def _check_changeable(ctx: RequestContext, change: AttributeChange) -> None:
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
    def _apply(document: dict[str, Any], changes: Sequence[AttributeChange]) -> dict[str, Any]:
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
