# shellcheck shell=bash
# The daemon plumbing of scripts/swift.sh and scripts/keystone.sh: messages, the lock that lets
# parallel test processes call them, and starting, stopping and waiting for background servers.
# Sourced, not run, after the caller has set `script` (its name, for messages) and the folders
# `home` (its lock lives there), `run` (pid files) and `logs`.

say() { echo "$script: $*" >&2; }
die() {
  say "$1"
  shift
  local log
  for log in "$@"; do
    [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 40 "$log" >&2; }
  done
  exit 1
}

# Concurrent test processes may all call this at once: one at a time.
exec 9>"$home/.lock"
flock -w 600 9 || die "another $script still holds $home/.lock"

port_open() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
http_ok() { curl -fsS -o /dev/null --max-time 5 "$@" 2>/dev/null; }

# A pid file counts only while its process still runs the same command line; pids are reused.
running() {
  local pid
  pid=$(cat "$run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && grep -qF -- "$2" "/proc/$pid/cmdline" 2>/dev/null
}

# start <name> <port> <command...>
# setsid: the daemon outlives this script and the test process that ran it. fd 9 (the lock) is
# closed so a daemon cannot keep the next caller waiting forever.
start() {
  local name=$1 port=$2
  shift 2
  if port_open "$port"; then
    die "port $port is taken by a process that is not ours ($run/$name.pid); stop it first"
  fi
  setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 9>&- &
  echo $! >"$run/$name.pid"
}

# stop <name>...: all at once, since each takes a second or two to shut down gracefully.
stop() {
  local name pid pids=()
  for name in "$@"; do
    pid=$(cat "$run/$name.pid" 2>/dev/null) || continue
    rm -f "$run/$name.pid"
    if kill "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  local alive
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${pids[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    [ "$alive" = 1 ] || return 0
    sleep 0.2
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

# wait_for <seconds> <what> <log>... -- <command...>: the logs are shown when it times out.
wait_for() {
  local seconds=$1 what=$2 failure_logs=()
  shift 2
  while [ "$1" != -- ]; do failure_logs+=("$1") && shift; done
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what did not come up within ${seconds}s" "${failure_logs[@]}"
    fi
    sleep 0.2
  done
}

# The filters both Swift proxies (tempauth's in swift.sh, Keystone's in keystone.sh) configure
# alike, for their proxy-server.conf; $1: memcached's port.
swift_proxy_filters() {
  cat <<EOF
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$1

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:account-quotas]
use = egg:swift#account_quotas

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes

[filter:symlink]
use = egg:swift#symlink
EOF
}
