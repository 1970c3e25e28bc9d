"""The Dockerfile, checked without a Docker engine: it installs Glint the way the README and CI do,
copies everything the build reads (and .dockerignore lets it through), the wheel built from just
those files migrates a database, it runs as a non-root user with the data directory as a volume,
and its HEALTHCHECK command works against a real server."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from app.db.migrate import alembic_config
from app.tables import metadata
from tests.serving import free_port, serve

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DATA_DIR = "/var/lib/glint"
PORT = "9292"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
        else:
            lines.append(current + stripped)
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return lines


def _stages() -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines((ROOT / "Dockerfile").read_text()):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages()


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@dataclass(frozen=True)
class Install:
    target: str  # the project directory
    extras: str
    editable: bool


def _project_installs(command_text: str) -> list[Install]:
    """Every `pip install` of a local project directory in a shell text."""
    installs: list[Install] = []
    for command in re.split(r"&&|;|\n", command_text):
        if "pip install" not in command:
            continue
        words = shlex.split(command)
        for index, word in enumerate(words[:-1]):
            if word.endswith("pip") and words[index + 1] == "install":
                arguments = words[index + 2 :]
                for argument in arguments:
                    match = re.fullmatch(r"(\.[^\[]*)(\[[^\]]*\])?", argument)
                    if match:
                        installs.append(
                            Install(
                                match[1],
                                match[2] or "",
                                "-e" in arguments or "--editable" in arguments,
                            )
                        )
    return installs


def test_two_stages_on_the_supported_python(stages: list[Stage]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.image == final.image, "the venv is copied: both stages need the same Python"
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim", final.image)
    assert match, final.image
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_installs_the_project_as_the_readme_and_ci_do(builder: Stage) -> None:
    readme = _project_installs((ROOT / "README.md").read_text())
    ci = _project_installs((ROOT / "scripts" / "test.sh").read_text())
    docker = [install for run in builder.args("RUN") for install in _project_installs(run)]

    # The README and CI install the project from its root, editable for development (the
    # README's set-up first, without extras; the store drivers' extras come later)...
    assert readme[0] == Install(".", "", editable=True)
    assert all(install.target == "." and install.editable for install in readme)
    assert ci == [Install(".", "[test]", editable=True)]
    # ...and the image installs that same project with the object-store drivers, without test
    # extras, and not editable: the source tree stays in the builder stage.
    assert docker == [Install(".", "[swift,s3]", editable=False)]
    # Into a venv that the final stage copies and puts first on PATH.
    assert any(re.fullmatch(r"python3? -m venv /opt/glint", run) for run in builder.args("RUN"))
    assert any(run.startswith("/opt/glint/bin/pip install") for run in builder.args("RUN"))


def _copied_sources(builder: Stage) -> list[str]:
    sources: list[str] = []
    for args in builder.args("COPY"):
        words = args.split()
        assert not any(word.startswith("--from") for word in words)
        sources.extend(words[:-1])
    return sources


def test_copies_everything_the_package_build_reads(builder: Stage) -> None:
    sources = {source.rstrip("/") for source in _copied_sources(builder)}
    assert "pyproject.toml" in sources
    assert PYPROJECT["project"]["readme"] in sources
    # setup.py lays out the wheel: app/, and the migrations from alembic/ as app/migrations/.
    assert {"setup.py", "app", "alembic"} <= sources
    assert builder.args("WORKDIR") == ["/src"]
    # Files to the top, folders under their own name: the tree the build sees is the checkout's.
    for args in builder.args("COPY"):
        *copied, destination = args.split()
        assert destination == "./" or copied == [destination.removeprefix("./")], args


def _docker_ignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a parent dir."""
    candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not negated
    return ignored


