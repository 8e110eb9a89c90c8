#!/usr/bin/env bash
# What moving capture out of a SECURITY DEFINER PL/pgSQL trigger cost writers (issue 14): the
# Rust capture trigger beside the PL/pgSQL one it replaced (taken from commit 5f0874c, so this
# needs the repository's history) and an untracked table, capture alone (no relay), pgbench with
# 8 clients, rounds alternated so the machine's noise hits all three alike. Not part of
# scripts/bench.sh: the old trigger is the one a user-defined cast turned into a superuser.
#   bench/capture_vs_plpgsql.sh      (ROUNDS=3 SECS=10 WORKLOADS="insert1 insert100 update1")
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. bench/writer_overhead.sh
WORK=${PG_WEBHOOKS_BENCH_DIR:-$REPO/.tmp/bench-capture}
PORT=${PG_WEBHOOKS_BENCH_PORT:-25437}
ROUNDS=${ROUNDS:-3} SECS=${SECS:-10}

ensure_deps
install_extension --release
cluster_stop "$WORK/cluster"
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
cluster_start "$WORK/cluster" "$PORT"
trap 'cluster_stop "$WORK/cluster"' EXIT
writer_setup "http://127.0.0.1:9/never-called"
git show 5f0874c:sql/30_capture.sql |
    sed -n '/^CREATE FUNCTION webhooks._capture() RETURNS trigger/,/^END \$\$;/p' |
    sed 's/webhooks._capture()/public.plpgsql_capture()/' >"$WORK/plpgsql_capture.sql"
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" -f "$WORK/plpgsql_capture.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DB" >/dev/null <<'SQL'
CREATE TABLE plpgsql_tracked (LIKE untracked INCLUDING ALL);
INSERT INTO plpgsql_tracked SELECT * FROM untracked;
SELECT setval(pg_get_serial_sequence('plpgsql_tracked', 'id'), 10000);
CREATE TRIGGER capture_insert AFTER INSERT ON plpgsql_tracked REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_capture('profile');
CREATE TRIGGER capture_update AFTER UPDATE ON plpgsql_tracked
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION plpgsql_capture('profile');
SQL

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "capture alone, 8 clients, $ROUNDS x ${SECS}s alternated: median tps and ratio to untracked"
printf '%-10s %14s %22s %22s %s\n' workload untracked "Rust (tracked)" "PL/pgSQL (5f0874c)" "Rust / PL/pgSQL"
for workload in ${WORKLOADS:-insert1 insert100 update1}; do
    for target in untracked tracked plpgsql_tracked; do : >"$WORK/$workload.$target"; done
    for ((i = 0; i < ROUNDS; i++)); do
        for target in untracked tracked plpgsql_tracked; do
            pgbench_tps "$target" "$workload" 8 "$SECS" >>"$WORK/$workload.$target"
        done
    done
    base=$(median <"$WORK/$workload.untracked")
    rust=$(median <"$WORK/$workload.tracked")
    plpgsql=$(median <"$WORK/$workload.plpgsql_tracked")
    awk -v w="$workload" -v b="$base" -v r="$rust" -v p="$plpgsql" 'BEGIN {
        printf "%-10s %14.0f %14.0f (%5.2f) %14.0f (%5.2f) %12.2f\n", w, b, r, r / b, p, p / b, r / p }'
done
