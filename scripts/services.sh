#!/usr/bin/env bash
# Makes sure the database servers the test suite needs are running on loopback:
# PostgreSQL on 127.0.0.1:5432 (trust auth) and MariaDB on 127.0.0.1:3306 (root, no password).
# Starts them when they are installed but stopped, installs them (Debian) when they are missing.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
maria_up() { mysqladmin -h 127.0.0.1 -u root status >/dev/null 2>&1; }
# Running at all: `ping` succeeds even when the server refuses the login.
maria_alive() { mysqladmin -h 127.0.0.1 ping >/dev/null 2>&1; }
wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do "$check" && return 0; sleep 0.5; done
  echo "services.sh: $what did not come up" >&2
  return 1
}

if ! command -v pg_ctlcluster >/dev/null || ! command -v mariadbd >/dev/null; then
  if ! pg_up || ! maria_up; then
    echo "services.sh: installing postgresql and mariadb-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql mariadb-server >/dev/null
  fi
fi

if ! pg_up; then
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL pg_up
  # A fresh Debian cluster asks for passwords over TCP; the tests connect as postgres over
  # loopback, as these machines are set up.
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi

if ! maria_up; then
  if ! maria_alive; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
      --bind-address=127.0.0.1
    wait_for MariaDB maria_alive
  fi
  # A fresh Debian MariaDB lets root in only over its socket (unix_socket auth); the tests
  # connect as root without a password over loopback, as these machines are set up. Whether
  # 127.0.0.1 is matched as `localhost` depends on skip-name-resolve, so allow both.
  if ! maria_up; then
    mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket
      OR mysql_native_password USING PASSWORD('');
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
  fi
  wait_for MariaDB maria_up
fi

# The disk-format tests (tests/images/test_formats.py) make real images with qemu-img; they fail
# without it.
command -v qemu-img >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils >/dev/null; }
