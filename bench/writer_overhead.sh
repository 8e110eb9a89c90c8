# Writer overhead: pgbench against the same table shape, tracked and untracked, interleaved in
# one run so the machine's noise hits both alike. Sourced by scripts/bench.sh.
#
# Beside them the floor of any transactional outbox: the untracked statement plus one hand-written
# outbox row per changed row, in the same statement (no trigger, no partitions). floor/untracked
# is what writing the event row costs at all; tracked/floor is what pg_webhooks adds to that.
#
#   writer_overhead REPEATS SECONDS
# prints one line per workload: the ratios as min / median / max.

BENCH_DB=bench

writer_setup() {
    psql -X -q -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "CREATE DATABASE $BENCH_DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" >/dev/null <<'SQL'
CREATE EXTENSION pg_webhooks;
INSERT INTO webhooks.settings (require_verification) VALUES (false);
CREATE TABLE untracked (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tracked (LIKE untracked INCLUDING ALL);
CREATE TABLE floor_outbox (id bigserial, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                           payload jsonb NOT NULL);
CREATE INDEX ON floor_outbox (xid, id);
SELECT webhooks.track('tracked', entity => 'profile');
-- refused by the relay's address policy: every event is fanned out, claimed and acknowledged
SELECT webhooks.create('bench', 'profile.*', 'http://127.0.0.1:9/never-called');
INSERT INTO untracked (email, country) SELECT 'seed' || i || '@example.com', 'NL'
FROM generate_series(1, 10000) i;
INSERT INTO tracked SELECT * FROM untracked;
SELECT setval(pg_get_serial_sequence('tracked', 'id'), 10000);
SQL
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
# TARGET: untracked, tracked, or floor (untracked plus a hand-written outbox row per row)
pgbench_tps() {
    local target=$1 workload=$2 clients=$3 seconds=$4 script
    script=$(mktemp)
    {
        [ "$workload" = update1 ] && printf '\\set id random(1, 10000)\n'
        if [ "$target" = floor ]; then
            echo "WITH changed AS ($(workload_sql untracked "$workload") RETURNING *)" \
                "INSERT INTO floor_outbox (payload) SELECT to_jsonb(c) FROM changed c;"
        else
            echo "$(workload_sql "$target" "$workload");"
        fi
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

writer_overhead() {
    local repeats=$1 seconds=$2 workload clients goal
    printf '%-38s %-8s %-14s %-20s %-6s %-20s %s\n' "workload (synchronous commit)" "clients" \
        "untracked tps" "tracked/untracked" "goal" "floor/untracked" "tracked/floor"
    for spec in "insert1 1 0.95" "insert1 8 0.95" "insert100 8 0.70" "update1 8 0.90"; do
        read -r workload clients goal <<<"$spec"
        local ratios="" floors="" overheads="" bases="" i base tracked floor
        for ((i = 0; i < repeats; i++)); do
            base=$(pgbench_tps untracked "$workload" "$clients" "$seconds")
            tracked=$(pgbench_tps tracked "$workload" "$clients" "$seconds")
            floor=$(pgbench_tps floor "$workload" "$clients" "$seconds")
            bases+="$base"$'\n'
            ratios+=$(ratio "$tracked" "$base")$'\n'
            floors+=$(ratio "$floor" "$base")$'\n'
            overheads+=$(ratio "$tracked" "$floor")$'\n'
        done
        printf '%-38s %-8s %-14s %-20s %-6s %-20s %s\n' "$(describe_workload "$workload")" \
            "$clients" "$(printf '%s' "$bases" | summarise | awk -F' / ' '{ printf "%.0f", $2 }')" \
            "$(printf '%s' "$ratios" | summarise)" ">= $goal" "$(printf '%s' "$floors" | summarise)" \
            "$(printf '%s' "$overheads" | summarise)"
        psql -X -q -d "$BENCH_DB" -c "VACUUM ANALYZE tracked, untracked, floor_outbox" >/dev/null
    done
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'
}

describe_workload() {
    case $1 in
        insert1) echo "single-row INSERT" ;;
        insert100) echo "100-row INSERT (tps = statements/s)" ;;
        update1) echo "single-column UPDATE of one row" ;;
    esac
}
