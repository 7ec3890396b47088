#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's box.
#
# Tests talk to a real Mosquitto on 127.0.0.1:1883 (and start Mosquittos of their own, with
# certificates made by openssl) and a real PostgreSQL on 127.0.0.1:5432,
# and drive the web console in Debian's headless Chromium with playwright-core (npm, locked in
# tests/e2e/package-lock.json). This script installs them with apt-get and npm when they are
# missing, starts the services when they are stopped, makes a `faultline` test role, then
# runs formatting, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 50); do listening "$1" && return 0; sleep 0.2; done; echo "nothing listens on port $1" >&2; return 1; }

missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# The mqtts test makes its own CA and certificates.
command -v openssl >/dev/null || missing+=(openssl)
# The console's browser test: Debian's Chromium driven by playwright-core from npm.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${missing[@]}"
fi

if ! listening 1883; then
  echo "==> starting Mosquitto"
  as_root mkdir -p /run/mosquitto /var/log/mosquitto /var/lib/mosquitto
  as_root chown mosquitto: /run/mosquitto /var/log/mosquitto /var/lib/mosquitto 2>/dev/null || true
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_for 1883
fi

if ! listening 5432; then
  echo "==> starting PostgreSQL"
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  [ -d "/etc/postgresql/$version/main" ] || as_root pg_createcluster "$version" main
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for 5432
fi

# A login role with a password works whether pg_hba says trust (CI images) or scram (Debian).
as_postgres "psql -q -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'faultline') THEN
    CREATE ROLE faultline LOGIN CREATEDB PASSWORD 'faultline';
  END IF; END \\\$\\\$;\""
export FAULTLINE_TEST_PG_URL="${FAULTLINE_TEST_PG_URL:-postgres://faultline:faultline@127.0.0.1:5432/postgres}"
export FAULTLINE_TEST_MQTT_URL="${FAULTLINE_TEST_MQTT_URL:-mqtt://127.0.0.1:1883}"

# Each test makes its own database named t<16 hex> (a few older ones, <word>_t<16 hex>); drop
# what earlier runs left behind.
for db in $(as_postgres "psql -tAc \"SELECT datname FROM pg_database WHERE datname ~ '^([a-z]+_)?t[0-9a-f]{16}\\\$'\""); do
  as_postgres "psql -q -c 'DROP DATABASE IF EXISTS \"$db\"'" || true
done

echo "==> npm ci (playwright-core for the console test; the browser is Debian's)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --all-targets --quiet
