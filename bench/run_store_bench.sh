#!/usr/bin/env bash
# Object-store throughput and memory: Glint storing in OpenStack Swift, through Swift's API
# and through its S3 API, next to python-swiftclient and boto3 doing the same transfers
# against the same server, in one run.
#
#   bench/run_store_bench.sh [store_path.py options...]     e.g. --runs 5 --size-mib 2048
#
# Makes sure Swift runs (scripts/swift.sh: Swift with tempauth and s3api on 127.0.0.1:8280,
# its data on a tmpfs), then for each backend (swift, s3) starts a private Glint whose default
# store is a fresh container or bucket on that Swift, runs bench/store_path.py against it and
# stops it. Results: bench/results/store_path-<backend>-<UTC time>.json. On demand only, never
# in CI: a few minutes; the 1 GiB objects live in RAM (tmpfs) while they exist.
#
# Environment (all optional):
#   GLINT_BIN          glint command (default: glint on PATH)
#   PYTHON             Python with boto3 and python-swiftclient (default: the python next to
#                      GLINT_BIN, else python3)
#   BENCH_GLINT_PORT   default 9397
#   BENCH_BACKENDS     swift,s3 (default) | swift | s3
#   BENCH_KEEP=1       keep the temporary directory (logs)
#   TMPDIR             where the temporary directory goes (default /tmp)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNNER_NAME=run_store_bench
BENCH_TARGETS=glint
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"
GLINT_PORT="${BENCH_GLINT_PORT:-9397}"
BACKENDS="${BENCH_BACKENDS:-swift,s3}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"

check_targets
command -v curl >/dev/null || die "curl not found"
default_python 'import boto3, swiftclient'
"$PYTHON" -c 'import boto3, swiftclient' 2>/dev/null \
  || die "$PYTHON cannot import boto3 and swiftclient; set PYTHON (pip install -e '.[swift,s3]')"
check_ports_free

"$REPO/scripts/swift.sh" >&2 || die "scripts/swift.sh could not start Swift"
make_work_dir glint-store-bench
install_cleanup_trap

# glint_config BACKEND: a TOML file making a fresh container or bucket the default store.
glint_config() {
  local name
  name="bench-glint-$(date +%s)-$RANDOM"
  printf '[storage]\ndefault = "objects"\n[storage.stores.objects]\n'
  case "$1" in
    swift) printf 'type = "swift"\nauth_url = "http://127.0.0.1:8280/auth/v1.0"\nuser = "test:tester"\nkey = "testing"\ncontainer = "%s"\n' "$name" ;;
    s3) printf 'type = "s3"\nendpoint_url = "http://127.0.0.1:8280"\naccess_key = "test:tester"\nsecret_key = "testing"\nbucket = "%s"\naddressing_style = "path"\n' "$name" ;;
  esac
}

rc=0
for backend in ${BACKENDS//,/ }; do
  case "$backend" in swift | s3) ;; *) die "BENCH_BACKENDS: unknown backend $backend" ;; esac
  glint_config "$backend" >"$WORK/$backend.toml"
  GLINT_CONFIG="$WORK/$backend.toml" start_glint
  say "running store_path.py for $backend"
  "$PYTHON" "$HERE/store_path.py" --backend "$backend" --glint "$GLINT_URL" \
    --glint-pid "$GLINT_PID" --work-dir "$WORK/bench" \
    --json "$HERE/results/store_path-$backend-$STAMP.json" "$@" || rc=$?
  stop_glint
done
exit "$rc"
