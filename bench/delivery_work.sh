# The database's work per event, read from the write-ahead log (pg_walinspect): what writing
# the events cost, and what delivering them cost on top, per event. Exact counts, not timings:
# heap rows written (inserted, updated, deleted or locked), index entries added, WAL bytes.
# Sourced by scripts/bench.sh, after bench/writer_overhead.sh.
#
#   delivery_work EVENTS RELAY_BIN SINK_URL
#     In a database of its own, EVENTS rows are inserted into a tracked table, 100 to a
#     transaction, with no relay running; then the relay delivers them all to the sink (one
#     webhook), and is stopped.

WORK_DB=bench_work

# A WAL position
wal_position() {
    psql -X -At -d "$WORK_DB" -c "SELECT pg_current_wal_insert_lsn()"
}

# What the WAL between two positions holds, per event: heap rows, index entries, bytes
wal_work() {
    local from=$1 to=$2 events=$3
    psql -X -At -F ' ' -d "$WORK_DB" <<SQL
SELECT round(sum(count) FILTER (WHERE "resource_manager/record_type" ~ '^Heap2?/(INSERT|MULTI_INSERT|UPDATE|HOT_UPDATE|DELETE|LOCK)')
             / $events::numeric, 2),
       round(sum(count) FILTER (WHERE "resource_manager/record_type" ~ '^Btree/INSERT') / $events::numeric, 2),
       round(sum(record_size) / $events::numeric, 0),
       round(sum(combined_size) / $events::numeric, 0)
FROM pg_get_wal_stats('$from', '$to', per_record => true)
SQL
}

# Heap rows by kind, per event, for the breakdown line
wal_heap_kinds() {
    local from=$1 to=$2 events=$3
    psql -X -At -d "$WORK_DB" <<SQL
SELECT string_agg(format('%s %s', "resource_manager/record_type", round(count / $events::numeric, 2)), ', '
                  ORDER BY count DESC)
FROM pg_get_wal_stats('$from', '$to', per_record => true)
WHERE "resource_manager/record_type" ~ '^(Heap2?|Btree)/' AND count >= $events / 100
SQL
}

delivery_work() {
    local events=$1 relay_bin=$2 sink_url=$3 before written delivered relay_pid i
    fresh_database "$WORK_DB" "$sink_url" <<'SQL'
CREATE EXTENSION pg_walinspect;
CREATE TABLE tracked (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                      created_at timestamptz NOT NULL DEFAULT now());
SELECT webhooks.track('tracked', entity => 'profile');
SELECT webhooks.create('bench', 'profile.*', :'sink_url');
CHECKPOINT;
SQL
    local sent_before
    sent_before=$(curl -s "${sink_url%/*}/count")
    before=$(wal_position)
    /usr/lib/postgresql/15/bin/pgbench -n -c 1 -t $((events / 100)) \
        -f <(echo "$(workload_sql tracked insert100);") "$WORK_DB" >/dev/null 2>&1
    written=$(wal_position)
    "$relay_bin" --database-url "host=$PGHOST port=$PGPORT user=postgres dbname=$WORK_DB" \
        --allow-cidr 127.0.0.1/32 --listen-addr 127.0.0.1:0 >>"$WORK/relay.log" 2>&1 &
    relay_pid=$!
    for ((i = 0; i < 1200; i++)); do
        [ "$(curl -s "${sink_url%/*}/count")" -ge $((sent_before + events)) ] && break
        sleep 0.1
    done
    BENCH_DB=$WORK_DB relay_backlog 60 >/dev/null # the last acknowledgements
    delivered=$(wal_position)
    kill "$relay_pid" && wait "$relay_pid" 2>/dev/null || true
    echo "Database work per event ($events events, 1 webhook, from the WAL): heap rows written, index entries, WAL bytes without / with full-page images"
    printf '%-34s %10s %14s %22s\n' "" "heap rows" "index entries" "WAL bytes"
    wal_work "$before" "$written" "$events" | awk '{ printf "%-34s %10s %14s %22s\n", "writing the event (capture)", $1, $2, $3 " / " $4 }'
    wal_work "$written" "$delivered" "$events" | awk '{ printf "%-34s %10s %14s %22s\n", "delivering it (relay)", $1, $2, $3 " / " $4 }'
    echo "  delivering, by record: $(wal_heap_kinds "$written" "$delivered" "$events")"
}
