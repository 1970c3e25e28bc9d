"""compose.yaml, checked without a Docker engine: every `glint` command and option it runs is one
that Glint's CLI accepts, every GLINT_* variable one that its settings accept (the loader refuses
unknown names), and the services fit together: PostgreSQL healthy first, the migrations once,
two or more API containers without an embedded worker, a separate worker, each with a
healthcheck, all on one database and one data volume, consistent with the Dockerfile."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from app.cli import main
from app.config import Settings, load_settings
from tests.test_dockerfile import DATA_DIR, PORT, _healthcheck, _stages

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
GLINT = {name: service for name, service in SERVICES.items() if service.get("image") == "glint"}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _interpolated(text: str) -> str:
    """Compose's `${NAME:-default}` as it is without NAME in the environment."""
    assert "$" not in _DEFAULTED.sub("", text), f"only ${{NAME:-default}} is used: {text}"
    return _DEFAULTED.sub(lambda match: match[2], text)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping"
    return {name: _interpolated(str(value)) for name, value in environment.items()}


def _commands(group: click.Group, path: str = "glint") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def _invoked(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """The command `argv` runs and the parameters click gives it, as the real CLI parses them
    (an unknown command or option, or a bad value, raises); nothing is run."""
    assert argv[0] == "glint", argv
    calls: list[tuple[str, dict[str, Any]]] = []
    for path, command in _commands(main):
        if not isinstance(command, click.Group):

            def record(_path: str = path, **params: Any) -> None:
                calls.append((_path, params))

            monkeypatch.setattr(command, "callback", record)
    main.main(argv[1:], prog_name="glint", standalone_mode=False)
    (call,) = calls
    return call


def _settings(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What Glint makes of this environment (plus the image's GLINT_DATA_DIR)."""
    for name in list(os.environ):
        if name.startswith("GLINT_"):
            monkeypatch.delenv(name)
    for name, value in {"GLINT_DATA_DIR": DATA_DIR, **environment}.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _roles(command: str) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in GLINT.items() if service["command"][1] == command}


def test_glint_services_run_the_image_of_the_dockerfile() -> None:
    assert set(GLINT) == {"migrate", "api-1", "api-2", "worker"}
    for service in GLINT.values():
        assert service["build"] == "."
        assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_every_glint_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    for service in GLINT.values():
        argvs = [service["command"]]
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "glint"]:
            argvs.append(test[1:])
        for argv in argvs:
            command, _ = _invoked(argv, monkeypatch)
            seen.add(command)
    assert seen == {"glint db upgrade", "glint serve", "glint worker"}


def test_every_glint_variable_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in GLINT.items():
        environment = _environment(service)
        assert all(variable.startswith("GLINT_") for variable in environment), name
        # The loader refuses a GLINT_* name that sets nothing, and a bad value.
        settings = _settings(environment, monkeypatch)
        assert settings.database_url.startswith("postgresql://"), name


def test_postgres_is_healthy_before_anything_else() -> None:
    db = SERVICES["db"]
    assert db["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    for name in GLINT:
        assert GLINT[name]["depends_on"]["db"] == {"condition": "service_healthy"}, name


def test_every_glint_service_uses_that_database(monkeypatch: pytest.MonkeyPatch) -> None:
    postgres = _environment(SERVICES["db"])
    for name, service in GLINT.items():
        url = urlsplit(_settings(_environment(service), monkeypatch).database_url)
        assert url.hostname == "db", name
        assert (url.username, url.password, url.path) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )


def test_the_migrations_run_once_before_the_servers_and_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (migrate,) = _roles("db").values()
    assert _invoked(migrate["command"], monkeypatch)[0] == "glint db upgrade"
    assert migrate["restart"] == "no"
    for name, service in {**_roles("serve"), **_roles("worker")}.items():
        assert service["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name


def test_two_api_containers_without_an_embedded_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    apis = _roles("serve")
    assert len(apis) >= 2
    published = set()
    for name, service in apis.items():
        _, params = _invoked(service["command"], monkeypatch)
        assert params["host"] == "0.0.0.0", name
        port = params["port"] or _settings(_environment(service), monkeypatch).server.port
        assert _settings(_environment(service), monkeypatch).jobs.run_in_api is False, name
        (mapping,) = service["ports"]
        host_port, container_port = mapping.split(":")
        assert int(container_port) == port, name
        published.add(host_port)
        # The Dockerfile's healthcheck, on the port it serves.
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["healthcheck"]["test"][1:] == [
            part.replace(f":{PORT}/", f":{port}/") for part in _healthcheck(_stages()[-1])
        ]
    assert len(published) == len(apis)


def test_a_separate_worker_with_an_honest_healthcheck(monkeypatch: pytest.MonkeyPatch) -> None:
    (worker,) = _roles("worker").values()
    _, running = _invoked(worker["command"], monkeypatch)
    assert running["check"] is False
    _, checking = _invoked(worker["healthcheck"]["test"][1:], monkeypatch)
    assert checking["check"] is True
    assert checking["heartbeat"] == running["heartbeat"]  # the file the worker keeps fresh
    assert "ports" not in worker


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        healthcheck = service["healthcheck"]
        if name == "migrate":
            assert healthcheck == {"disable": True}  # one-shot
        else:
            assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
            assert "interval" in healthcheck, name


def test_all_glint_services_share_the_data_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile_env = " ".join(_stages()[-1].args("ENV")).split()
    assert f"GLINT_DATA_DIR={DATA_DIR}" in dockerfile_env
    for name, service in GLINT.items():
        (volume,) = service["volumes"]
        source, target = volume.split(":")
        assert (source, target) == ("glint-data", DATA_DIR), name
        assert source in COMPOSE["volumes"]
        # The file store lives in the data directory, on that volume.
        settings = _settings(_environment(service), monkeypatch)
        assert settings.storage.stores[settings.storage.default].type == "file"
        assert settings.storage.stores[settings.storage.default].path is None
