"""Interoperable image import (`POST /v2/images/{id}/import`): Glance's rules, then one
transaction that moves the image to `importing`, creates the task and enqueues the job that
runs the method (app/images/import_jobs.py).

The import lock is Glance's: the `os_glance_import_task` property names the running task.
Glance lets a new import steal a lock after an hour, because its imports run in threads of an
API process that may have died; Glint's run as durable jobs that always end their task, so a
lock is held exactly while its task is pending or processing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from app import logs
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import BadRequest, Conflict
from app.images import policy
from app.images.errors import ImageChanged
from app.images.models import Image
from app.images.repository import ImageRepository
from app.images.service import ImageService, NewImage
from app.images.status import ImageStatus
from app.jobs.models import Job, JobStatus
from app.jobs.queue import enqueue
from app.storage.registry import StoreRegistry
from app.tasks.models import FINISHED, Task, TaskType
from app.tasks.repository import TaskRepository

IMPORT_JOB = "image.import"
GLANCE_DIRECT = "glance-direct"
WEB_DOWNLOAD = "web-download"
COPY_IMAGE = "copy-image"
METHODS = (GLANCE_DIRECT, WEB_DOWNLOAD, COPY_IMAGE)

# Glance's bookkeeping properties (the reserved `os_glance` prefix: clients cannot set them).
IMPORT_TASK = "os_glance_import_task"
IMPORTING_TO = "os_glance_importing_to_stores"
FAILED_IMPORT = "os_glance_failed_import"

# A job that finds its worker died this many times gives up: the import then fails cleanly
# instead of being retried for ever (a poison image that kills its worker).
MAX_IMPORT_ATTEMPTS = 3


class ImportConflict(Conflict):
    pass


class StoreNotFound(Conflict):
    """An unknown store in an import is a 409 (an upload's is a 400), as in Glance."""

    def __init__(self, store_id: str):
        super().__init__(f"Store for identifier {store_id} not found")


@dataclass(frozen=True)
class ImportRequest:
    """A validated `POST .../import` body (Glance's deserializer checks)."""

    method: str
    uri: str | None
    stores: tuple[str, ...] | None
    all_stores: bool
    all_stores_must_succeed: bool
    # The body as sent: the task's `input.import_req`, as Glance records it.
    body: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any], enabled: Sequence[str]) -> ImportRequest:
        method = body.get("method")
        if not isinstance(method, dict):
            raise BadRequest("Import request requires a 'method' field.")
        name = method.get("name")
        if name is None:
            raise BadRequest("Import request requires a 'name' field.")
        if name not in enabled:
            raise BadRequest(f"Unknown import method name '{name}'.")
        must_succeed = body.get("all_stores_must_succeed", True)
        if not isinstance(must_succeed, bool):
            raise BadRequest("'all_stores_must_succeed' must be boolean value only")
        all_stores = body.get("all_stores", False)
        if not isinstance(all_stores, bool):
            raise BadRequest("'all_stores' must be boolean value only")
        stores = body.get("stores")
        if stores is not None and not (
            isinstance(stores, list) and all(isinstance(store, str) for store in stores)
        ):
            raise BadRequest("'stores' must be a list of store identifiers")
        uri = method.get("uri")
        return cls(
            method=name,
            uri=uri if isinstance(uri, str) else None,
            stores=None if stores is None else tuple(stores),
            all_stores=all_stores,
            all_stores_must_succeed=must_succeed,
            body=body,
        )


def attempt_key(image_id: str, task_id: str, attempt: int) -> str:
    """The object key an import attempt writes under (one per attempt, as the stores expect)."""
    return f"{image_id}.{task_id[:8]}.{attempt}"


def staging_key(image_id: str, task_id: str, attempt: int) -> str:
    """The key of what an attempt downloads into staging first (a web-download into stores
    that may fail one by one)."""
    return f"{attempt_key(image_id, task_id, attempt)}.staged"


def running_import_keys(db: Database) -> set[str]:
    """The keys that imports running under a live lease are writing: the staging purge of
    `glint scrub` must spare them however long a slow source keeps them unchanged."""
    with db.session(write=False) as session:
        rows = session.execute(
            sa.select(col(Job.payload), col(Job.attempts)).where(
                col(Job.name) == IMPORT_JOB,
                col(Job.status) == JobStatus.RUNNING,
                col(Job.lease_until) >= utcnow(),
            )
        ).all()
    keys: set[str] = set()
    for payload, attempt in rows:
        job = json.loads(payload)
        image_id, task_id = job["image_id"], job["task_id"]
        keys |= {attempt_key(image_id, task_id, attempt), staging_key(image_id, task_id, attempt)}
    return keys


