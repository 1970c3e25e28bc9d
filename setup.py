"""The wheel's file layout, which pyproject.toml (the rest of the packaging) cannot declare: every
package under app/ as discovered, plus the top-level alembic/ folder as app/migrations/.

The migrations stay out of app/ in the source tree, and must not ship as a top-level `alembic`
package either: that would shadow the Alembic library. app/db/migrate.py finds them in both places.
"""

from setuptools import find_namespace_packages, setup

MIGRATIONS = {"app.migrations": "alembic", "app.migrations.versions": "alembic/versions"}

setup(
    packages=[*find_namespace_packages(include=["app*"], exclude=["*.__pycache__"]), *MIGRATIONS],
    package_dir=MIGRATIONS,
    package_data={"app": ["py.typed"], "app.migrations": ["script.py.mako"]},
)
