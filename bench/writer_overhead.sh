# Writer overhead: pgbench against the same table shape, tracked and untracked, interleaved in
# one run so the machine's noise hits both alike. Sourced by scripts/bench.sh.
#
#   writer_overhead REPEATS SECONDS
# prints one line per workload: ratio tracked/untracked as min / median / max.

BENCH_DB=bench

writer_setup() {
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "CREATE DATABASE $BENCH_DB"
    psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" <<'SQL'
CREATE EXTENSION pg_webhooks;
INSERT INTO webhooks.settings (require_verification) VALUES (false);
CREATE TABLE untracked (id bigserial PRIMARY KEY, email text NOT NULL, country text,
                        created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tracked (LIKE untracked INCLUDING ALL);
SELECT webhooks.track('tracked', entity => 'profile');
-- refused by the relay's address policy: every event is fanned out, claimed and acknowledged
SELECT webhooks.create('bench', 'profile.*', 'http://127.0.0.1:9/never-called');
INSERT INTO untracked (email, country) SELECT 'seed' || i || '@example.com', 'NL'
FROM generate_series(1, 10000) i;
INSERT INTO tracked SELECT * FROM untracked;
SELECT setval(pg_get_serial_sequence('tracked', 'id'), 10000);
SQL
}

# pgbench_tps TABLE WORKLOAD CLIENTS SECONDS -> transactions per second
pgbench_tps() {
    local table=$1 workload=$2 clients=$3 seconds=$4 script
    script=$(mktemp)
    case $workload in
        insert1) echo "INSERT INTO $table (email, country) VALUES ('a@example.com', 'NL');" ;;
        insert100) echo "INSERT INTO $table (email, country) SELECT 'b@example.com', 'DE' FROM generate_series(1, 100);" ;;
        update1) printf '\\set id random(1, 10000)\nUPDATE %s SET country = md5(random()::text) WHERE id = :id;\n' "$table" ;;
    esac >"$script"
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
    printf '%-40s %-8s %-22s %-22s %s\n' "workload (synchronous commit)" "clients" \
        "untracked tps (median)" "tracked/untracked" "goal"
    for spec in "insert1 1 0.95" "insert1 8 0.95" "insert100 8 0.70" "update1 8 0.90"; do
        read -r workload clients goal <<<"$spec"
        local ratios="" bases="" i base tracked
        for ((i = 0; i < repeats; i++)); do
            base=$(pgbench_tps untracked "$workload" "$clients" "$seconds")
            tracked=$(pgbench_tps tracked "$workload" "$clients" "$seconds")
            bases+="$base"$'\n'
            ratios+=$(awk -v t="$tracked" -v b="$base" 'BEGIN { printf "%.4f", t / b }')$'\n'
        done
        printf '%-40s %-8s %-22s %-22s >= %s\n' "$(describe_workload "$workload")" "$clients" \
            "$(printf '%s' "$bases" | summarise | awk -F' / ' '{ print $2 }')" \
            "$(printf '%s' "$ratios" | summarise)" "$goal"
        psql -X -q -d "$BENCH_DB" -c "VACUUM ANALYZE tracked, untracked" >/dev/null
    done
}

describe_workload() {
    case $1 in
        insert1) echo "single-row INSERT" ;;
        insert100) echo "100-row INSERT (tps = statements/s)" ;;
        update1) echo "single-column UPDATE of one row" ;;
    esac
}
