#!/usr/bin/env bash
# A PostgreSQL cluster sized for the million-customer benchmarks, beside the stock one the tests
# use: port 5433, settings a utility's database server would have (docs/OPERATIONS.md,
# "PostgreSQL settings"), autovacuum on. Prints the URL of a fresh, empty database on it.
#
#   cargo run --release -- bench fanout --customers 1000000 --concurrency 512 --batch 8192 \
#       --database-url "$(scripts/bench-postgres.sh)"
#
# Debian's postgresql-common makes the cluster; run as root (or with sudo).
set -euo pipefail

port=5433
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sudo -u postgres sh -c "$1"; fi; }

if [ ! -d "/etc/postgresql/$version/bench" ]; then
  as_root pg_createcluster "$version" bench -p "$port" \
    -o shared_buffers=4GB -o effective_cache_size=12GB -o maintenance_work_mem=1GB \
    -o wal_buffers=64MB -o max_wal_size=8GB -o checkpoint_timeout=15min >&2
fi
as_root pg_ctlcluster --skip-systemctl-redirect "$version" bench start 2>/dev/null || true
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done

db="fanout_$(date +%s)"
as_postgres "psql -q -p $port -v ON_ERROR_STOP=1 -c \"DO \\\$\\\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'faultline') THEN
    CREATE ROLE faultline LOGIN CREATEDB PASSWORD 'faultline';
  END IF; END \\\$\\\$;\" -c 'CREATE DATABASE $db OWNER faultline'" >&2
echo "postgres://faultline:faultline@127.0.0.1:$port/$db"