def _dockerignore_rules() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _needed(builder: Stage) -> list[str]:
    """The checkout's files that the builder stage copies (caches aside), relative to ROOT."""
    return [
        path.relative_to(ROOT).as_posix()
        for source in _copied_sources(builder)
        for path in ([ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]


def test_dockerignore_passes_the_build_inputs_only(builder: Stage) -> None:
    rules = _dockerignore_rules()
    needed = _needed(builder)
    assert "alembic/env.py" in needed
    assert "alembic/script.py.mako" in needed
    assert [path for path in needed if _docker_ignored(path, rules)] == []
    for local_state in (
        ".venv/bin/python",
        "glint-data/glint.db",
        "tests/conftest.py",
        ".git/HEAD",
        "app/__pycache__/cli.cpython-311.pyc",
    ):
        assert _docker_ignored(local_state, rules), local_state


def test_the_wheel_of_the_build_context_migrates_a_database(builder: Stage, tmp_path: Path) -> None:
    """What `pip install .` in the builder stage makes of the files it is given: a non-editable
    Glint whose `glint db upgrade` finds the migrations (shipped as app/migrations/)."""
    context = tmp_path / "context"
    rules = _dockerignore_rules()
    for relative in _needed(builder):
        if not _docker_ignored(relative, rules):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, context / relative)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # Build isolation fetches the build backend as the image build does (from pip's cache).
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, context], check=True, timeout=300)
    (wheel,) = wheels.glob("glint-*.whl")
    # A fresh venv gets the wheel; its dependencies come from this environment's site-packages
    # (a plain path in a .pth file: that directory's own .pth files, such as an editable install
    # of the checkout, are not processed), which saves installing them all again.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", wheel], check=True, timeout=120
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "glint-test-dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")

    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GLINT_") and name not in ("PYTHONPATH", "PYTHONHOME")
    }
    url = f"sqlite:///{tmp_path / 'glint.db'}"
    environment |= {"GLINT_DATABASE__URL": url, "GLINT_DATA_DIR": str(tmp_path / "data")}

    def run(*argv: str | Path) -> str:
        done = subprocess.run(
            argv, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    where = run(python, "-c", "import app.db.migrate as m; print(m.__file__, m.migrations_dir())")
    module, migrations = (Path(word) for word in where.split())
    assert module.is_relative_to(site), "Glint was not imported from the wheel"
    assert migrations == Path(site) / "app" / "migrations"
    assert "database at revision head" in run(venv / "bin" / "glint", "db", "upgrade")

    engine = sa.create_engine(url)
    try:
        assert set(sa.inspect(engine).get_table_names()) == {*metadata.tables, "alembic_version"}
        with engine.connect() as connection:
            revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert (
                revision.scalar_one()
                == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
            )
    finally:
        engine.dispose()


def test_runs_as_a_non_root_user_with_a_data_volume(final: Stage) -> None:
    users = final.args("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(final.args("RUN"))
    assert re.search(rf"useradd [^&]*\b{user}\b", runs), f"user {user} is not created"
    assert re.search(rf"chown {user}:{user} {DATA_DIR}\b", runs)
    env = " ".join(final.args("ENV"))
    assert f"GLINT_DATA_DIR={DATA_DIR}" in env.split()
    assert "PATH=/opt/glint/bin:$PATH" in env.split()
    assert json.loads(final.args("VOLUME")[-1]) == [DATA_DIR]
    assert final.args("EXPOSE") == [PORT]
    assert final.args("COPY") == ["--from=builder /opt/glint /opt/glint"]


def test_command_serves_on_all_interfaces(final: Stage) -> None:
    assert "glint" in PYPROJECT["project"]["scripts"]
    command = json.loads(final.args("CMD")[-1])
    assert command == ["glint", "serve", "--host", "0.0.0.0", "--port", PORT]


def _healthcheck(final: Stage) -> list[str]:
    (args,) = final.args("HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    assert "--interval=" in options
    assert "--start-period=" in options
    argv: list[str] = json.loads(command)
    return argv


def test_healthcheck_uses_python_not_curl(final: Stage) -> None:
    argv = _healthcheck(final)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert f"http://127.0.0.1:{PORT}/healthcheck" in argv[2]


def test_healthcheck_command_works_against_a_real_server(final: Stage, tmp_path: Path) -> None:
    code = _healthcheck(final)[2]
    with serve(tmp_path) as server:
        up = subprocess.run(
            [sys.executable, "-c", code.replace(f":{PORT}/", f":{server.port}/")],
            capture_output=True,
            timeout=30,
        )
        assert up.returncode == 0, up.stderr
    closed = free_port()
    down = subprocess.run(
        [sys.executable, "-c", code.replace(f":{PORT}/", f":{closed}/")],
        capture_output=True,
        timeout=30,
    )
    assert down.returncode != 0
    assert b"Connection refused" in down.stderr
