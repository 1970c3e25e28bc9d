#!/usr/bin/env bash
# Metadata-API latency: a private Glint vs a private real Glance, side by side.
#
#   bench/run_api_bench.sh [api_latency.py options...]     e.g. --images 1000
#
# Starts, in a fresh temporary directory,
#   - Glint:  GLINT_DATA_DIR=<tmp>/glint $GLINT_BIN serve --host 127.0.0.1 --port $BENCH_GLINT_PORT
#   - Glance: ../shared/tools/glance-anchor (setup.sh + start.sh, state in <tmp>/glance),
# waits for /healthcheck on both, runs bench/api_latency.py against both
# (Glint first, so the ratios are glint/glance), then stops both and removes
# the temporary directory (trap, also on error or Ctrl-C).  On demand only,
# never in CI: the default of 10,000 images takes several minutes to load
# into Glance.
#
# Environment (all optional):
#   GLINT_BIN          glint command (default: glint on PATH)
#   PYTHON             interpreter with httpx (default: the python next to
#                      GLINT_BIN if it has httpx, else python3)
#   BENCH_GLINT_PORT   default 9393
#   BENCH_GLANCE_PORT  default 9494
#   BENCH_TARGETS      glint,glance (default) | glint | glance
#   BENCH_JSON         results file (default bench/results/api_latency-<UTC time>.json)
#   BENCH_KEEP=1       keep the temporary directory (databases, logs)
#   GLANCE_VENV        passed on to the anchor's setup.sh (its venv; ~1 min to build once)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
ANCHOR="$REPO/../shared/tools/glance-anchor"
GLINT_BIN="${GLINT_BIN:-glint}"
GLINT_PORT="${BENCH_GLINT_PORT:-9393}"
GLANCE_PORT="${BENCH_GLANCE_PORT:-9494}"
TARGETS="${BENCH_TARGETS:-glint,glance}"
JSON_OUT="${BENCH_JSON:-$HERE/results/api_latency-$(date -u +%Y%m%dT%H%M%SZ).json}"
HEALTH_TIMEOUT=90

say() { printf '[run_api_bench] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

want() { case ",$TARGETS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
want glint || want glance || die "BENCH_TARGETS must name glint and/or glance"

if want glance && [ ! -x "$ANCHOR/setup.sh" ]; then
  die "Glance anchor not found at $ANCHOR"
fi
GLINT_PATH=""
if want glint; then
  GLINT_PATH="$(command -v "$GLINT_BIN" || true)"
  [ -n "$GLINT_PATH" ] || die "glint command not found ($GLINT_BIN); set GLINT_BIN"
fi

if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ -n "$GLINT_PATH" ] && [ -x "$(dirname "$GLINT_PATH")/python" ] \
      && "$(dirname "$GLINT_PATH")/python" -c 'import httpx' 2>/dev/null; then
    PYTHON="$(dirname "$GLINT_PATH")/python"
  fi
fi
"$PYTHON" -c 'import httpx' 2>/dev/null || die "$PYTHON cannot import httpx; set PYTHON"

port_busy() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }
want glint && port_busy "$GLINT_PORT" && die "something already answers on 127.0.0.1:$GLINT_PORT"
want glance && port_busy "$GLANCE_PORT" && die "something already answers on 127.0.0.1:$GLANCE_PORT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/glint-api-bench.XXXXXX")"
GLINT_PID=""
GLANCE_STARTED=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$GLINT_PID" ] && kill -0 "$GLINT_PID" 2>/dev/null; then
    say "stopping glint (pid $GLINT_PID)"
    kill -TERM -- "-$GLINT_PID" 2>/dev/null || kill -TERM "$GLINT_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$GLINT_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$GLINT_PID" 2>/dev/null || true
  fi
  if [ "$GLANCE_STARTED" = 1 ]; then
    say "stopping glance"
    GLANCE_ANCHOR_DIR="$WORK/glance" "$ANCHOR/stop.sh" >&2 || true
  fi
  if [ "$rc" != 0 ]; then
    for f in "$WORK/glint.log" "$WORK/glance-setup.log" "$WORK/glance/log/uwsgi.log"; do
      [ -s "$f" ] && { say "--- last lines of $f"; tail -n 15 "$f" >&2; }
    done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_health NAME URL PID: until GET URL/healthcheck is 200 (PID must stay alive)
wait_health() {
  local name=$1 url=$2 pid=$3 t0 code
  t0=$(date +%s)
  while :; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited during start"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/healthcheck" || true)
    [ "$code" = 200 ] && { say "$name up on $url"; return 0; }
    [ $(( $(date +%s) - t0 )) -ge "$HEALTH_TIMEOUT" ] \
      && die "$name: no 200 from $url/healthcheck within ${HEALTH_TIMEOUT}s (last: $code)"
    sleep 0.5
  done
}

ARGS=()
if want glint; then
  mkdir -p "$WORK/glint"
  say "starting glint ($GLINT_PATH) on 127.0.0.1:$GLINT_PORT"
  # setsid: own process group, so cleanup can signal the whole tree.
  GLINT_DATA_DIR="$WORK/glint" setsid "$GLINT_PATH" serve --host 127.0.0.1 --port "$GLINT_PORT" \
    >"$WORK/glint.log" 2>&1 </dev/null &
  GLINT_PID=$!
  wait_health glint "http://127.0.0.1:$GLINT_PORT" "$GLINT_PID"
  ARGS+=(--target "glint=http://127.0.0.1:$GLINT_PORT")
fi
if want glance; then
  say "setting up glance in $WORK/glance (port $GLANCE_PORT)"
  GLANCE_ANCHOR_DIR="$WORK/glance" GLANCE_ANCHOR_PORT="$GLANCE_PORT" "$ANCHOR/setup.sh" \
    >"$WORK/glance-setup.log" 2>&1 || die "glance setup.sh failed"
  GLANCE_STARTED=1
  GLANCE_ANCHOR_DIR="$WORK/glance" "$ANCHOR/start.sh" >&2 || die "glance start.sh failed"
  wait_health glance "http://127.0.0.1:$GLANCE_PORT" ""
  ARGS+=(--target "glance=http://127.0.0.1:$GLANCE_PORT")
fi

mkdir -p "$(dirname "$JSON_OUT")"
say "running api_latency.py with $PYTHON"
"$PYTHON" "$HERE/api_latency.py" "${ARGS[@]}" --json "$JSON_OUT" "$@"
