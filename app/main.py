"""The application factory: every resource is built here from Settings, nothing at import."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from anyio import to_thread
from fastapi import Depends, FastAPI

from app.api import docs, errors, versions
from app.api import metrics as metrics_api
from app.api.deps import reject_unexpected_body
from app.api.middleware import EdgeMiddleware
from app.api.v2 import (
    image_actions,
    image_data,
    image_import,
    image_locations,
    images,
    json_schemas,
    members,
    tags,
    tasks,
)
from app.api.v2 import (
    stores as stores_api,
)
from app.api.v2.schemas import ImageView
from app.auth import build_strategy
from app.config import Settings, load_settings
from app.db.engine import Database
from app.images import import_jobs, web_download
from app.images import jobs as image_jobs
from app.images.data import ImageDataService
from app.images.imports import GLANCE_DIRECT, ImportService
from app.images.members import MemberService
from app.images.scrubber import Scrubber
from app.images.service import ImageService
from app.images.stores import StoreCatalog
from app.images.uploads import UploadLeases
from app.jobs.queue import JobQueue
from app.jobs.worker import AliveHook, Worker
from app.metrics import NO_METRICS, Metrics, PrometheusMetrics
from app.storage.registry import StoreRegistry
from app.tasks.service import TaskService

_API_ROUTERS = (
    images.router,
    image_data.router,
    image_data.staging_router,
    image_import.router,
    image_locations.router,
    image_actions.router,
    tags.router,
    members.router,
    json_schemas.router,
    stores_api.router,
    tasks.router,
)


def build_upload_leases(settings: Settings, db: Database) -> UploadLeases:
    return UploadLeases(db, lease_seconds=settings.uploads.lease_seconds)


def build_metrics(settings: Settings) -> Metrics:
    return PrometheusMetrics() if settings.metrics.enabled else NO_METRICS


def build_worker(
    settings: Settings,
    db: Database,
    stores: StoreRegistry,
    leases: UploadLeases,
    metrics: Metrics = NO_METRICS,
    on_alive: AliveHook | None = None,
) -> Worker:
    """The background worker with every job handler and sweep; the API's and `glint worker`'s.
    Jobs that `leases` enqueues wake it. With Prometheus metrics, they count the jobs in the
    queue too (`glint_jobs`)."""

    async def recover_uploads() -> None:
        await to_thread.run_sync(leases.recover_expired)

    scrubber = Scrubber(db, settings.scrubber)

    async def scrub_pending_deletes() -> None:
        await to_thread.run_sync(scrubber.scrub)

    # Twice per lease: an upload whose process died is recovered within about two leases.
    sweeps = [(settings.uploads.lease_seconds / 2, recover_uploads)]
    # Off, nothing becomes pending delete; what an earlier run left is `glint scrub`'s.
    if settings.scrubber.delayed_delete:
        sweeps.append((settings.scrubber.wakeup_time, scrub_pending_deletes))
    worker = Worker(
        JobQueue(db, lease=timedelta(seconds=settings.jobs.lease_seconds)),
        {
            **image_jobs.handlers(db, stores, settings.limits),
            **import_jobs.handlers(
                db,
                stores,
                size_cap=settings.limits.image_size_cap,
                open_download=functools.partial(web_download.open_download, settings.import_),
                multistore=settings.storage.multistore_enabled,
            ),
        },
        poll_interval=settings.jobs.poll_interval,
        sweeps=sweeps,
        metrics=metrics,
        on_alive=on_alive,
    )
    leases.on_job_enqueued = worker.wake
    if isinstance(metrics, PrometheusMetrics):
        metrics.track_jobs(worker.queue.counts, worker.handlers)
    return worker


def create_app(
    settings: Settings, *, database: Database | None = None, stores: StoreRegistry | None = None
) -> FastAPI:
    """`database` and `stores`, when given, are used instead of those the settings describe."""
    db = database or Database(
        settings.database_url, echo=settings.database.echo, pool_size=settings.database.pool_size
    )

    metrics = build_metrics(settings)
    stores = stores or StoreRegistry.from_settings(
        settings.storage, settings.data_dir, metrics=metrics
    )
    leases = build_upload_leases(settings, db)
    worker = build_worker(settings, db, stores, leases, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        running = asyncio.create_task(worker.run_forever()) if settings.jobs.run_in_api else None
        yield
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        if database is None:
            db.dispose()
        metrics.close()

    app = FastAPI(
        title="Glint",
        version="0.1.0",
        description="The OpenStack Image service API (Glance v2), fast.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=docs.operation_id,
    )
    state = app.state
    state.settings = settings
    state.db = db
    state.auth = build_strategy(settings.auth)
    multistore = settings.storage.multistore_enabled
    state.v2_minors = versions.v2_minors(multistore=multistore, cache=False)
    state.json_schemas = json_schemas.build_all(settings.image_formats)
    import_methods = settings.import_.methods
    state.image_create_headers = {"OpenStack-image-import-methods": ",".join(import_methods)}
    if multistore:
        state.image_create_headers["OpenStack-image-store-ids"] = ",".join(stores.ids())
    state.image_view = ImageView(
        show_locations=settings.locations.show_multiple_locations,
        show_direct_url=settings.locations.show_image_direct_url,
        multistore=multistore,
        store_weight=stores.weight,
    )
    state.stores = stores
    state.worker = worker
    state.metrics = metrics
    state.image_validator = json_schemas.make_validator(state.json_schemas["image"])
    state.image_service = ImageService(
        db,
        stores,
        limits=settings.limits,
        locations=settings.locations,
        multistore=multistore,
        delayed_delete=settings.scrubber.delayed_delete,
        on_job_enqueued=worker.wake,
    )
    state.data_service = ImageDataService(
        db,
        stores,
        leases,
        limits=settings.limits,
        uploads=settings.uploads,
        staging_enabled=GLANCE_DIRECT in import_methods,
        metrics=metrics,
    )
    state.member_service = MemberService(db, limits=settings.limits)
    state.import_service = ImportService(
        db,
        stores,
        state.image_service,
        methods=import_methods,
        multistore=multistore,
        check_uri=functools.partial(web_download.check_uri, settings=settings.import_),
        on_job_enqueued=worker.wake,
    )
    state.store_catalog = StoreCatalog(stores, multistore=multistore)
    state.task_service = TaskService(db)

    body_check = [Depends(reject_unexpected_body)]
    app.include_router(versions.router, dependencies=body_check)
    for router in _API_ROUTERS:
        app.include_router(router, dependencies=body_check)
    state.api_routes = [route for router in _API_ROUTERS for route in router.routes]
    if settings.metrics.enabled:
        app.include_router(metrics_api.router)

    docs.install(app)
    errors.install(app)
    app.add_middleware(
        EdgeMiddleware,
        v2_minors=state.v2_minors,
        versions_response=versions.multiple_choices,
        max_request_id_length=settings.limits.max_request_id_length,
        max_header_line=settings.limits.max_header_line,
        metrics=metrics,
    )
    return app


def create_app_from_environment() -> FastAPI:
    """The factory each server process calls: settings from the environment and GLINT_CONFIG."""
    return create_app(load_settings())
