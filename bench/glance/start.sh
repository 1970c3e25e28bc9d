#!/usr/bin/env bash
# Starts the Glance that install.sh set up, in the background on 127.0.0.1 (uWSGI in its own
# process group), writes the uWSGI master's pid to <state>/run/glance-api.pid and returns once
# GET /healthcheck answers 200.
#
#   GLANCE_STATE_DIR   the state dir install.sh wrote  (default: bench/.work/glance)
#   GLANCE_START_TIMEOUT  seconds to wait for /healthcheck  (default: 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${GLANCE_STATE_DIR:-$(dirname "$HERE")/.work/glance}"
ETC="$STATE/etc"
PIDFILE="$STATE/run/glance-api.pid"
TIMEOUT="${GLANCE_START_TIMEOUT:-60}"

[ -f "$ETC/glance.env" ] || { echo "no $ETC/glance.env: run install.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
. "$ETC/glance.env"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "already running: pid $(cat "$PIDFILE")"; exit 0
fi
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
  echo "something else already answers on 127.0.0.1:$PORT" >&2; exit 1
fi

mkdir -p "$STATE/run" "$STATE/log"
# setsid: its own process group, so stop.sh can signal exactly this tree. A background job of a
# non-interactive shell is no group leader, so setsid does not fork and $! is the uWSGI master.
OS_GLANCE_CONFIG_DIR="$ETC" setsid "$VENV/bin/uwsgi" --ini "$ETC/uwsgi.ini" \
  >>"$STATE/log/uwsgi.log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$PIDFILE"

t0=$(date +%s)
while :; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "glance-api (uwsgi pid $pid) exited during start; see $STATE/log/" >&2
    tail -n 20 "$STATE/log/uwsgi.log" >&2 || true
    rm -f "$PIDFILE"; exit 1
  fi
  # GET / is answered by the version negotiation filter; /healthcheck needs the app loaded.
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/healthcheck" || true)
  if [ "$code" = 200 ]; then
    echo "glance-api up on http://127.0.0.1:$PORT (uwsgi master pid $pid, $(( $(date +%s) - t0 ))s)"
    exit 0
  fi
  if [ $(( $(date +%s) - t0 )) -ge "$TIMEOUT" ]; then
    echo "glance-api did not answer within ${TIMEOUT}s (last HTTP code: $code); pid $pid left running" >&2
    exit 1
  fi
  sleep 0.5
done
