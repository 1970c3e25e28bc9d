"""Alembic environment: the URL comes from the caller's config (see app.db.migrate); the tables
from app.tables, which collects them from the domain packages."""

from __future__ import annotations

from alembic import context

from app.db.engine import Database
from app.tables import metadata

config = context.config


def run_migrations() -> None:
    # `alembic -x url=...` (see alembic.ini) or what app.db.migrate sets.
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    assert url, "app.db.migrate sets sqlalchemy.url"
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=database.is_sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        database.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use `glint db upgrade`")
run_migrations()
