"""The `glint` command: serve, db upgrade, openapi."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import click

from app.config import Settings, SettingsError, load_settings

log = logging.getLogger("glint")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
def main() -> None:
    """Glint: the OpenStack Image service API, fast."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 9292).")
@click.option(
    "--workers", default=None, type=int, help="Server processes (default: one per CPU core)."
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the API server (migrations are applied first)."""
    import uvicorn

    from app.api.header_timeout import http_protocol
    from app.db.migrate import upgrade

    settings = _settings()
    host = host or settings.server.host
    port = port or settings.server.port
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
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
        log_level="info",
        access_log=False,
        server_header=False,
        # Room for every header at its longest line would be 100 x 16 KiB; a real client's head
        # is a few KiB, a Keystone token included.
        http=http_protocol(
            settings.server.header_timeout, max_head_bytes=settings.limits.max_header_line * 4
        ),
    )


@main.command()
def worker() -> None:
    """Run background jobs (such as deleting image data) until stopped. Any number of workers
    and API processes may share one database."""
    import asyncio

    from app.db.engine import Database
    from app.main import build_upload_leases, build_worker
    from app.storage.registry import StoreRegistry

    settings = _settings()
    database = Database(settings.database_url, pool_size=settings.database.pool_size)
    stores = StoreRegistry.from_settings(settings.storage, settings.data_dir)
    running = build_worker(settings, database, stores, build_upload_leases(settings, database))
    log.info("worker %s started", running.name)
    try:
        asyncio.run(running.run_forever())
    except KeyboardInterrupt:
        pass
    finally:
        database.dispose()


@main.command()
@click.option(
    "--older-than-hours",
    default=24.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Only what has not changed for this long (an upload still running keeps changing).",
)
def scrub(older_than_hours: float) -> None:
    """Clean up after crashed servers now, rather than when a worker next looks: uploads whose
    lease ran out are reset to `queued` (their partial bytes removed by a job), and staged files
    that no live upload holds are removed."""
    import asyncio
    from datetime import timedelta

    from app.db.engine import Database
    from app.images.data import ImageDataService
    from app.main import build_upload_leases
    from app.storage.registry import StoreRegistry

    settings = _settings()
    database = Database(settings.database_url)
    try:
        data = ImageDataService(
            database,
            StoreRegistry.from_settings(settings.storage, settings.data_dir),
            build_upload_leases(settings, database),
            limits=settings.limits,
            uploads=settings.uploads,
        )
        restored, removed = asyncio.run(data.scrub(timedelta(hours=older_than_hours)))
    finally:
        database.dispose()
    click.echo(f"{restored} stalled uploads reset to queued, {removed} staging files removed")


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to the configured database (SQLite, PostgreSQL, MySQL/MariaDB)."""
    from app.db.migrate import upgrade

    settings = _settings()
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
