"""The `glint` command: serve, worker, scrub, db upgrade, openapi."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from app import logs
from app.config import LOG_LEVELS, Settings, SettingsError, load_settings

log = logging.getLogger("glint")

# prometheus-client's multiprocess mode (see app/metrics.py).
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_HEARTBEAT = Path(tempfile.gettempdir()) / "glint-worker.heartbeat"


def _settings() -> Settings:
    """The settings, and logging set up as they (and `glint --log-level`) say."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    logs.configure(_log_level(settings), settings.logging.format)
    return settings


def _log_level(settings: Settings) -> str:
    given: str | None = click.get_current_context().find_root().params.get("log_level")
    return given.lower() if given else settings.logging.level


@contextmanager
def _metrics_directory(settings: Settings) -> Iterator[None]:
    """A fresh, private PROMETHEUS_MULTIPROC_DIR for the server processes of one `glint serve`
    (they inherit the environment), removed when it ends: their metrics are added up from
    there, and none are left from an earlier run."""
    if not settings.metrics.enabled:
        yield
        return
    previous = os.environ.get(MULTIPROC_DIR)
    directory = tempfile.mkdtemp(prefix="glint-metrics-")
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
@click.version_option(package_name="glint", prog_name="glint", message="%(prog)s %(version)s")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log this and more severe (default: GLINT_LOGGING__LEVEL, else info).",
)
def main(log_level: str | None) -> None:
    """Glint: the OpenStack Image service API, fast."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 9292).")
@click.option(
    "--workers",
    default=None,
    type=int,
    help="Server processes (default: one per CPU this process may use).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the API server (migrations are applied first)."""
    settings = _settings()
    # Before anything imports prometheus-client, which picks its mode when imported.
    with _metrics_directory(settings):
        _serve(settings, host or settings.server.host, port or settings.server.port, workers)


