#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the many-worker tests and print its URL.
# Debian's packages provide it; the server refuses to run as root, so it runs as user postgres.
set -euo pipefail
port="${DECODER_NAS_PG_PORT:-55432}"
data="${TMPDIR:-/tmp}/decoder-nas-pg"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres() { runuser -u postgres -- "$@"; }
# Reuse a server already answering on the port (a second run on the same machine); else start one.
if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  rm -rf "$data" && mkdir -p "$data" && chown postgres: "$data"
  as_postgres "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
fi
as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qtAc \
  "SELECT 1 FROM pg_database WHERE datname = 'decoder_nas_test'" | grep -q 1 ||
  as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres decoder_nas_test
echo "postgresql://postgres@127.0.0.1:$port/decoder_nas_test"
