"""Migrations (alembic/) on the database named by GLINT_TEST_DB: upgrade from empty, and no drift
between the models (every table: app.tables) and what the migrations create."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db.engine import Database
from app.db.migrate import alembic_config, migrations_dir, upgrade
from app.tables import Image, ImageProperty, ImageTag, metadata

ALEMBIC_TABLE = "alembic_version"


ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_runs_the_migrations_in_its_alembic_folder() -> None:
    """The wheel's copy (app/migrations/) is checked by tests/test_dockerfile.py."""
    assert migrations_dir() == ROOT / "alembic"
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
    assert {Path(script.path) for script in scripts} == {
        *(ROOT / "alembic" / "versions").glob("*.py")
    }


def _tables(database: Database) -> set[str]:
    return set(sa.inspect(database.engine).get_table_names())


def _head(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


def _current(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _drift(database: Database, target: sa.MetaData) -> list[Any]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences: list[Any] = compare_metadata(context, target)
    return differences


def test_upgrade_from_empty_creates_exactly_the_model_tables(
    database_url: str, migrated_database: Database
) -> None:
    assert _tables(migrated_database) == {*metadata.tables, ALEMBIC_TABLE}
    assert _current(migrated_database) == _head(database_url)


def test_models_and_migrations_agree(migrated_database: Database) -> None:
    assert _drift(migrated_database, metadata) == []


def _normalised(sql_type: str) -> str:
    # MySQL/MariaDB report integer display widths and store BOOL as TINYINT(1).
    sql_type = re.sub(r"^(BIGINT|INTEGER|SMALLINT)\(\d+\)$", r"\1", sql_type)
    return {"BOOL": "TINYINT(1)", "BOOLEAN": "TINYINT(1)"}.get(sql_type, sql_type)


def test_column_types_match_exactly(migrated_database: Database) -> None:
    """Stricter than Alembic's type comparison, which ignores e.g. MySQL's DATETIME precision."""
    dialect = migrated_database.engine.dialect
    inspector = sa.inspect(migrated_database.engine)
    mismatches = []
    for table in metadata.sorted_tables:
        reflected = {column["name"]: column for column in inspector.get_columns(table.name)}
        assert set(reflected) == set(table.columns.keys()), table.name
        for column in table.columns:
            model = _normalised(column.type.compile(dialect=dialect))
            actual = _normalised(reflected[column.name]["type"].compile(dialect=dialect))
            if model != actual:
                mismatches.append(f"{table.name}.{column.name}: model {model}, database {actual}")
    assert mismatches == []


def test_drift_check_sees_a_changed_model(migrated_database: Database) -> None:
    """The comparison above is not vacuous: a model that differs from the schema is reported."""
    changed = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["image"].c["name"].type = sa.String(200)
    sa.Table("image_extra", changed, sa.Column("id", sa.Integer, primary_key=True))

    differences = _drift(migrated_database, changed)

    # Column changes come as a list of (kind, schema, table, column, ...); tables as (kind, table).
    kinds = {
        (diff[0][0], diff[0][3]) if isinstance(diff, list) else diff[0] for diff in differences
    }
    assert kinds == {("modify_type", "name"), "add_table"}


def test_downgrade_to_base_and_upgrade_again(
    database_url: str, migrated_database: Database
) -> None:
    migrated_database.dispose()  # no pooled connection holds on to the old tables
    command.downgrade(alembic_config(database_url), "base")
    assert _tables(migrated_database) <= {ALEMBIC_TABLE}
    assert _current(migrated_database) is None

    upgrade(database_url)
    assert _tables(migrated_database) == {*metadata.tables, ALEMBIC_TABLE}
    assert _current(migrated_database) == _head(database_url)
    assert _drift(migrated_database, metadata) == []


def test_table_options_match(migrated_database: Database) -> None:
    """Alembic does not compare table options (MySQL's charset and collation)."""
    dialect = migrated_database.engine.dialect.name
    inspector = sa.inspect(migrated_database.engine)
    reflected_names = {"mysql_charset": "mysql_default charset"}
    for table in metadata.sorted_tables:
        options = inspector.get_table_options(table.name)
        for key, value in table.kwargs.items():
            if key.startswith(f"{dialect}_"):
                assert options.get(reflected_names.get(key, key)) == value, (table.name, key)


def test_text_is_exact_and_four_byte_unicode(db: Database) -> None:
    """What the column types and collations promise, on every database: tags and property names
    are unique byte for byte (case and accents matter), and 4-byte UTF-8 is stored intact."""
    values = ["Ubuntu", "ubuntu", "ubüntu", "ubuntu \N{PENGUIN}"]
    with db.session() as session:
        session.add(Image(id="6b8e7c2a-2f43-4d35-9a43-1f0f7c6f3a10", visibility="private"))
        session.flush()
        for value in values:
            session.add(ImageTag(image_id="6b8e7c2a-2f43-4d35-9a43-1f0f7c6f3a10", value=value))
            session.add(
                ImageProperty(
                    image_id="6b8e7c2a-2f43-4d35-9a43-1f0f7c6f3a10", name=value, value=value * 2
                )
            )
    tag, prop = metadata.tables["image_tag"].c, metadata.tables["image_property"].c
    with db.session(write=False) as session:
        tags = session.scalars(sa.select(tag.value)).all()
        properties = {
            row.name: row.value for row in session.execute(sa.select(prop.name, prop.value))
        }
    assert sorted(tags) == sorted(values)
    assert properties == {value: value * 2 for value in values}
