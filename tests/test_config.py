"""Settings: environment (GLINT_<GROUP>__<FIELD>), the TOML file named by GLINT_CONFIG, and the
start-up errors (SettingsError naming the setting)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import ImportSettings, Settings, SettingsError, load_settings


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


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[database]\nurll = "sqlite:///x.db"\n', r"database\.urll"),
        ("[server]\nprot = 9292\n", r"server\.prot"),
        ("[limits]\napi_limit_maximum = 3\n", r"limits\.api_limit_maximum"),
        ('[auth]\ndefault_project = "p"\n', r"auth\.default_project"),
        ("[jobs]\nrun_in_apii = false\n", r"jobs\.run_in_apii"),
        ('[image_formats]\ndisk_format = ["raw"]\n', r"image_formats\.disk_format"),
        ('[storage]\ndefualt = "local"\n', r"storage\.defualt"),
        ('[storage.stores.local]\ntype = "file"\npth = "/srv"\n', r"\bpth\b"),
        ("[uploads]\nidle_timout = 5\n", r"uploads\b.*\bidle_timout\b"),
    ],
)
def test_unknown_key_in_a_toml_table_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, named: str
) -> None:
    _config_file(tmp_path, text, monkeypatch)
    with pytest.raises(SettingsError, match=named):
        load_settings()


@pytest.mark.parametrize(
    "variable",
    [
        "GLINT_DATABSE__URL",
        "GLINT_DATABASE__URLL",
        "GLINT_DATA_DIRR",
        "GLINT_DATA_DIR__X",
        "GLINT_SERVER__PORT__X",
        "GLINT_SERVER__",
        "GLINT_UPLOADS__IDLE_TIMOUT",
        "GLINT_STORAGE__STORES__LOCAL__PAHT",
        "GLINT_",
        "glint_databse__url",
    ],
)
def test_unknown_glint_variable_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "sqlite:///x.db")
    with pytest.raises(SettingsError, match=f"{variable}: no such setting"):
        load_settings()


def test_every_unknown_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLINT_DATABSE__URL", "x")
    monkeypatch.setenv("GLINT_SEVER__PORT", "1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "GLINT_DATABSE__URL" in str(caught.value)
    assert "GLINT_SEVER__PORT" in str(caught.value)


def test_variables_that_are_not_settings_but_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _config_file(tmp_path, "", monkeypatch)  # GLINT_CONFIG itself
    monkeypatch.setenv("GLINT_TEST_DB", "mysql")  # the test-suite's own
    monkeypatch.setenv("GLINT_TEST_ANYTHING_ELSE", "x")
    monkeypatch.setenv("GLINT_STORAGE__STORES__LOCAL__TYPE", "file")  # into a dict of stores
    monkeypatch.setenv("GLINT_STORAGE__STORES__LOCAL__PATH", str(tmp_path / "images"))
    monkeypatch.setenv("GLINT_UPLOADS__IDLE_TIMEOUT", "5")
    monkeypatch.setenv("GLINT_SERVER__HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("GLINT_database__echo", "true")  # names ignore case, as pydantic's do

    settings = load_settings()

    assert settings.storage.stores["local"].path == tmp_path / "images"
    assert settings.uploads.idle_timeout == 5
    assert settings.server.header_timeout == 2.5
    assert settings.database.echo is True


def test_no_setting_could_be_mistaken_for_the_test_suites_variables() -> None:
    # GLINT_TEST_* are exempt from the unknown-variable check, so no setting may live there.
    assert not [name for name in Settings.model_fields if name.startswith("test")]


def test_header_timeout_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().server.header_timeout == 30
    monkeypatch.setenv("GLINT_SERVER__HEADER_TIMEOUT", "0")
    with pytest.raises(SettingsError, match=r"server\.header_timeout"):
        load_settings()


# --- [import]: a keyword, so the field is `import_` with an alias ----------------------------


def test_import_defaults_are_glances() -> None:
    settings = load_settings().import_
    assert settings.methods == ["glance-direct", "web-download", "copy-image"]
    assert (settings.allowed_schemes, settings.disallowed_schemes) == (["http", "https"], [])
    assert (settings.allowed_hosts, settings.disallowed_hosts) == ([], [])
    assert (settings.allowed_ports, settings.disallowed_ports) == ([80, 443], [])
    assert (settings.timeout, settings.max_redirects, settings.verify) == (60, 5, True)


def test_import_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLINT_IMPORT__ALLOWED_HOSTS", '["127.0.0.1", "Mirror.Example."]')
    monkeypatch.setenv("GLINT_IMPORT__METHODS", '["web-download"]')
    monkeypatch.setenv("GLINT_IMPORT__ALLOWED_PORTS", "[8080]")
    monkeypatch.setenv("GLINT_IMPORT__TIMEOUT", "5")
    monkeypatch.setenv("GLINT_import__max_redirects", "2")  # names ignore case

    settings = load_settings().import_

    # Hosts are kept in the form that URIs are compared in.
    assert settings.allowed_hosts == ["127.0.0.1", "mirror.example"]
    assert settings.methods == ["web-download"]
    assert settings.allowed_ports == [8080]
    assert (settings.timeout, settings.max_redirects) == (5, 2)


def test_import_settings_from_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _config_file(
        tmp_path,
        """
