#!/usr/bin/env bash
# Makes sure the browser the Swagger UI test (tests/test_swagger_ui.py) drives is installed:
# Debian's chromium at /usr/bin/chromium, run headless through playwright (which never downloads
# a browser of its own here). Installs it (Debian) when it is missing.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  echo "browser.sh: installing chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
