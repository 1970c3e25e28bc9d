#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs Glint and its test tools into .venv, checks
# lint and types, then runs the tests on SQLite, PostgreSQL and MariaDB.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
scripts/services.sh
# Swift (tempauth + S3) on :8280, Keystone on :5080 and Swift behind it on :8281, for the store
# tests; they fail, never skip, without them.
scripts/swift.sh
scripts/keystone.sh
scripts/browser.sh  # Debian's chromium, for tests/test_swagger_ui.py

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the import contracts in pyproject.toml: layers, no web framework below app.api

for database in sqlite postgresql mysql; do
  echo "=== tests on $database"
  GLINT_TEST_DB=$database .venv/bin/pytest -q "$@"
done
