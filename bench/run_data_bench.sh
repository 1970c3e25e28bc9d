#!/usr/bin/env bash
# Image-data throughput: a private Glint vs a private real Glance, next to the
# machine's limits, in one run.
#
#   bench/run_data_bench.sh [data_path.py options...]     e.g. --runs 5
#
# Starts, in a fresh temporary directory (all on one file system: the random
# file, Glint's data dir and Glance's stores),
#   - Glint:  GLINT_DATA_DIR=<tmp>/glint $GLINT_BIN serve --host 127.0.0.1 --port $BENCH_GLINT_PORT
#   - Glance: bench/glance/install.sh + start.sh (state in <tmp>/glance),
# waits for /healthcheck on both, runs bench/data_path.py against both (its
# work dir <tmp>/bench), charts the results (bench/chart.py: a PNG next to the
# JSON), then stops both and removes the temporary directory,
# random files and stored images included (trap, also on error or Ctrl-C).
# On demand only, never in CI: about 10 minutes, and it writes ~ 30 GiB to
# the disk (peak ~ 7 GiB in use).
#
# Starting, stopping and cleaning up is shared with the other runner: bench/lib.sh.
#
# Environment (all optional):
#   GLINT_BIN          glint command (default: glint on PATH)
#   PYTHON             Python >= 3.11 with matplotlib for the chart (data_path.py itself
#                      needs only the standard library; default: the python next to
#                      GLINT_BIN, else python3)
#   BENCH_GLINT_PORT   default 9396
#   BENCH_GLANCE_PORT  default 9496
#   BENCH_TARGETS      glint,glance (default) | glint | glance
#   BENCH_DROP_CACHES=1  drop the page cache before each upload and for the cold
#                      read (needs root; passes --drop-caches)
#   BENCH_WAIT_QUIET=N  before each measurement wait up to N s for >= 90 % idle CPU
#                      (the machine may be shared; passes --wait-quiet N)
#   BENCH_JSON         results file (default bench/results/data_path-<UTC time>.json);
#                      the chart goes next to it, same name with .png (bench/chart.py)
#   BENCH_CHART=0      no chart (then matplotlib is not needed)
#   BENCH_TIMEOUT      seconds the measurement may take in all (default 3600)
#   BENCH_KEEP=1       keep the temporary directory (logs; the big files are removed anyway)
#   TMPDIR             where the temporary directory goes (default /tmp)
#   GLANCE_VENV        Glance's venv, passed on to bench/glance/install.sh (default
#                      bench/.work/glance-venv; about 2 minutes to build once, then reused)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNNER_NAME=run_data_bench
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
GLINT_PORT="${BENCH_GLINT_PORT:-9396}"
GLANCE_PORT="${BENCH_GLANCE_PORT:-9496}"
JSON_OUT="${BENCH_JSON:-$HERE/results/data_path-$(date -u +%Y%m%dT%H%M%SZ).json}"
RUN_TIMEOUT="${BENCH_TIMEOUT:-3600}"
NEED_FREE_GIB=10

check_targets
command -v curl >/dev/null || die "curl not found"
default_python ''   # any python next to glint will do
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$PYTHON is not Python >= 3.11; set PYTHON"
check_chart_python
check_ports_free

make_work_dir glint-data-bench
free_kib=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
if [ "$free_kib" -lt $((NEED_FREE_GIB * 1024 * 1024)) ]; then
  rmdir "$WORK"
  die "less than ${NEED_FREE_GIB} GiB free on the file system of ${TMPDIR:-/tmp}"
fi

# BENCH_KEEP=1: the logs and databases stay; the image data and random files go.
keep_work_dir() {
  rm -rf "$WORK/bench" "$WORK/glance/images" "$WORK/glance/staging"
  find "$WORK/glint" -type f -size +1M -delete 2>/dev/null || true
  say "kept $WORK (without the big files)"
}
install_cleanup_trap

ARGS=(--work-dir "$WORK/bench")
[ "${BENCH_DROP_CACHES:-0}" = 1 ] && ARGS+=(--drop-caches)
[ -n "${BENCH_WAIT_QUIET:-}" ] && ARGS+=(--wait-quiet "$BENCH_WAIT_QUIET")
if want_target glint; then
  start_glint
  ARGS+=(--glint "$GLINT_URL" --glint-pid "$GLINT_PID")
fi
if want_target glance; then
  start_glance
  ARGS+=(--glance "$GLANCE_URL" --glance-pid "$(glance_pid)")
fi

mkdir -p "$(dirname "$JSON_OUT")"
say "running data_path.py with $PYTHON (time limit ${RUN_TIMEOUT}s)"
stamp="$(file_stamp "$JSON_OUT")"
rc=0
# SIGINT on timeout: data_path.py removes its random file on the way out.
timeout --signal=INT --kill-after=60 "$RUN_TIMEOUT" \
  "$PYTHON" "$HERE/data_path.py" "${ARGS[@]}" --json "$JSON_OUT" "$@" || rc=$?
if ! chart_results "$JSON_OUT" "$stamp" && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
