"""Table metadata shared by every model: constraint names and column types that behave the same
on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlmodel import SQLModel

# Named constraints make Alembic migrations deterministic across databases.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's DATETIME drops (and rounds) fractions unless asked; ordering by creation time needs them.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MySQL's TEXT is 64 KiB; property values are bounded by the API below that.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


# Any Unicode (4-byte UTF-8 included), compared byte for byte: names, tags and property keys are
# case-sensitive and unique exactly, as on PostgreSQL and SQLite.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def utcnow() -> datetime:
    """Naive UTC: every supported database stores it the same way."""
    return datetime.now(UTC).replace(tzinfo=None)
