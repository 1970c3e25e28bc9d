#!/usr/bin/env bash
# Stops the Glance that start.sh started, by the pid in its state dir: SIGTERM to the uWSGI master
# (die-on-term: it stops its workers), SIGKILL to its process group after 30 s.
#
#   GLANCE_STATE_DIR   (default: bench/.work/glance)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${GLANCE_STATE_DIR:-$(dirname "$HERE")/.work/glance}"
PIDFILE="$STATE/run/glance-api.pid"

[ -f "$PIDFILE" ] || { echo "not running (no $PIDFILE)"; exit 0; }
pid="$(cat "$PIDFILE")"
if ! kill -0 "$pid" 2>/dev/null; then
  echo "not running (stale pid $pid)"; rm -f "$PIDFILE"; exit 0
fi

kill -TERM "$pid"
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
  echo "pid $pid still alive after 30s; SIGKILL to its process group" >&2
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
fi
# The workers are in the same process group: none may be left behind.
for _ in $(seq 1 20); do
  pgrep -g "$pid" >/dev/null 2>&1 || break
  sleep 0.5
done
if pgrep -g "$pid" >/dev/null 2>&1; then
  kill -KILL -- "-$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
echo "stopped (pid $pid)"
