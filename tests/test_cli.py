"""The `glint` command: in-process with click's runner, and `glint serve` as a real process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from click.testing import CliRunner

from app.api.openapi import render_document
from app.cli import main
from app.tables import metadata
from tests.serving import serve


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GLINT_") and not name.startswith("GLINT_TEST_"):
            monkeypatch.delenv(name)


def _table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'glint.db'}"

    result = CliRunner().invoke(main, ["db", "upgrade"], env={"GLINT_DATABASE__URL": url})

    assert result.exit_code == 0, result.output
    assert "database at revision head" in result.output
    assert _table_names(url) == {*metadata.tables, "alembic_version"}


def test_openapi_prints_the_document() -> None:
    result = CliRunner().invoke(main, ["openapi"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["openapi"].startswith("3.")
    assert "/v2/images" in document["paths"]
    assert result.output == render_document()


def test_openapi_writes_a_file(tmp_path: Path) -> None:
    output = tmp_path / "v2.json"
    result = CliRunner().invoke(main, ["openapi", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_text() == render_document()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GLINT_SERVER__PORT": "99999"}, "server.port"),
        ({"GLINT_DATABASE__URL": "oracle://scott@db.invalid/orcl"}, "database.url"),
        ({"GLINT_CONFIG": "/nonexistent/glint.toml"}, "GLINT_CONFIG"),
    ],
)
def test_bad_setting_stops_serve_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], named: str
) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn.run was called despite a bad setting")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    env = {"GLINT_DATA_DIR": str(tmp_path / "data"), **env}

    result = CliRunner().invoke(main, ["serve", "--port", "9"], env=env)

    assert result.exit_code != 0
    assert named in result.output
    assert not isinstance(result.exception, AssertionError)
    assert not (tmp_path / "data").exists()


# --- `glint serve` as a real process -------------------------------------------------------


def test_serve_end_to_end(tmp_path: Path) -> None:
    with serve(tmp_path, "127.0.0.1") as server:
        health = httpx.get(f"{server.base_url}/healthcheck")
        assert health.text == "OK"

        created = httpx.post(
            f"{server.base_url}/v2/images",
            json={"name": "e2e", "disk_format": "raw", "container_format": "bare"},
        )
        assert created.status_code == 201, created.text
        image = created.json()
        assert image["name"] == "e2e"
        assert image["status"] == "queued"
        assert created.headers["location"].endswith(f"/v2/images/{image['id']}")

        shown = httpx.get(f"{server.base_url}/v2/images/{image['id']}")
        assert shown.status_code == 200
        assert shown.json()["id"] == image["id"]
        listed = httpx.get(f"{server.base_url}/v2/images")
        assert [item["id"] for item in listed.json()["images"]] == [image["id"]]

        server.stop()

    # The embedded default: SQLite in the data directory, migrated at start.
    database = tmp_path / "data" / "glint.db"
    assert database.is_file()
    assert {*metadata.tables} <= _table_names(f"sqlite:///{database}")
    assert "noauth on" not in server.output()


def test_serve_on_all_interfaces_warns_loudly_about_noauth(tmp_path: Path) -> None:
    with serve(tmp_path, "0.0.0.0") as server:
        server.stop()
    output = server.output()
    assert "WARNING" in output
    assert "!!! noauth on 0.0.0.0" in output
    assert "X-Identity-Status" in output


def test_scrub_on_a_fresh_database(tmp_path: Path) -> None:
    env = {
        "GLINT_DATABASE__URL": f"sqlite:///{tmp_path / 'glint.db'}",
        "GLINT_DATA_DIR": str(tmp_path / "data"),
    }
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0

    result = CliRunner().invoke(main, ["scrub", "--older-than-hours", "1"], env=env)

    assert result.exit_code == 0, result.output
    assert "0 stalled uploads reset to queued, 0 staging files removed" in result.output
