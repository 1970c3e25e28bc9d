"""Fixtures: a migrated database of the kind named by GLINT_TEST_DB, and clients for the app.

GLINT_TEST_DB=sqlite (default) | postgresql | mysql. For the servers, a throwaway database is
created for the run and dropped at its end; a server that cannot be reached fails the run (it is
never skipped). Server URLs: GLINT_TEST_POSTGRES_URL, GLINT_TEST_MYSQL_URL.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app import logs as app_logs
from app.config import Settings, default_settings
from app.db.engine import Database, normalise_url
from app.db.migrate import upgrade
from app.main import create_app
from app.tables import metadata
from tests import services
from tests.services import KeystoneService, SwiftService

SERVER_URLS = {
    "postgresql": os.environ.get(
        "GLINT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get("GLINT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql"),
}


def _throwaway_database(kind: str) -> Iterator[str]:
    server = normalise_url(SERVER_URLS[kind])
    name = f"glint_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        pytest.fail(f"GLINT_TEST_DB={kind} but its server is unreachable: {exc}", pytrace=False)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kind = os.environ.get("GLINT_TEST_DB", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'glint.db'}"
    elif kind in SERVER_URLS:
        yield from _throwaway_database(kind)
    else:
        pytest.fail(f"GLINT_TEST_DB must be sqlite, postgresql or mysql, not {kind!r}")


@pytest.fixture(scope="session")
def migrated_database(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def db(migrated_database: Database) -> Iterator[Database]:
    """The migrated database, emptied after each test."""
    yield migrated_database
    with migrated_database.session() as session:
        for table in reversed(metadata.sorted_tables):
            session.execute(table.delete())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Defaults, in a fresh data folder; background jobs run only when a test runs them."""
    defaults = default_settings()
    return defaults.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "jobs": defaults.jobs.model_copy(update={"run_in_api": False}),
        }
    )


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, database=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def isolated_logging() -> Iterator[None]:
    """Undoes what `app.logs.configure` (run by CLI commands invoked in-process) does to this
    process's logging: its handler would outlive the test, writing to a closed stream."""
    loggers = [
        logging.getLogger(),
        *map(logging.getLogger, app_logs.dict_config("info", "text")["loggers"]),
    ]
    saved = [
        (logger, logger.level, logger.handlers[:], logger.filters[:], logger.propagate)
        for logger in loggers
    ]
    yield
    for logger, level, handlers, filters, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.propagate = propagate


@pytest.fixture(scope="session")
def swift_service() -> SwiftService:
    """Swift with tempauth and the S3 API on 127.0.0.1:8280, started by scripts/swift.sh."""
    return services.swift_service()


@pytest.fixture(scope="session")
def keystone_service() -> KeystoneService:
    """Keystone on 127.0.0.1:5080 and Swift behind it on :8281, started by scripts/keystone.sh."""
    return services.keystone_service()
