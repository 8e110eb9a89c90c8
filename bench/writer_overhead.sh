# Writer overhead: pgbench against the same table shape, untracked and tracked by each peer,
# rounds alternated in one run so the machine's noise hits all alike. Sourced by
# scripts/bench.sh (and bench/capture_vs_plpgsql.sh for the set-up).
#
# Targets (each a copy of the same table, 10,000 rows to start):
#   untracked  no trigger
#   tracked    pg_webhooks (webhooks.track)
#   pgq        PgQ's logutriga row trigger into a queue (Debian postgresql-15-pgq3)
#   outbox     a minimal hand-written outbox: a PL/pgSQL row trigger inserting to_jsonb(NEW)
#              into a table indexed on (xid, id), as an application would write it
#   child      pg_webhooks, a child table of untracked (a foreign key, tracked with parent)
#   enriched   the same, its events carrying two columns of the parent row (webhooks.enrich)
#
#   writer_setup SINK_URL      SINK_URL: where the webhook points (the relay delivers there)
#   enrich_overhead ROUNDS SECONDS   what reading the parent row costs: enriched / child
#   writer_overhead ROUNDS SECONDS MODE
#     MODE alone: no consumer runs; every target
#     MODE relay: the relay delivers pg_webhooks' events to the sink at full speed; untracked
#                 and tracked only (no other peer delivers anything), single-row statements
#                 only, and how far the relay was behind at the end of each round

BENCH_DB=bench
WRITER_TARGETS_ALONE="untracked tracked pgq outbox"
WRITER_TARGETS_RELAY="untracked tracked"

# fresh_database NAME SINK_URL < SQL: database NAME made anew with pg_webhooks (no verification
# asked of webhooks) and the past week's partitions (bench/kept_days.sql), then the SQL on stdin
# run in it, with :'sink_url' set
fresh_database() {
    local name=$1 sink_url=$2
    psql -X -q -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    psql -X -q -d "$name" -c "CREATE EXTENSION pg_webhooks" \
        -c "INSERT INTO webhooks.settings (require_verification) VALUES (false)" \
        -f "$REPO/bench/kept_days.sql" >/dev/null
    psql -X -q -v ON_ERROR_STOP=1 -v sink_url="$sink_url" -d "$name" >/dev/null
}

writer_setup() {
    fresh_database "$BENCH_DB" "$1" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pgq;
SELECT pgq.create_queue('bench');
CREATE TABLE untracked (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tracked (LIKE untracked INCLUDING ALL);
CREATE TABLE pgq (LIKE untracked INCLUDING ALL);
CREATE TABLE outbox (LIKE untracked INCLUDING ALL);
SELECT webhooks.track('tracked', entity => 'profile');
SELECT webhooks.create('bench', 'profile.*', :'sink_url');
CREATE TRIGGER pgq_capture AFTER INSERT OR UPDATE OR DELETE ON pgq
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench');
CREATE TABLE outbox_events (id bigserial, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                            event text NOT NULL, payload jsonb NOT NULL);
CREATE INDEX ON outbox_events (xid, id);
CREATE FUNCTION outbox_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_events (event, payload) VALUES (lower(TG_OP), to_jsonb(NEW));
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_capture AFTER INSERT OR UPDATE ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_capture();
INSERT INTO untracked (email, country) SELECT 'seed' || i || '@example.com', 'NL'
FROM generate_series(1, 10000) i;
-- enrich_overhead: two tracked child tables of untracked, alike but for webhooks.enrich()
CREATE TABLE child (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    parent_id bigint NOT NULL DEFAULT 1 REFERENCES untracked);
CREATE TABLE enriched (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                       created_at timestamptz NOT NULL DEFAULT now(),
                       parent_id bigint NOT NULL DEFAULT 1 REFERENCES untracked);
SELECT webhooks.track('child', entity => 'child', parent => 'parent_id');
SELECT webhooks.track('enriched', entity => 'enriched', parent => 'parent_id');
SELECT webhooks.enrich('enriched', ARRAY['email', 'country']);
SQL
    local target
    for target in tracked pgq outbox; do
        psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" >/dev/null \
            -c "ALTER TABLE $target DISABLE TRIGGER USER" \
            -c "INSERT INTO $target SELECT * FROM untracked" \
            -c "ALTER TABLE $target ENABLE TRIGGER USER" \
            -c "SELECT setval(pg_get_serial_sequence('$target', 'id'), 10000)"
    done
}

# the workload's statement against TABLE
workload_sql() {
    local table=$1 workload=$2
    case $workload in
        insert1) echo "INSERT INTO $table (email, country) VALUES ('a@example.com', 'NL')" ;;
        insert100) echo "INSERT INTO $table (email, country) SELECT 'b@example.com', 'DE' FROM generate_series(1, 100)" ;;
        update1) echo "UPDATE $table SET country = md5(random()::text) WHERE id = :id" ;;
    esac
}

