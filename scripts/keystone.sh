#!/usr/bin/env bash
# Makes sure the Keystone the Keystone-auth tests run against is serving on 127.0.0.1:5080, with
# a second Swift proxy behind it on 127.0.0.1:8281 (over the storage servers of scripts/swift.sh,
# which it runs first).
#   admin / admin-secret in project admin (region RegionOne)
#   glint / glint-secret, member of project glint; swift / swift-secret, admin of project service
#   roles member, reader, ResellerAdmin; catalog: object-store -> :8281/v1/AUTH_<project id>
# Everything lives under ${GLINT_SERVICES_DIR:-<repo>/.services}/keystone (its own virtualenv,
# SQLite database, fernet keys, configs, logs, pid files). Installs what is missing, starts what is
# stopped, restarts what runs on an outdated config; when all is up it only checks.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
services=${GLINT_SERVICES_DIR:-$repo/.services}

"$here/swift.sh"

mkdir -p "$services/keystone"
home=$(cd "$services/keystone" && pwd)
swift=$(cd "$services/swift" && pwd)
venv=$home/venv etc=$home/etc run=$home/run logs=$home/logs
mkdir -p "$etc" "$run" "$logs"

requirements="keystone==30.0.0 gunicorn==27.0.1"
keystone_port=5080 proxy_port=8281 memcached_port=11712
keystone=http://127.0.0.1:$keystone_port
user=$(id -un)

script=keystone.sh
# shellcheck source-path=SCRIPTDIR source=daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

# install_file <path> <flag variable>: writes stdin to the path only when it differs, and then
# sets the flag, so that a running server is restarted only when its configuration changed.
install_file() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1" && printf -v "$2" 1; fi
}
keystone_changed=0 proxy_changed=0

