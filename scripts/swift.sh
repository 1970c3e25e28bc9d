#!/usr/bin/env bash
# Makes sure the OpenStack Swift the store tests run against is serving on loopback: one proxy on
# 127.0.0.1:8280 with tempauth and the S3 API (s3api), over one-replica account/container/object
# servers (6212/6211/6210) and a memcached on 127.0.0.1:11712.
#   Swift v1 auth: http://127.0.0.1:8280/auth/v1.0, users test:tester/testing, test2:tester2/testing2
#   S3: http://127.0.0.1:8280, path-style, region us-east-1, access key test:tester, secret testing
# Everything lives under ${GLINT_SERVICES_DIR:-<repo>/.services}/swift (its own virtualenv, configs,
# rings, logs, pid files); objects are kept on a tmpfs mounted there. Installs what is missing,
# starts what is stopped, restarts what runs on an outdated config; when all is up it only checks.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
services=${GLINT_SERVICES_DIR:-$repo/.services}
mkdir -p "$services/swift"
home=$(cd "$services/swift" && pwd)
venv=$home/venv etc=$home/etc data=$home/data run=$home/run logs=$home/logs
mkdir -p "$etc" "$data" "$run" "$logs"

requirements="swift==2.38.3 python-swiftclient==4.11.0 keystonemiddleware==13.0.1"
proxy_port=8280 memcached_port=11712
declare -A storage_ports=([object]=6210 [container]=6211 [account]=6212)
user=$(id -un)

script=swift.sh
# shellcheck source-path=SCRIPTDIR source=daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

# Writes stdin to $1 only when it differs, so that a running server is restarted only when its
# configuration really changed.
changed=0
install_file() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1" && changed=1; fi
}

# --- the software ------------------------------------------------------------------------------
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ]; then
  say "installing $requirements"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements \
    >"$logs/pip.log" 2>&1 || die "pip install failed" "$logs/pip.log"
  echo "$requirements" >"$venv/.requirements"
  changed=1
fi

if ! command -v memcached >/dev/null; then
  say "installing memcached"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached; } \
    >"$logs/apt.log" 2>&1 || die "apt-get install memcached failed" "$logs/apt.log"
fi

# --- storage -----------------------------------------------------------------------------------
# Swift keeps object metadata in extended attributes; the root ext4 here holds only about 4 KiB of
# them per file (507 from the object server beyond), a tmpfs has no such limit.
if ! mountpoint -q "$data"; then
  [ "$(id -u)" = 0 ] || die "$data must be a tmpfs; mounting one needs root"
  mount -t tmpfs -o mode=0755 glint-swift "$data"
  changed=1
fi
mkdir -p "$data/d1"

# --- configuration -----------------------------------------------------------------------------
install_file "$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = glint
swift_hash_path_suffix = glint-tests

[storage-policy:0]
name = Policy-0
default = yes
EOF

for kind in account container object; do
  # One node, one replica, one device; 2^8 partitions are plenty for tests.
  if [ ! -s "$etc/$kind.ring.gz" ]; then
    (
      cd "$etc"
      rm -f "$kind.builder"
      "$venv/bin/swift-ring-builder" "$kind.builder" create 8 1 1
      "$venv/bin/swift-ring-builder" "$kind.builder" add "r1z1-127.0.0.1:${storage_ports[$kind]}/d1" 100
      # Exit code 1 is a warning (e.g. about the single replica), 2 an error.
      "$venv/bin/swift-ring-builder" "$kind.builder" rebalance || [ $? = 1 ]
    ) >"$logs/ring-$kind.log" 2>&1 || die "building the $kind ring failed" "$logs/ring-$kind.log"
    changed=1
  fi
  install_file "$etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${storage_ports[$kind]}
workers = 0
user = $user
swift_dir = $etc
devices = $data
mount_check = false
disable_fallocate = true
log_name = $kind-server
log_level = INFO

[pipeline:main]
pipeline = healthcheck $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
done

install_file "$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy_port
workers = 1
user = $user
swift_dir = $etc
log_name = proxy-server
log_level = INFO

[pipeline:main]
# s3api before the auth filter, slo after it: S3 multipart uploads are stored as SLOs.
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
# With the default 60 s one failed write makes a one-node proxy answer 503 for a minute.
error_suppression_interval = 1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
user_test2_tester2 = testing2 .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

$(swift_proxy_filters "$memcached_port")
EOF

# --- the servers -------------------------------------------------------------------------------
memcached_args=(-l 127.0.0.1 -p "$memcached_port" -U 0 -m 64)
[ "$(id -u)" = 0 ] && memcached_args+=(-u root)  # memcached refuses to run as root otherwise
if ! running memcached "$memcached_port"; then
  start memcached "$memcached_port" memcached "${memcached_args[@]}"
fi
memcached_ok() { port_open "$memcached_port"; }
wait_for 30 memcached "$logs/memcached.log" -- memcached_ok

if [ "$changed" = 1 ]; then
  stop proxy-server account-server container-server object-server
fi
for kind in account container object; do
  if ! running "$kind-server" "$etc/$kind-server.conf"; then
    # --verbose keeps the log on stderr (the log file) rather than syslog, which is absent here.
    start "$kind-server" "${storage_ports[$kind]}" \
      "$venv/bin/swift-$kind-server" "$etc/$kind-server.conf" --verbose
  fi
done
if ! running proxy-server "$etc/proxy-server.conf"; then
  start proxy-server "$proxy_port" "$venv/bin/swift-proxy-server" "$etc/proxy-server.conf" --verbose
fi

for kind in account container object; do
  wait_for 60 "the $kind server" "$logs/$kind-server.log" -- \
    http_ok "http://127.0.0.1:${storage_ports[$kind]}/healthcheck"
done
wait_for 60 "the proxy" "$logs/proxy-server.log" -- \
  http_ok "http://127.0.0.1:$proxy_port/healthcheck"

tempauth_ok() {
  http_ok -H "X-Auth-User: $1" -H "X-Auth-Key: $2" "http://127.0.0.1:$proxy_port/auth/v1.0"
}
for account in test:tester:testing test2:tester2:testing2; do
  wait_for 30 "tempauth login as ${account%:*}" "$logs/proxy-server.log" -- \
    tempauth_ok "${account%:*}" "${account##*:}"
done
