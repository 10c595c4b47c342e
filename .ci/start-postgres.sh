#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster from the machine's own binaries on a free loopback
# port and prints its SQLAlchemy URL. Usage: url=$(.ci/start-postgres.sh DIR); stop with
# `pg_ctl -D DIR/data stop`. Installs the server from Debian's packages if it is missing.
set -euo pipefail
dir=${1:?usage: start-postgres.sh DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$dir"
run=()
if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  run=(runuser -u postgres --)
fi
"${run[@]}" "$bin/initdb" -D "$dir/data" -U siyu --auth=trust -E UTF8 --locale=C.UTF-8 >&2
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
"$bin/createdb" -h 127.0.0.1 -p "$port" -U siyu siyu_test >&2
echo "postgresql+psycopg://siyu@127.0.0.1:$port/siyu_test"
