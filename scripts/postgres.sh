#!/usr/bin/env bash
# Starts the installed PostgreSQL cluster and makes the test database (idempotent).
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$ver main"; then
  $SUDO pg_createcluster "$ver" main >/dev/null
fi
if ! pg_lsclusters -h | grep "^$ver main" | grep -q online; then
  $SUDO pg_ctlcluster "$ver" main start
fi
psql_as_postgres() { $SUDO su postgres -s /bin/sh -c "psql -v ON_ERROR_STOP=1 -qAt $*"; }
for _ in $(seq 1 30); do psql_as_postgres "-c 'select 1'" >/dev/null 2>&1 && break; sleep 0.5; done
if [ "$(psql_as_postgres "-c \"select 1 from pg_roles where rolname='stillreel'\"")" != "1" ]; then
  psql_as_postgres "-c \"create role stillreel login password 'stillreel' createdb\""
fi
if [ "$(psql_as_postgres "-c \"select 1 from pg_database where datname='stillreel_test'\"")" != "1" ]; then
  psql_as_postgres "-c 'create database stillreel_test owner stillreel'"
fi
echo "postgresql $ver: postgresql://stillreel:stillreel@127.0.0.1:5432/stillreel_test"
