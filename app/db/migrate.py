"""Alembic, driven from code: `glint db upgrade`, start-up of the embedded default, and tests.

The migrations live in the top-level `alembic/` folder of the source tree (env.py, versions/,
script.py.mako). A wheel ships that folder as `app/migrations/` (see setup.py): a top-level
package named `alembic` would shadow the Alembic library itself.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_APP = Path(__file__).resolve().parent.parent
_CANDIDATES = (
    _APP / "migrations",  # installed from a wheel (the container too)
    _APP.parent / "alembic",  # a source checkout, or an editable install of one
)


def _is_script_location(directory: Path) -> bool:
    return (
        (directory / "env.py").is_file()
        and (directory / "script.py.mako").is_file()
        and (directory / "versions").is_dir()
    )


def migrations_dir() -> Path:
    """The Alembic script location, wherever Glint is installed or checked out."""
    for candidate in _CANDIDATES:
        if _is_script_location(candidate):
            return candidate
    searched = ", ".join(str(candidate) for candidate in _CANDIDATES)
    raise RuntimeError(f"Glint's migrations are missing (looked in {searched})")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
