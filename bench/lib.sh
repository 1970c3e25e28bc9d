# shellcheck shell=bash
# Shared plumbing of the bench runners (run_api_bench.sh, run_data_bench.sh):
# a private Glint and a private Glance (bench/glance/: Glance 33.0.0 from PyPI
# in a venv of its own) on 127.0.0.1 in a fresh temporary directory, stopped
# and removed again on every exit (error and Ctrl-C too).
# Sourced, not run.  A runner does, after `set -euo pipefail`:
#
#   HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
#   RUNNER_NAME=run_foo_bench           # prefix of every message: [run_foo_bench] ...
#   . "$HERE/lib.sh"                    # sets REPO, GLANCE_TOOLS, GLINT_BIN, TARGETS, HEALTH_TIMEOUT
#   GLINT_PORT="${BENCH_GLINT_PORT:-...}"; GLANCE_PORT="${BENCH_GLANCE_PORT:-...}"
#   check_targets                       # BENCH_TARGETS, bench/glance/, GLINT_BIN -> GLINT_PATH
#   default_python 'import httpx'       # PYTHON, if unset: the python next to glint
#                                       # (if it runs the probe; '' = no probe), else python3
#   check_chart_python                  # die now if PYTHON cannot import matplotlib
#   check_ports_free                    # die if something answers on a wanted port
#   make_work_dir glint-foo-bench       # WORK=<TMPDIR or /tmp>/glint-foo-bench.XXXXXX
#   install_cleanup_trap                # from here on every exit runs cleanup_on_exit
#   if want_target glint; then start_glint; fi     # GLINT_PID, GLINT_URL
#   if want_target glance; then start_glance; fi   # GLANCE_URL; glance_pid prints its pid
#   stamp="$(file_stamp "$JSON_OUT")"; rc=0
#   "$PYTHON" bench/foo.py ... --json "$JSON_OUT" || rc=$?
#   if ! chart_results "$JSON_OUT" "$stamp" && [ "$rc" = 0 ]; then rc=1; fi
#   exit "$rc"                          # chart_results: the PNG next to the JSON
#
# cleanup_on_exit stops Glint's process group and Glance, prints
# the last lines of the logs if the exit status is not 0, then removes WORK,
# or with BENCH_KEEP=1 calls keep_work_dir, which only says so; a runner may
# redefine keep_work_dir (after sourcing) to prune WORK first.  The exit
# status is kept; INT and TERM exit with 130.
#
# Reads BENCH_TARGETS, GLINT_BIN, BENCH_KEEP, BENCH_CHART, TMPDIR and GLANCE_VENV (passed
# on to bench/glance/install.sh: Glance's venv, built once and reused; default
# bench/.work/glance-venv) from the environment; GLINT_PORT and GLANCE_PORT are
# the runner's to set.

: "${RUNNER_NAME:?set RUNNER_NAME before sourcing lib.sh}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GLANCE_TOOLS="$REPO/bench/glance"
GLINT_BIN="${GLINT_BIN:-glint}"
TARGETS="${BENCH_TARGETS:-glint,glance}"
HEALTH_TIMEOUT=90
GLINT_PATH=""
GLINT_PID=""
GLINT_URL=""
GLANCE_URL=""
GLANCE_STARTED=0
WORK=""

say() { printf '[%s] %s\n' "$RUNNER_NAME" "$*" >&2; }
die() { say "$*"; exit 1; }

# want_target NAME: is NAME (glint or glance) in BENCH_TARGETS?
want_target() { case ",$TARGETS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# check_targets: BENCH_TARGETS names something, bench/glance/ is there if
# Glance is wanted, and GLINT_BIN resolves (into GLINT_PATH) if Glint is wanted.
check_targets() {
  want_target glint || want_target glance || die "BENCH_TARGETS must name glint and/or glance"
  if want_target glance && [ ! -x "$GLANCE_TOOLS/install.sh" ]; then
    die "Glance's install script not found at $GLANCE_TOOLS/install.sh"
  fi
  if want_target glint; then
    GLINT_PATH="$(command -v "$GLINT_BIN" || true)"
    [ -n "$GLINT_PATH" ] || die "glint command not found ($GLINT_BIN); set GLINT_BIN"
  fi
  return 0
}

# default_python PROBE: if PYTHON is unset or empty, set it to the python next
# to GLINT_PATH if that is executable and (unless PROBE is '') `python -c PROBE`
# succeeds, else to python3.  Checking PYTHON is the runner's business.
default_python() {
  [ -z "${PYTHON:-}" ] || return 0
  PYTHON=python3
  [ -n "$GLINT_PATH" ] || return 0
  local near
  near="$(dirname "$GLINT_PATH")/python"
  if [ -x "$near" ] && { [ -z "$1" ] || "$near" -c "$1" 2>/dev/null; }; then
    PYTHON="$near"
  fi
  return 0
}

# check_chart_python: unless BENCH_CHART=0, die if PYTHON cannot import matplotlib,
# which bench/chart.py needs to draw the results, saying how to install it.  Run it
# before anything starts: a missing chart should not show after the measurement.
check_chart_python() {
  [ "${BENCH_CHART:-1}" != 0 ] || return 0
  "$PYTHON" -c 'import matplotlib' 2>/dev/null && return 0
  say "$PYTHON cannot import matplotlib, which draws the chart of the results (bench/chart.py)."
  say "Install it into that Python's environment: cd $REPO && pip install -e '.[bench]'"
  die "(or set PYTHON to a Python that has it, or BENCH_CHART=0 for the JSON only)"
}

# file_stamp FILE: FILE's modification time (to the nanosecond), nothing if it is missing.
file_stamp() { stat -c %y -- "$1" 2>/dev/null || true; }

# chart_results JSON STAMP: if JSON was written since STAMP (its file_stamp before the
# measurement), draw it into the PNG next to it with bench/chart.py (unless
# BENCH_CHART=0); returns 1 if that fails.  Also after a failed measurement: whatever
# it wrote is charted.
chart_results() {
  local json=$1 stamp=$2
  if [ ! -s "$json" ] || [ "$(file_stamp "$json")" = "$stamp" ]; then
    say "no results written to $json, so no chart"
    return 0
  fi
  if [ "${BENCH_CHART:-1}" = 0 ]; then
    say "no chart (BENCH_CHART=0)"
    return 0
  fi
  if "$PYTHON" "$REPO/bench/chart.py" "$json"; then
    return 0
  fi
  say "the chart of $json failed; draw it again with: $PYTHON bench/chart.py $json"
  return 1
}

# port_busy PORT: does anything answer HTTP on 127.0.0.1:PORT?
port_busy() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

# check_ports_free: die if the port of a wanted target is already taken.
check_ports_free() {
  if want_target glint && port_busy "$GLINT_PORT"; then
    die "something already answers on 127.0.0.1:$GLINT_PORT"
  fi
  if want_target glance && port_busy "$GLANCE_PORT"; then
    die "something already answers on 127.0.0.1:$GLANCE_PORT"
  fi
  return 0
}

# make_work_dir PREFIX: WORK=a new directory ${TMPDIR:-/tmp}/PREFIX.XXXXXX
make_work_dir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
}

