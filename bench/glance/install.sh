#!/usr/bin/env bash
# Installs a private, keystone-less OpenStack Glance (glance-api 33.0.0 under uWSGI 2.0.31) for the
# benchmarks to compare Glint with, configured like the Glance that tests/fidelity/recordings/
# were captured from:
#
#   - a venv of its own with glance and uwsgi from PyPI (pinned by constraints.txt, the frozen
#     dependency set the recordings and baselines were taken with; built once, then reused),
#   - glance-api.conf, a paste ini and uwsgi.ini in the state dir: two file stores (fast, the
#     default, and cheap), SQLite, 127.0.0.1 only, identity from the X-* headers (see below),
#   - the database migrated (glance-manage db sync).
#
#   bench/glance/install.sh && bench/glance/start.sh && ... && bench/glance/stop.sh
#
# Identity: Glance 33 ships only a keystone pipeline and a "no auth" one (every caller admin, no
# project). This adds a third paste flavor, "headers": the keystone pipeline minus
# keystonemiddleware's authtoken, so Glance's ContextMiddleware trusts the headers authtoken would
# set. A request needs X-Identity-Status: Confirmed (else 401), X-Project-Id, X-User-Id and
# X-Roles (reader / member / admin); Glint's noauth strategy accepts the same headers. It listens
# on 127.0.0.1 only: anyone who can reach it can claim any identity.
#
# Environment (all optional):
#   GLANCE_STATE_DIR   config, database, stores, logs  (default: bench/.work/glance)
#   GLANCE_VENV        the venv, reused if it has the right versions  (default: bench/.work/glance-venv)
#   GLANCE_PORT        API port on 127.0.0.1  (default: 9292)
#   GLANCE_WEB_PORT    a loopback port web-download may fetch from, besides 80/443  (default: 18080)
#   GLANCE_PROCESSES   uWSGI worker processes  (default: 4, as in Glance's docs)
#   GLANCE_RESET=1     wipe the database, stores and logs first
#   GLANCE_UNPINNED=1  ignore constraints.txt (newest dependencies PyPI has)
#   PYTHON             interpreter for the venv  (default: python3, >= 3.11)
# uWSGI is built from source by pip: it needs a C compiler and the Python headers.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="$(dirname "$HERE")"
STATE="${GLANCE_STATE_DIR:-$BENCH/.work/glance}"
VENV="${GLANCE_VENV:-$BENCH/.work/glance-venv}"
PORT="${GLANCE_PORT:-9292}"
WEB_PORT="${GLANCE_WEB_PORT:-18080}"
PROCS="${GLANCE_PROCESSES:-4}"
PY="${PYTHON:-python3}"
GLANCE_VERSION="33.0.0"
UWSGI_VERSION="2.0.31"

log() { printf '[glance-install] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# A running instance would keep the old config and an open SQLite file.
if [ -f "$STATE/run/glance-api.pid" ] && kill -0 "$(cat "$STATE/run/glance-api.pid")" 2>/dev/null; then
  die "glance-api is running (pid $(cat "$STATE/run/glance-api.pid")); run stop.sh first"
fi

# ---------------------------------------------------------------- venv
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('glance') != '$GLANCE_VERSION' or m.version('uwsgi') != '$UWSGI_VERSION')" 2>/dev/null; then
  command -v gcc >/dev/null 2>&1 || die "gcc is missing (uWSGI is built from source): install a C compiler and the Python headers"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY is not Python >= 3.11; set PYTHON"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
  fi
  CONSTRAINTS=()
  if [ "${GLANCE_UNPINNED:-0}" != 1 ]; then
    CONSTRAINTS=(-c "$HERE/constraints.txt")
  fi
  log "pip install glance==$GLANCE_VERSION uwsgi==$UWSGI_VERSION (about a minute the first time)"
  t0=$(date +%s)
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${CONSTRAINTS[@]}" \
    "glance==$GLANCE_VERSION" "uwsgi==$UWSGI_VERSION"
  log "pip install took $(( $(date +%s) - t0 ))s"
fi

# ---------------------------------------------------------------- state dir
if [ "${GLANCE_RESET:-0}" = 1 ]; then
  log "resetting $STATE (database, stores, staging, logs)"
  rm -rf "$STATE/db" "$STATE/images" "$STATE/staging" "$STATE/tasks" "$STATE/log" "$STATE/lock" "$STATE/cache"
fi
mkdir -p "$STATE"/{etc,db,images/fast,images/cheap,staging,tasks,log,run,lock,cache}
STATE="$(cd "$STATE" && pwd)"  # absolute: the config files name it
ETC="$STATE/etc"