def store_list(value: str | None) -> set[str]:
    return {store for store in (value or "").split(",") if store}


def joined(stores: set[str]) -> str:
    """Glance's form of a store list property: sorted, comma-separated."""
    return ",".join(sorted(stores))


@dataclass(frozen=True)
class LegacyImport:
    """A `POST /v2/tasks` body of Glance's legacy `import` type."""

    uri: object
    # The task's `input` as sent (the task shows it).
    input: dict[str, Any]
    image_properties: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> LegacyImport:
        for required in ("type", "input"):
            if required not in body:
                raise BadRequest(f"Task '{required}' is required")
        if body["type"] != TaskType.IMPORT:
            raise BadRequest(f"Invalid type value: {body['type']}")
        task_input = body["input"]
        if not isinstance(task_input, dict):
            raise BadRequest("Task 'input' must be an object")
        properties = task_input.get("image_properties", {})
        if not isinstance(properties, dict):
            raise BadRequest("Task input's 'image_properties' must be an object")
        return cls(task_input.get("import_from"), task_input, properties)


class ImportService:
    def __init__(
        self,
        db: Database,
        stores: StoreRegistry,
        images: ImageService,
        *,
        methods: Sequence[str],
        multistore: bool,
        check_uri: Callable[[object], str],
        on_job_enqueued: Callable[[], None] = lambda: None,
    ):
        """`check_uri`: the web-download filter, raising a 400 for a URI it refuses."""
        self.db = db
        self.stores = stores
        self.images = images
        self.methods = tuple(methods)
        self.multistore = multistore
        self.check_uri = check_uri
        self.on_job_enqueued = on_job_enqueued

    def import_image(
        self,
        ctx: RequestContext,
        image_id: str,
        body: dict[str, Any],
        *,
        store_header: str | None = None,
    ) -> None:
        request = ImportRequest.parse(body, self.methods)
        policy.require_reader(ctx, "get_image")
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = ImageService.visible_image(repo, ctx, image_id)
            self._check_status(image, request.method)
            if request.method == COPY_IMAGE:
                policy.require_admin(ctx, "copy_image")
            else:
                policy.require_owner_member(ctx, image, "modify_image")
            properties = repo.load([image])[0].properties
            self._check_lock(session, properties)
            stores = self._target_stores(request, store_header)
            if request.method == COPY_IMAGE:
                present = {row.store_id for row in repo.locations(image_id)}
                if request.all_stores:
                    stores = [store for store in stores if store not in present]
                    if not stores:
                        return  # already in every store: nothing to do, as Glance answers
                for store in stores:
                    if store in present:
                        raise BadRequest(f"Image is already present at store '{store}'")
            if not request.all_stores_must_succeed and not self.multistore:
                raise BadRequest(
                    f"All_stores_must_succeed can only be set with enabled_backends {request.uri}"
                )
            if request.method == WEB_DOWNLOAD:
                self.check_uri(request.uri)
            task_input = {"image_id": image.id, "import_req": request.body, "backend": stores}
            self._begin(
                session,
                repo,
                ctx,
                image,
                request,
                stores,
                properties,
                task_type=TaskType.API_IMAGE_IMPORT,
                task_input=task_input,
            )
        self.on_job_enqueued()

    def create_legacy_task(self, ctx: RequestContext, legacy: LegacyImport, new: NewImage) -> Task:
        """`POST /v2/tasks` of type `import`: one transaction creates the image `new`
        describes, the task and its web-download job (Glance creates the image when the task
        starts; here it exists, `importing`, from the start)."""
        policy.require_admin(ctx, "tasks_api_access")
        record = self.images.new_record(ctx, new)
        if not (record.image.disk_format and record.image.container_format):
            raise BadRequest(
                "The task's image_properties need a disk_format and a container_format."
            )
        try:
            uri = self.check_uri(legacy.uri)
        except BadRequest as refused:
            raise BadRequest(str(refused).replace("web-download", "legacy import task")) from None
        request = ImportRequest(
            method=WEB_DOWNLOAD,
            uri=uri,
            stores=None,
            all_stores=False,
            all_stores_must_succeed=True,
            body=legacy.input,
        )
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            ImageService.insert(repo, record)
            task = self._begin(
                session,
                repo,
                ctx,
                record.image,
                request,
                [self.stores.default.store_id],
                {},
                task_type=TaskType.IMPORT,
                task_input=legacy.input,
            )
        self.on_job_enqueued()
        return task

    @staticmethod
    def _check_status(image: Image, method: str) -> None:
        """Glance's checks, in its order."""
        if image.status == ImageStatus.ACTIVE and method != COPY_IMAGE:
            raise ImportConflict("Image with status active cannot be target for import")
        if image.status != ImageStatus.ACTIVE and method == COPY_IMAGE:
            raise ImportConflict("Only images with status active can be targeted for copying")
        if image.status != ImageStatus.QUEUED and method == WEB_DOWNLOAD:
            raise ImportConflict(f"Image needs to be in 'queued' state to use '{method}' method")
        if image.status != ImageStatus.UPLOADING and method == GLANCE_DIRECT:
            raise ImportConflict(
                f"Image needs to be staged before '{GLANCE_DIRECT}' method can be used"
            )
        if not image.container_format:
            raise ImportConflict("'container_format' needs to be set before import")
        if not image.disk_format:
            raise ImportConflict("'disk_format' needs to be set before import")

    @staticmethod
    def _check_lock(session: Session, properties: dict[str, str]) -> None:
        """A task that has not finished holds the image; a finished one's lock is stale."""
        holder = properties.get(IMPORT_TASK)
        if not holder:
            return
        task = TaskRepository(session).find(holder)
        if task is not None and task.status not in FINISHED:
            raise ImportConflict("Image has active task")

    def _target_stores(self, request: ImportRequest, store_header: str | None) -> list[str]:
        """Glance's `get_stores_from_request`; one store, the default, without multi-store."""
        if not self.multistore:
            return [self.stores.default.store_id]
        if request.all_stores:
            if request.stores is not None or store_header is not None:
                raise BadRequest(
                    "All_stores parameter can't be used with x-image-meta-store header or "
                    "stores parameter"
                )
            # Read-only stores (http) take no data, and Glance leaves them out.
            return [store for store in self.stores.ids() if not self.stores.is_read_only(store)]
        if request.stores is not None:
            if store_header is not None:
                raise BadRequest(
                    "Stores parameter and x-image-meta-store header can't be both specified"
                )
            stores = list(dict.fromkeys(request.stores))
        else:
            stores = [store_header or self.stores.default.store_id]
        for store in stores:
            if store not in self.stores.ids():
                raise StoreNotFound(store)
        return stores

    def _begin(
        self,
        session: Session,
        repo: ImageRepository,
        ctx: RequestContext,
        image: Image,
        request: ImportRequest,
        stores: list[str],
        properties: dict[str, str],
        *,
        task_type: TaskType,
        task_input: dict[str, Any],
    ) -> Task:
        task = TaskRepository(session).add(
            type=task_type,
            owner=ctx.project_id,
            user_id=ctx.user_id,
            request_id=logs.current().request_id,
            image_id=image.id,
            input=task_input,
        )
        if request.method != COPY_IMAGE and not repo.transition(
            image.id, from_=image.status, to=ImageStatus.IMPORTING
        ):
            raise ImageChanged(image.id, "its import started")
        # Store ids are shown only with multi-store, as in Glance (its single store has none).
        shown = set(stores) if self.multistore else set()
        repo.set_properties(
            image.id,
            {
                IMPORT_TASK: task.id,
                IMPORTING_TO: joined(store_list(properties.get(IMPORTING_TO)) | shown),
                FAILED_IMPORT: joined(store_list(properties.get(FAILED_IMPORT)) - shown),
            },
        )
        enqueue(
            session,
            IMPORT_JOB,
            {
                "task_id": task.id,
                "image_id": image.id,
                "method": request.method,
                "uri": request.uri,
                "stores": stores,
                "all_stores_must_succeed": request.all_stores_must_succeed,
                # What the image went back to, were the import to fail.
                "previous_status": image.status,
            },
            lock=image.id,
            # Attempts beyond MAX_IMPORT_ATTEMPTS only end the task (the handler gives up).
            max_attempts=MAX_IMPORT_ATTEMPTS + 2,
        )
        return task
