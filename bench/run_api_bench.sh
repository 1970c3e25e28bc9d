#!/usr/bin/env bash
# Metadata-API latency: a private Glint vs a private real Glance, side by side.
#
#   bench/run_api_bench.sh [api_latency.py options...]     e.g. --images 1000
#
# Starts, in a fresh temporary directory,
#   - Glint:  GLINT_DATA_DIR=<tmp>/glint $GLINT_BIN serve --host 127.0.0.1 --port $BENCH_GLINT_PORT
#   - Glance: bench/glance/install.sh + start.sh (state in <tmp>/glance),
# waits for /healthcheck on both, runs bench/api_latency.py against both
# (Glint first, so the ratios are glint/glance), charts the results
# (bench/chart.py: a PNG next to the JSON), then stops both and removes
# the temporary directory (trap, also on error or Ctrl-C).  On demand only,
# never in CI: the default of 10,000 images takes several minutes to load
# into Glance.
#
# Starting, stopping and cleaning up is shared with the other runner: bench/lib.sh.
#
# Environment (all optional):
#   GLINT_BIN          glint command (default: glint on PATH)
#   PYTHON             interpreter with httpx, and matplotlib for the chart (default: the
#                      python next to GLINT_BIN if it has httpx, else python3)
#   BENCH_GLINT_PORT   default 9393
#   BENCH_GLANCE_PORT  default 9494
#   BENCH_TARGETS      glint,glance (default) | glint | glance
#   BENCH_JSON         results file (default bench/results/api_latency-<UTC time>.json);
#                      the chart goes next to it, same name with .png (bench/chart.py)
#   BENCH_CHART=0      no chart (then matplotlib is not needed)
#   BENCH_KEEP=1       keep the temporary directory (databases, logs)
#   GLANCE_VENV        Glance's venv, passed on to bench/glance/install.sh (default
#                      bench/.work/glance-venv; about 2 minutes to build once, then reused)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNNER_NAME=run_api_bench
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
GLINT_PORT="${BENCH_GLINT_PORT:-9393}"
GLANCE_PORT="${BENCH_GLANCE_PORT:-9494}"
JSON_OUT="${BENCH_JSON:-$HERE/results/api_latency-$(date -u +%Y%m%dT%H%M%SZ).json}"

check_targets
default_python 'import httpx'
"$PYTHON" -c 'import httpx' 2>/dev/null || die "$PYTHON cannot import httpx; set PYTHON"
check_chart_python
check_ports_free

make_work_dir glint-api-bench
install_cleanup_trap

ARGS=()
if want_target glint; then
  start_glint
  ARGS+=(--target "glint=$GLINT_URL")
fi
if want_target glance; then
  start_glance
  ARGS+=(--target "glance=$GLANCE_URL")
fi

mkdir -p "$(dirname "$JSON_OUT")"
say "running api_latency.py with $PYTHON"
stamp="$(file_stamp "$JSON_OUT")"
rc=0
"$PYTHON" "$HERE/api_latency.py" "${ARGS[@]}" --json "$JSON_OUT" "$@" || rc=$?
if ! chart_results "$JSON_OUT" "$stamp" && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