# pgbench_tps TARGET WORKLOAD CLIENTS SECONDS -> transactions per second
pgbench_tps() {
    local target=$1 workload=$2 clients=$3 seconds=$4 script
    script=$(mktemp)
    {
        [ "$workload" = update1 ] && printf '\\set id random(1, 10000)\n'
        echo "$(workload_sql "$target" "$workload");"
    } >"$script"
    chmod 644 "$script"
    /usr/lib/postgresql/15/bin/pgbench -n -c "$clients" -j "$clients" -T "$seconds" \
        -f "$script" "$BENCH_DB" 2>"$script.err" | awk '/^tps = / { print $3 }'
    rm -f "$script" "$script.err"
}

# min / median / max of the numbers on stdin, 2 decimals
summarise() {
    sort -g | awk '{ v[NR] = $1 } END {
        printf "%.2f / %.2f / %.2f", v[1], (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR] }'
}

median_of() {
    summarise | awk -F' / ' '{ print $2 }'
}

# Deliveries not yet done: fanned out and owed, or not yet fanned out. Waits up to LIMIT
# seconds for the relay to catch up, then prints what is left.
relay_backlog() {
    local limit=$1 left i
    for ((i = 0; i <= limit * 10; i++)); do
        left=$(psql -X -At -d "$BENCH_DB" -c "SELECT (SELECT queued FROM webhooks.queue_depth())
            + (SELECT count(*) FROM webhooks.events e, webhooks.fan_out_state s
               WHERE NOT pg_visible_in_snapshot(e.xid, s.done_upto))")
        [ "$left" = 0 ] && break
        [ "$limit" = 0 ] && break
        sleep 0.1
    done
    echo "$left"
}

writer_overhead() {
    local rounds=$1 seconds=$2 mode=$3 targets workload spec target i goal
    targets=$WRITER_TARGETS_ALONE
    [ "$mode" = relay ] && targets=$WRITER_TARGETS_RELAY
    printf '%-36s %-12s' "workload (8 clients, sync commit)" "untracked"
    for target in $targets; do
        [ "$target" = untracked ] || printf ' %-22s' "$target/untracked"
    done
    [ "$mode" = relay ] && printf ' %s' "relay behind at round ends (events)"
    printf ' %s\n' "goal (tracked)"
    local specs=("insert1 0.90" "insert100 0.50" "update1 0.85")
    # 100-row statements make events faster than any single endpoint takes them
    [ "$mode" = relay ] && specs=("insert1 0.70" "update1 0.70")
    for spec in "${specs[@]}"; do
        read -r workload goal <<<"$spec"
        local dir behind=""
        dir=$(mktemp -d)
        for ((i = 0; i < rounds; i++)); do
            for target in $targets; do
                pgbench_tps "$target" "$workload" 8 "$seconds" >>"$dir/$target"
            done
            if [ "$mode" = relay ]; then
                behind+="$(relay_backlog 0) "
                relay_backlog "${CATCH_UP:-120}" >/dev/null # the next round starts with the relay caught up
            fi
        done
        local base
        base=$(median_of <"$dir/untracked")
        printf '%-36s %-12.0f' "$(describe_workload "$workload")" "$base"
        for target in $targets; do
            [ "$target" = untracked ] && continue
            paste "$dir/$target" "$dir/untracked" | awk '{ printf "%.4f\n", $1 / $2 }' >"$dir/$target.ratio"
            printf ' %-22s' "$(summarise <"$dir/$target.ratio")"
        done
        [ "$mode" = relay ] && printf ' %-35s' "$behind"
        printf ' >= %s\n' "$goal"
        rm -rf "$dir"
        psql -X -q -d "$BENCH_DB" -c "VACUUM ANALYZE untracked, tracked, pgq, outbox" >/dev/null
    done
}

describe_workload() {
    case $1 in
        insert1) echo "single-row INSERT" ;;
        insert100) echo "100-row INSERT (tps = statements/s)" ;;
        update1) echo "single-column UPDATE of one row" ;;
    esac
}

enrich_overhead() {
    local rounds=$1 seconds=$2 workload target i dir
    printf '%-36s %-12s %s\n' "workload (8 clients, sync commit)" "child" "enriched/child"
    for workload in insert1 insert100; do
        dir=$(mktemp -d)
        for ((i = 0; i < rounds; i++)); do
            for target in child enriched; do
                pgbench_tps "$target" "$workload" 8 "$seconds" >>"$dir/$target"
            done
        done
        paste "$dir/enriched" "$dir/child" | awk '{ printf "%.4f\n", $1 / $2 }' >"$dir/ratio"
        printf '%-36s %-12.0f %s\n' "$(describe_workload "$workload")" "$(median_of <"$dir/child")" \
            "$(summarise <"$dir/ratio")"
        rm -rf "$dir"
    done
}
