#!/usr/bin/env bash
# A scratch PostgreSQL server for tests and local clusters, from Debian's `postgresql` package.
#
#   scripts/pg-scratch.sh start DIR PORT   initialise DIR (once) and start a server on
#                                          127.0.0.1:PORT; prints the connection URL
#   scripts/pg-scratch.sh stop DIR         fast shutdown
#   scripts/pg-scratch.sh restart DIR      fast shutdown, then start on the same port
#
# The server refuses to run as root: as root, it runs as the package's `postgres` user (DIR is
# handed to that user). Password authentication (scram-sha-256) with a random password kept in
# DIR/password, on loopback only; the database is `tenantry`, the user `tenantry`.
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT | stop DIR | restart DIR" >&2; exit 64; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "no PostgreSQL server: install Debian's package (apt-get install postgresql; make setup does)" >&2
    exit 3
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local port=$1
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        # The server's user must reach DIR through its parents (a test's private temp dir).
        local p=$dir
        while [ "$p" != / ]; do
            p=$(dirname "$p")
            runuser -u postgres -- test -x "$p" || chmod o+x "$p"
        done
        chown postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/password"
        chmod 600 "$dir/password"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir/password"
        as_owner "$bin/initdb" -D "$dir/data" -U tenantry --pwfile="$dir/password" \
            --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
    fi
    echo "$port" > "$dir/port"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/port"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || {
        tail -n 20 "$dir/server.log" >&2
        exit 1
    }
    local pw
    pw=$(cat "$dir/password")
    if ! PGPASSWORD=$pw "$bin/psql" -h 127.0.0.1 -p "$port" -U tenantry -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'tenantry'" | grep -q 1; then
        PGPASSWORD=$pw "$bin/createdb" -h 127.0.0.1 -p "$port" -U tenantry tenantry
    fi
    echo "postgresql://tenantry:$pw@127.0.0.1:$port/tenantry"
}

stop() {
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case "$cmd" in
    start) [ $# -eq 3 ] || usage; start "$3" ;;
    stop) stop ;;
    restart) stop; start "$(cat "$dir/port")" ;;
    *) usage ;;
esac