# keep_work_dir: what BENCH_KEEP=1 does with WORK; redefine to prune it first.
keep_work_dir() {
  say "kept $WORK"
}

# stop_glint: stop the Glint that start_glint started, if it runs (its whole process group).
stop_glint() {
  if [ -n "$GLINT_PID" ] && kill -0 "$GLINT_PID" 2>/dev/null; then
    say "stopping glint (pid $GLINT_PID)"
    kill -TERM -- "-$GLINT_PID" 2>/dev/null || kill -TERM "$GLINT_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$GLINT_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$GLINT_PID" 2>/dev/null || true
  fi
  GLINT_PID=""
}

# cleanup_on_exit: the EXIT trap (see the header).
cleanup_on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  stop_glint
  if [ "$GLANCE_STARTED" = 1 ]; then
    say "stopping glance"
    GLANCE_STATE_DIR="$WORK/glance" "$GLANCE_TOOLS/stop.sh" >&2 || true
  fi
  if [ "$rc" != 0 ]; then
    for f in "$WORK/glint.log" "$WORK/glance-install.log" "$WORK/glance/log/uwsgi.log"; do
      [ -s "$f" ] && { say "--- last lines of $f"; tail -n 15 "$f" >&2; }
    done
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    keep_work_dir
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# install_cleanup_trap: run cleanup_on_exit on every exit from here on.
install_cleanup_trap() {
  trap cleanup_on_exit EXIT
  trap 'exit 130' INT TERM
}

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

# start_glint: GLINT_PATH serve on 127.0.0.1:GLINT_PORT, data in WORK/glint,
# log in WORK/glint.log; sets GLINT_PID and GLINT_URL, returns once healthy.
start_glint() {
  mkdir -p "$WORK/glint"
  say "starting glint ($GLINT_PATH) on 127.0.0.1:$GLINT_PORT"
  # setsid: own process group, so cleanup can signal the whole tree; $! is glint itself.
  # Without GLINT_BIN: glint refuses GLINT_* variables that are none of its settings.
  env -u GLINT_BIN GLINT_DATA_DIR="$WORK/glint" \
    setsid "$GLINT_PATH" serve --host 127.0.0.1 --port "$GLINT_PORT" \
    >"$WORK/glint.log" 2>&1 </dev/null &
  GLINT_PID=$!
  GLINT_URL="http://127.0.0.1:$GLINT_PORT"
  wait_health glint "$GLINT_URL" "$GLINT_PID"
}

# start_glance: bench/glance/install.sh + start.sh with state in WORK/glance on
# 127.0.0.1:GLANCE_PORT (install log in WORK/glance-install.log); sets
# GLANCE_URL, returns once healthy.
start_glance() {
  say "installing glance into $WORK/glance (port $GLANCE_PORT)"
  GLANCE_STATE_DIR="$WORK/glance" GLANCE_PORT="$GLANCE_PORT" "$GLANCE_TOOLS/install.sh" \
    >"$WORK/glance-install.log" 2>&1 || die "glance install.sh failed"
  GLANCE_STARTED=1
  GLANCE_STATE_DIR="$WORK/glance" "$GLANCE_TOOLS/start.sh" >&2 || die "glance start.sh failed"
  GLANCE_URL="http://127.0.0.1:$GLANCE_PORT"
  wait_health glance "$GLANCE_URL" ""
}

# glance_pid: print the pid of the running Glance (its uWSGI master).
glance_pid() {
  cat "$WORK/glance/run/glance-api.pid"
}