[import]
methods = ["glance-direct", "copy-image"]
allowed_hosts = ["[::ffff:10.0.0.5]", "0x0a000006"]
disallowed_ports = [22]
allowed_ports = []
""",
        monkeypatch,
    )
    monkeypatch.setenv("GLINT_IMPORT__TIMEOUT", "7")

    settings = load_settings().import_

    assert settings.methods == ["glance-direct", "copy-image"]
    assert settings.allowed_hosts == ["10.0.0.5", "10.0.0.6"]
    assert (settings.allowed_ports, settings.disallowed_ports) == ([], [22])
    assert settings.timeout == 7  # the environment beats the file, field by field


def test_import_settings_in_code() -> None:
    # By the alias, as the sources give it; model_copy takes the field's name.
    settings = Settings(**{"import": ImportSettings(methods=["glance-direct"])})
    assert settings.import_.methods == ["glance-direct"]
    changed = settings.model_copy(update={"import_": ImportSettings(max_redirects=1)})
    assert changed.import_.max_redirects == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GLINT_IMPORT__METHODS", '["web-download", "ftp-download"]', r"import\.methods"),
        ("GLINT_IMPORT__ALLOWED_SCHEMES", '["http", "ftp"]', r"import\.allowed_schemes.*ftp"),
        ("GLINT_IMPORT__ALLOWED_HOSTS", '["http://mirror.example/"]', r"import\.allowed_hosts"),
        ("GLINT_IMPORT__DISALLOWED_HOSTS", '["1.2.3.4.5"]', r"import\.disallowed_hosts"),
        ("GLINT_IMPORT__ALLOWED_PORTS", "[0]", r"import\.allowed_ports"),
        ("GLINT_IMPORT__DISALLOWED_PORTS", "[65536]", r"import\.disallowed_ports"),
        ("GLINT_IMPORT__TIMEOUT", "0", r"import\.timeout"),
        ("GLINT_IMPORT__VERIFY", "/nowhere/ca.pem", r"import\.verify.*cannot load the CA bundle"),
        ("GLINT_IMPORT__ALOWED_HOSTS", "[]", "GLINT_IMPORT__ALOWED_HOSTS: no such setting"),
    ],
)
def test_bad_import_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_unknown_key_in_the_import_table_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _config_file(tmp_path, "[import]\nallowed_host = []\n", monkeypatch)
    with pytest.raises(SettingsError, match=r"import\.allowed_host\b"):
        load_settings()
