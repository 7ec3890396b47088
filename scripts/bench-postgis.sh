#!/usr/bin/env bash
# Mapping side by side: faultline's in-memory index against PostGIS (ST_Contains / ST_DWithin
# with GiST indexes) on the same 1,000,000 seeded points and the same areas.
# Installs PostGIS with apt-get when it is missing. Usage: scripts/bench-postgis.sh [customers] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-1000000}
runs=${2:-21}
work=$(mktemp -d /tmp/faultline-bench.XXXXXX)
chmod 755 "$work"
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if [ ! -f "/usr/share/postgresql/$version/extension/postgis.control" ]; then
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "postgresql-$version-postgis-3"
fi

cargo build --release --quiet
echo "== faultline (in-memory R-tree + prepared areas), $customers customers, median of $runs"
./target/release/faultline bench mapping --customers "$customers" --runs "$runs" --export "$work" | tee "$work/faultline.txt"
chmod 644 "$work"/*

db=faultline_bench
as_postgres "psql -q -c 'DROP DATABASE IF EXISTS $db' -c 'CREATE DATABASE $db'"
as_postgres "psql -q -d $db" <<SQL
CREATE EXTENSION postgis;
CREATE TABLE pts (id text PRIMARY KEY, lon float8, lat float8);
\copy pts FROM '$work/points.csv' WITH (FORMAT csv)
ALTER TABLE pts ADD COLUMN geom geometry(Point, 4326);
UPDATE pts SET geom = ST_SetSRID(ST_MakePoint(lon, lat), 4326);
CREATE INDEX pts_geom ON pts USING gist (geom);
CREATE INDEX pts_geog ON pts USING gist ((geom::geography));
VACUUM ANALYZE pts;
SQL

echo "== PostGIS $(as_postgres "psql -tA -d $db -c 'SELECT postgis_lib_version()'"), same points and areas, median of $runs (client-side, ids fetched)"
printf '%-22s %9s %12s\n' case affected postgis
while IFS=$'\t' read -r name kind wkt radius; do
  if [ "$kind" = polygon ]; then
    query="SELECT id FROM pts WHERE ST_Contains(ST_GeomFromText('$wkt', 4326), geom)"
  else
    query="SELECT id FROM pts WHERE ST_DWithin(geom::geography, ST_GeogFromText('SRID=4326;$wkt'), $radius)"
  fi
  {
    echo '\timing on'
    echo '\o /dev/null'
    for _ in $(seq 1 "$runs"); do echo "$query;"; done
  } > "$work/q.sql"
  echo "SELECT count(*) FROM ($query) q;" > "$work/count.sql"
  chmod 644 "$work/q.sql" "$work/count.sql"
  median=$(as_postgres "psql -q -d $db -f $work/q.sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  affected=$(as_postgres "psql -tA -d $db -f $work/count.sql")
  printf '%-22s %9s %9.2f ms\n' "$name" "$affected" "$median"
done < "$work/areas.wkt"
as_postgres "psql -q -c 'DROP DATABASE $db'"
rm -rf "$work"
