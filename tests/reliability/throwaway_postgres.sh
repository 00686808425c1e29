#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster that it may restart at will.
#
#   tests/reliability/throwaway_postgres.sh <command...>
#
# Creates the cluster "durable_restart" on port 5499 (PostgreSQL's Debian tools, as root),
# runs the command with PGHOST/PGPORT pointing at it and DURABLE_PG_RESTART set to the
# command that restarts it, then drops the cluster whatever happened. Exits 77, saying so,
# when the machine cannot make one (no pg_createcluster, or not root).
set -uo pipefail
NAME=durable_restart
PORT=${DURABLE_THROWAWAY_PGPORT:-5499}
if ! command -v pg_createcluster >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "throwaway_postgres: cannot create a PostgreSQL cluster here (needs root and pg_createcluster)" >&2
    exit 77
fi
VERSION=$(ls /etc/postgresql | sort -V | tail -1)
pg_dropcluster --stop "$VERSION" "$NAME" >/dev/null 2>&1 || true
trap 'pg_dropcluster --stop "$VERSION" "$NAME" >/dev/null 2>&1 || true' EXIT
pg_createcluster "$VERSION" "$NAME" --port "$PORT" -- --auth=trust >/dev/null || exit 77
pg_ctlcluster --skip-systemctl-redirect "$VERSION" "$NAME" start || exit 77
for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p "$PORT" -q && break
    sleep 0.5
done
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
export DURABLE_PG_RESTART="pg_ctlcluster --skip-systemctl-redirect $VERSION $NAME restart"
"$@"