# glance.wsgi.api reads $OS_GLANCE_CONFIG_DIR/glance-api.conf; start.sh exports that variable.
cat > "$ETC/glance-api.conf" <<EOF
# Written by bench/glance/install.sh: a keystone-less Glance for benchmarks.
[DEFAULT]
debug = False
log_file = $STATE/log/glance-api.log
use_stderr = False
enabled_backends = fast:file, cheap:file
enabled_import_methods = [glance-direct,web-download,copy-image]
worker_self_reference_url = http://127.0.0.1:$PORT
image_cache_dir = $STATE/cache
# Without X-Identity-Status: Confirmed a request gets 401.
allow_anonymous_access = False

[database]
connection = sqlite:///$STATE/db/glance.sqlite

[glance_store]
default_backend = fast

[fast]
store_description = Fast file store
filesystem_store_datadir = $STATE/images/fast/

[cheap]
store_description = Cheap file store
filesystem_store_datadir = $STATE/images/cheap/

# The reserved stores of interoperable import.
[os_glance_staging_store]
filesystem_store_datadir = $STATE/staging/

[os_glance_tasks_store]
filesystem_store_datadir = $STATE/tasks/

[import_filtering_opts]
# web-download refuses loopback hosts unless allow-listed, and ports other than 80/443. These are
# list options declared with bounds: without the brackets the value does not parse and every
# web-download is refused, with no error at start-up.
allowed_hosts = [127.0.0.1,localhost]
allowed_ports = [80,443,$WEB_PORT]

[paste_deploy]
flavor = headers
config_file = $ETC/glance-api-paste.ini

[oslo_concurrency]
lock_path = $STATE/lock

[oslo_policy]
# The release's defaults: new RBAC defaults, scope enforcement on.
EOF

# Glance's own paste file plus the "headers" flavor. The flavor picks both the pipeline in
# [composite:api] and the composite named glance-api-<flavor>, so both are added.
"$VENV/bin/python" - "$VENV/etc/glance/glance-api-paste.ini" "$ETC/glance-api-paste.ini" "$STATE" <<'PYEOF'
import sys

source, target, state = sys.argv[1:4]
lines = []
for line in open(source):
    lines.append(line)
    if line.startswith("default = ") and "unauthenticated-context" in line:
        lines.append(
            "headers = cors http_proxy_to_wsgi versionnegotiation osprofiler context rootapp\n"
        )
text = "".join(lines).replace(
    "/etc/glance/healthcheck_disable", state + "/etc/healthcheck_disable"
)
assert "headers = " in text, "the pipeline to extend is not in glance-api-paste.ini"
text += (
    "\n# Added by bench/glance/install.sh: keystone-less, identity from the X-* headers\n"
    "[composite:glance-api-headers]\n"
    "paste.composite_factory = glance.api:root_app_factory\n"
    "/: api\n"
    "/healthcheck: healthcheck\n"
)
open(target, "w").write(text)
PYEOF

# The uWSGI sample of Glance's "Running Glance in HTTPD" doc (http-socket), on loopback.
cat > "$ETC/uwsgi.ini" <<EOF
[uwsgi]
socket-timeout = 10
http-auto-chunked = true
http-chunked-input = true
http-raw-body = true
lazy-apps = true
add-header = Connection: close
buffer-size = 65535
thunder-lock = true
enable-threads = true
exit-on-reload = true
die-on-term = true
master = true
need-app = true
processes = $PROCS
http-socket = 127.0.0.1:$PORT
module = glance.wsgi.api:application
virtualenv = $VENV
env = OS_GLANCE_CONFIG_DIR=$ETC
procname-prefix-spaced = glint-bench-glance
# Not in Glance's sample: by default uWSGI refuses chunks of 1 MiB or more in a chunked request
# body (500 or a reset connection), which clients streaming big chunks send.
chunked-input-limit = 67108864
EOF

cat > "$ETC/glance.env" <<EOF
# Read by start.sh and stop.sh.
VENV=$VENV
PORT=$PORT
EOF

# ---------------------------------------------------------------- database
log "glance-manage db sync"
OS_GLANCE_CONFIG_DIR="$ETC" "$VENV/bin/glance-manage" --config-file "$ETC/glance-api.conf" \
  --log-file "$STATE/log/glance-manage.log" db sync
"$VENV/bin/pip" freeze --disable-pip-version-check > "$STATE/pip-freeze.txt"
log "done: state in $STATE, venv in $VENV, port $PORT; next: $HERE/start.sh"