def _serve(settings: Settings, host: str, port: int, workers: int | None) -> None:
    import uvicorn

    from app.api.header_timeout import http_protocol
    from app.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    level = _log_level(settings)
    if settings.auth.strategy == "noauth" and not _is_loopback(host):
        log.warning(
            "!!! noauth on %s: every request without identity headers acts as project %r with "
            "roles %s, and identity headers are trusted as sent. Put Keystone's auth_token "
            "middleware (or a proxy that sets and strips X-Identity-Status) in front. !!!",
            host,
            settings.auth.default_project_id,
            ",".join(settings.auth.default_roles),
        )
    uvicorn.run(
        "app.main:create_app_from_environment",
        factory=True,
        workers=workers or settings.server.workers,
        host=host,
        port=port,
        # Every server process sets its logging up from this (uvicorn's loggers included).
        log_config=logs.dict_config(level, settings.logging.format),
        log_level=level,
        # Glint's own access log (app/api/middleware.py) says more.
        access_log=False,
        server_header=False,
        # Room for every header at its longest line would be 100 x 16 KiB; a real client's head
        # is a few KiB, a Keystone token included.
        http=http_protocol(
            settings.server.header_timeout, max_head_bytes=settings.limits.max_header_line * 4
        ),
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    log.info("worker stopping (%s)", signal.Signals(signum).name)
    raise SystemExit(0)


@main.command()
@click.option(
    "--check",
    is_flag=True,
    help="Run no jobs: exit 0 if the worker beating --heartbeat is alive and the database "
    "answers, else 1 (a container healthcheck).",
)
@click.option(
    "--heartbeat",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_HEARTBEAT,
    show_default=True,
    help="The file the worker keeps fresh while it works (one per worker on a machine).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics (job failures, store errors) on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="The address for --metrics-port.",
)
def worker(check: bool, heartbeat: Path, metrics_port: int | None, metrics_host: str) -> None:
    """Run background jobs (such as deleting image data) until stopped. Any number of workers
    and API processes may share one database."""
    import asyncio

    from app.db.engine import Database
    from app.jobs.heartbeat import Heartbeat, why_unhealthy
    from app.main import build_metrics, build_upload_leases, build_worker
    from app.metrics import NO_METRICS, PrometheusMetrics
    from app.storage.registry import StoreRegistry

    settings = _settings()
    database = Database(settings.database_url, pool_size=settings.database.pool_size)
    if check:
        try:
            problem = why_unhealthy(heartbeat) or (
                None if database.is_reachable() else "the database does not answer"
            )
        finally:
            database.dispose()
        if problem:
            raise click.ClickException(problem)
        click.echo("worker alive, database reachable")
        return
    if metrics_port is not None and not settings.metrics.enabled:
        raise click.ClickException("--metrics-port: metrics are off (GLINT_METRICS__ENABLED)")
    # Recorded only where they can be read.
    metrics = build_metrics(settings) if metrics_port is not None else NO_METRICS
    stores = StoreRegistry.from_settings(settings.storage, settings.data_dir, metrics=metrics)
    beating = Heartbeat(heartbeat)
    running = build_worker(
        settings,
        database,
        stores,
        build_upload_leases(settings, database),
        metrics,
        on_alive=beating.beat,
    )
    if isinstance(metrics, PrometheusMetrics) and metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, metrics_host, registry=metrics.exposition_registry)
        log.info("worker metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    log.info("worker %s started", running.name)
    # SIGTERM (`docker stop`) stops it as Ctrl-C does: jobs cancelled (their leases run out and
    # they run again elsewhere), then the clean-up below.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        asyncio.run(running.run_forever())
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        beating.stop()
        metrics.close()
        database.dispose()


@main.command()
@click.option(
    "--older-than-hours",
    default=24.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Only what has not changed for this long (an upload still running keeps changing).",
)
@click.option(
    "--restore",
    "restore_id",
    metavar="IMAGE_ID",
    default=None,
    help="Only put this pending_delete image back to active (undo a delayed delete).",
)
def scrub(older_than_hours: float, restore_id: str | None) -> None:
    """Clean up now, rather than when a worker next looks: uploads of crashed servers whose
    lease ran out are reset to `queued` (their partial bytes removed by a job), staged files
    that no live upload holds are removed, and images pending delete for longer than
    GLINT_SCRUBBER__SCRUB_TIME are scrubbed (deleted, their data removed by a job)."""
    import asyncio
    from datetime import timedelta

    from app.db.engine import Database
    from app.errors import GlintError
    from app.images.data import ImageDataService
    from app.images.scrubber import Scrubber
    from app.main import build_upload_leases
    from app.storage.registry import StoreRegistry

    settings = _settings()
    database = Database(settings.database_url)
    try:
        scrubber = Scrubber(database, settings.scrubber)
        if restore_id is not None:
            try:
                scrubber.restore(restore_id)
            except GlintError as error:
                raise click.ClickException(str(error)) from error
            click.echo(f"image {restore_id} restored to active")
            return
        data = ImageDataService(
            database,
            StoreRegistry.from_settings(settings.storage, settings.data_dir),
            build_upload_leases(settings, database),
            limits=settings.limits,
            uploads=settings.uploads,
        )
        restored, removed = asyncio.run(data.scrub(timedelta(hours=older_than_hours)))
        scrubbed = scrubber.scrub()
    finally:
        database.dispose()
    click.echo(f"{restored} stalled uploads reset to queued, {removed} staging files removed")
    click.echo(f"{scrubbed} images pending delete scrubbed (a worker deletes their data)")


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to the configured database (SQLite, PostgreSQL, MySQL/MariaDB)."""
    settings = _settings()
    from app.db.migrate import upgrade  # after the logging set-up: Alembic logs when imported

    upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}")


@main.command()
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def openapi(output: Path | None) -> None:
    """Print the OpenAPI document of the v2 API (what openapi/v2.json holds)."""
    from app.api.openapi import render_document

    text = render_document()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


if __name__ == "__main__":
    main()
