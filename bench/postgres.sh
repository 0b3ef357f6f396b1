#!/usr/bin/env bash
# A private PostgreSQL server for benchmarks, from Debian's binaries, with the server's default
# durability (fsync on): bench/postgres.sh start DIR PORT | stop DIR | createdb PORT NAME
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$1" in
  start)
    dir="$2"; port="$3"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chmod o+x "$(dirname "$dir")"; chown postgres:postgres "$dir"; fi
    as_postgres "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 > /dev/null
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = 300\n" "$port" "$dir" >> "$dir/postgresql.conf"
    as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start > /dev/null ;;
  stop)
    as_postgres "$bin/pg_ctl" -D "$2" -w -m fast stop > /dev/null; rm -rf "$2" ;;
  createdb)
    "$bin/psql" -h 127.0.0.1 -p "$2" -U postgres -qc "CREATE DATABASE $3;" ;;
esac