# --- the software ------------------------------------------------------------------------------
if [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$requirements" ]; then
  say "installing $requirements"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements \
    >"$logs/pip.log" 2>&1 || die "pip install failed" "$logs/pip.log"
  echo "$requirements" >"$venv/.requirements"
  keystone_changed=1
fi
# The proxy runs Swift's code: a reinstall there needs a restart here too.
[ "$swift/venv/.requirements" -nt "$run/swift-proxy.pid" ] && proxy_changed=1

# --- Keystone ----------------------------------------------------------------------------------
install_file "$etc/keystone.conf" keystone_changed <<EOF
[database]
connection = sqlite:///$home/keystone.db

[token]
provider = fernet

[fernet_tokens]
key_repository = $home/fernet-keys

[fernet_receipts]
key_repository = $home/fernet-keys

[credential]
key_repository = $home/credential-keys

[identity]
# The default (12 bcrypt rounds) costs about 400 ms for every password login.
password_hash_rounds = 4

[cache]
# In-process: correct only because Keystone runs as one worker process.
enabled = true
backend = dogpile.cache.memory
EOF

# Keystone parses the process's command line as its own options and dies on gunicorn's.
install_file "$etc/keystone_wsgi.py" keystone_changed <<'EOF'
import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402
EOF

manage() { "$venv/bin/keystone-manage" --config-file "$etc/keystone.conf" "$@"; }
if [ ! -e "$home/.bootstrapped" ] || [ ! -s "$home/keystone.db" ]; then
  say "creating the Keystone database"
  # New keys too: tokens of the old database must not be honoured by the new one.
  rm -rf "$home/keystone.db" "$home/.provisioned" "$home/fernet-keys" "$home/credential-keys"
  {
    manage db_sync
    owner=(--keystone-user "$user" --keystone-group "$(id -gn)")
    manage fernet_setup "${owner[@]}"
    manage credential_setup "${owner[@]}"
    manage bootstrap --bootstrap-username admin --bootstrap-password admin-secret \
      --bootstrap-project-name admin --bootstrap-role-name admin \
      --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
      --bootstrap-admin-url "$keystone/v3" --bootstrap-public-url "$keystone/v3" \
      --bootstrap-internal-url "$keystone/v3"
  } >"$logs/keystone-manage.log" 2>&1 || die "setting Keystone up failed" "$logs/keystone-manage.log"
  touch "$home/.bootstrapped"
  # The proxy's authtoken keeps its service token: one of the old database, useless now.
  keystone_changed=1 proxy_changed=1
fi

if [ "$keystone_changed" = 1 ]; then stop keystone; fi
if ! running keystone "$etc"; then
  start keystone "$keystone_port" env OS_KEYSTONE_CONFIG_FILES="$etc/keystone.conf" \
    "$venv/bin/gunicorn" --bind "127.0.0.1:$keystone_port" --workers 1 --threads 4 \
    --no-control-socket --chdir "$etc" --access-logfile - --error-logfile - \
    keystone_wsgi:application
fi
wait_for 60 Keystone "$logs/keystone.log" -- http_ok "$keystone/v3"

# Each user, project, role and catalog entry is created only when missing.
if [ ! -e "$home/.provisioned" ]; then
  "$venv/bin/python" - "$keystone/v3" "http://127.0.0.1:$proxy_port/v1/AUTH_%(project_id)s" \
    >"$logs/provision.log" 2>&1 <<'EOF' ||
import json
import sys
import urllib.request

keystone, swift_url = sys.argv[1:]
DEFAULT = {"id": "default"}


def call(method, path, body=None, token=""):
    request = urllib.request.Request(
        keystone + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Auth-Token": token},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
        return response.headers, json.loads(data) if data else None


password = {"user": {"name": "admin", "password": "admin-secret", "domain": DEFAULT}}
login = {
    "identity": {"methods": ["password"], "password": password},
    "scope": {"project": {"name": "admin", "domain": DEFAULT}},
}
headers, _ = call("POST", "/auth/tokens", {"auth": login})
admin_token = headers["X-Subject-Token"]


def api(method, path, body=None):
    return call(method, path, body, admin_token)[1]


def ensure(collection, body, query=""):
    """The id of the thing of this name, created when missing."""
    key = collection[:-1]
    found = api("GET", f"/{collection}?name={body['name']}{query}")[collection]
    if found:
        return found[0]["id"]
    print(f"creating {key} {body['name']}")
    return api("POST", f"/{collection}", {key: body})[key]["id"]


roles = {name: ensure("roles", {"name": name}) for name in ("admin", "member", "ResellerAdmin")}
ensure("roles", {"name": "reader"})
for project, user, secret, role in [
    ("service", "swift", "swift-secret", "admin"),
    ("glint", "glint", "glint-secret", "member"),
]:
    in_default = {"domain_id": "default"}
    project_id = ensure("projects", {"name": project, **in_default}, "&domain_id=default")
    user_body = {"name": user, "password": secret, "default_project_id": project_id}
    user_id = ensure("users", {**user_body, **in_default}, "&domain_id=default")
    api("PUT", f"/projects/{project_id}/users/{user_id}/roles/{roles[role]}")

services = api("GET", "/services?type=object-store")["services"]
if services:
    service_id = services[0]["id"]
else:
    print("creating service swift (object-store)")
    service = {"name": "swift", "type": "object-store"}
    service_id = api("POST", "/services", {"service": service})["service"]["id"]
endpoints = api("GET", f"/endpoints?service_id={service_id}")["endpoints"]
for interface in {"public", "internal"} - {endpoint["interface"] for endpoint in endpoints}:
    print(f"creating {interface} endpoint {swift_url}")
    endpoint = {"service_id": service_id, "interface": interface, "url": swift_url,
                "region_id": "RegionOne"}
    api("POST", "/endpoints", {"endpoint": endpoint})
EOF
    die "creating Keystone's users, projects and catalog failed" "$logs/provision.log" \
      "$logs/keystone.log"
  touch "$home/.provisioned"
fi

# --- Swift behind Keystone ---------------------------------------------------------------------
install_file "$etc/swift-proxy.conf" proxy_changed <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy_port
workers = 1
user = $user
# The rings and storage servers of scripts/swift.sh.
swift_dir = $swift/etc
log_name = keystone-proxy
log_level = INFO

[pipeline:main]
# The pipeline of scripts/swift.sh with "authtoken s3api s3token keystoneauth" for
# "s3api tempauth": still before slo, which stores S3 multipart uploads.
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl authtoken s3api s3token keystoneauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true
# With the default 60 s one failed write makes a one-node proxy answer 503 for a minute.
error_suppression_interval = 1

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = $keystone
auth_url = $keystone
auth_type = password
username = swift
password = swift-secret
project_name = service
user_domain_id = default
project_domain_id = default
# Lets tempurl and S3 (signed, no token) requests through to the filters after it.
delay_auth_decision = True
# The proxy's own memcache client.
cache = swift.cache
include_service_catalog = False
service_token_roles_required = True

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:s3token]
use = egg:swift#s3token
auth_uri = $keystone/v3
reseller_prefix = AUTH_
delay_auth_decision = True
auth_type = password
auth_url = $keystone
username = swift
password = swift-secret
project_name = service
user_domain_id = default
project_domain_id = default

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
reseller_admin_role = ResellerAdmin

$(swift_proxy_filters "$memcached_port")
EOF

if [ "$proxy_changed" = 1 ]; then stop swift-proxy; fi
if ! running swift-proxy "$etc/swift-proxy.conf"; then
  # --verbose keeps the log on stderr (the log file) rather than syslog, which is absent here.
  start swift-proxy "$proxy_port" "$swift/venv/bin/swift-proxy-server" "$etc/swift-proxy.conf" --verbose
fi
wait_for 60 "the Keystone Swift proxy" "$logs/swift-proxy.log" -- \
  http_ok "http://127.0.0.1:$proxy_port/healthcheck"

# The end-to-end check: glint logs in, finds Swift in the catalog and writes and reads an object.
check_glint() {
  "$venv/bin/python" - "$keystone/v3" <<'EOF'
import json
import sys
import urllib.request
import uuid

DEFAULT = {"id": "default"}
password = {"user": {"name": "glint", "password": "glint-secret", "domain": DEFAULT}}
login = {
    "identity": {"methods": ["password"], "password": password},
    "scope": {"project": {"name": "glint", "domain": DEFAULT}},
}
request = urllib.request.Request(
    sys.argv[1] + "/auth/tokens",
    data=json.dumps({"auth": login}).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=10) as response:
    token = response.headers["X-Subject-Token"]
    catalog = json.load(response)["token"]["catalog"]
(storage_url,) = [
    endpoint["url"]
    for service in catalog
    if service["type"] == "object-store"
    for endpoint in service["endpoints"]
    if endpoint["interface"] == "public"
]


def swift(method, path, data=None):
    headers = {"X-Auth-Token": token}
    request = urllib.request.Request(storage_url + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


container = "/glint-keystone-check"
name = f"{container}/{uuid.uuid4().hex}"
swift("PUT", container)
swift("PUT", name, b"checked")
assert swift("GET", name) == b"checked"
swift("DELETE", name)
swift("DELETE", container)
EOF
}
check_glint_quietly() { check_glint >"$logs/check.log" 2>&1; }
wait_for 60 "an object PUT/GET as glint through the Keystone Swift proxy" "$logs/check.log" \
  "$logs/swift-proxy.log" "$logs/keystone.log" -- check_glint_quietly
