"""Settings: environment (GLINT_<GROUP>__<FIELD>), the TOML file named by GLINT_CONFIG, and the
start-up errors (SettingsError naming the setting)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets; the suite's own GLINT_TEST_* variables are not settings."""
    for name in list(os.environ):
        if name.startswith("GLINT_") and not name.startswith("GLINT_TEST_"):
            monkeypatch.delenv(name)


def _config_file(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "glint.toml"
    path.write_text(text)
    monkeypatch.setenv("GLINT_CONFIG", str(path))
    return path


def test_defaults_are_the_embedded_service() -> None:
    settings = load_settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 9292
    assert settings.auth.strategy == "noauth"
    assert settings.database_url == f"sqlite:///{Path('glint-data') / 'glint.db'}"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLINT_DATABASE__URL", "postgresql://glint@db.invalid/glint")
    monkeypatch.setenv("GLINT_LIMITS__API_LIMIT_MAX", "77")
    monkeypatch.setenv("GLINT_AUTH__DEFAULT_ROLES", "a, b")
    monkeypatch.setenv("GLINT_SERVER__PORT", "9393")
    monkeypatch.setenv("GLINT_DATA_DIR", str(tmp_path))

    settings = load_settings()

    assert settings.database_url == "postgresql://glint@db.invalid/glint"
    assert settings.limits.api_limit_max == 77
    assert settings.auth.default_roles == ["a", "b"]
    assert settings.server.port == 9393
    assert settings.data_dir == tmp_path


def test_roles_from_environment_as_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLINT_AUTH__DEFAULT_ROLES", '["reader", "member"]')
    assert load_settings().auth.default_roles == ["reader", "member"]


def test_embedded_database_lives_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GLINT_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().database_url == f"sqlite:///{tmp_path / 'data' / 'glint.db'}"


def test_settings_from_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(
        tmp_path,
        """
data_dir = "/srv/glint"

[database]
url = "mysql://glint@db.invalid/glint"

[limits]
api_limit_max = 40

[auth]
default_roles = ["reader"]

[server]
host = "0.0.0.0"
port = 8080
""",
        monkeypatch,
    )

    settings = load_settings()

    assert settings.data_dir == Path("/srv/glint")
    assert settings.database_url == "mysql://glint@db.invalid/glint"
    assert settings.limits.api_limit_max == 40
    assert settings.auth.default_roles == ["reader"]
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 8080


def test_environment_beats_toml_field_by_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _config_file(
        tmp_path,
        '[server]\nhost = "10.1.2.3"\nport = 8080\n\n[limits]\napi_limit_max = 40\n',
        monkeypatch,
    )
    monkeypatch.setenv("GLINT_SERVER__PORT", "9000")

    settings = load_settings()

    assert settings.server.port == 9000  # from the environment
    assert settings.server.host == "10.1.2.3"  # the rest of the group still from the file
    assert settings.limits.api_limit_max == 40


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("GLINT_SERVER__PORT", "99999", "server.port"),
        ("GLINT_SERVER__PORT", "http", "server.port"),
        ("GLINT_DATABASE__URL", "oracle://scott@db.invalid/orcl", "database.url"),
        ("GLINT_LIMITS__API_LIMIT_MAX", "0", "limits.api_limit_max"),
        ("GLINT_AUTH__STRATEGY", "keystone-ish", "auth.strategy"),
        ("GLINT_AUTH__DEFAULT_ROLES", "[not json", "auth.default_roles"),
    ],
)
def test_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"\b{named}\b"):
        load_settings()


def test_bad_toml_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(tmp_path, "[server]\nport = 99999\n", monkeypatch)
    with pytest.raises(SettingsError, match=r"server\.port"):
        load_settings()


def test_unknown_toml_group_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(tmp_path, "[sever]\nport = 9292\n", monkeypatch)
    with pytest.raises(SettingsError, match=r"\bsever\b"):
        load_settings()


def test_missing_config_file_names_glint_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("GLINT_CONFIG", str(missing))
    with pytest.raises(SettingsError, match="GLINT_CONFIG") as caught:
        load_settings()
    assert str(missing) in str(caught.value)


def test_malformed_toml_names_glint_config_and_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _config_file(tmp_path, "[server\nport = 9292\n", monkeypatch)
    with pytest.raises(SettingsError, match="GLINT_CONFIG") as caught:
        load_settings()
    assert str(path) in str(caught.value)
    assert "line 1" in str(caught.value)
