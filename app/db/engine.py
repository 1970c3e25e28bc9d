"""Engines and sessions for SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlmodel import Session

# The drivers Glint installs, used when a URL names only the database kind.
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def normalise_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=_DEFAULT_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_engine(url: URL, *, immediate: bool, echo: bool) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is wrong).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A write transaction takes SQLite's write lock up front, so concurrent writers queue on
        # busy_timeout instead of failing with "database is locked" when a read lock upgrades.
        connection.exec_driver_sql(begin)

    return engine


class Database:
    """Owns the engines; hands out sessions that commit on success and roll back on error."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10):
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = threading.Lock()
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url, immediate=True, echo=echo)
            self._read_engine = _sqlite_engine(self.url, immediate=False, echo=echo)
        else:
            self.engine = sa.create_engine(
                self.url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
            )
            self._read_engine = self.engine

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        engine = self.engine if write else self._read_engine
        # SQLite runs one write transaction at a time. Writers of this process queue on a lock
        # (woken at once) rather than in SQLite's busy handler, which polls with growing sleeps
        # and gives concurrent writes long tail latencies; only other processes meet it.
        lock = self._write_lock if write and self.is_sqlite else contextlib.nullcontext()
        with lock, Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def is_reachable(self) -> bool:
        try:
            with self._read_engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()
