# Start and stop a throwaway PostgreSQL cluster on a private port and socket directory: the
# PostgreSQL that PG_CONFIG names (Debian's 15 by default; scripts/test.sh sets it to 18's for
# its second pass). Sourced by the demo, the test and the benchmark scripts.
#
#   cluster_start DIR PORT   initdb (if needed) + start; exports PGHOST PGPORT PGUSER PGDATABASE
#   cluster_stop DIR         stop it (fast mode)
#   cluster_require_tls DIR CERT KEY
#                            serve TLS with this certificate and accept TCP connections only
#                            over it, with a password (scram-sha-256); restarts the cluster
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.

PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
PG_BIN=${PG_BIN:-$("$PG_CONFIG" --bindir)}

as_cluster_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

cluster_start() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir"
        chmod 700 "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_cluster_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            return 1
        }
        cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
    fi
    as_cluster_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null || {
        tail -20 "$dir/postgres.log" >&2
        return 1
    }
    export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

cluster_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_cluster_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

cluster_require_tls() {
    local dir=$1 cert=$2 key=$3
    install -m 600 "$cert" "$dir/data/server.crt"
    install -m 600 "$key" "$dir/data/server.key"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir/data/server.crt" "$dir/data/server.key"
    fi
    cat >>"$dir/data/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
CONF
    cat >"$dir/data/pg_hba.conf" <<HBA
local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl all all ::1/128 scram-sha-256
host all all all reject
HBA
    as_cluster_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart \
        -l "$dir/postgres.log" >/dev/null
}
