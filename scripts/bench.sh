#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md). Builds the relay in release mode, starts a throwaway cluster
# and the relay, and prints ratios measured side by side in one run.
#   scripts/bench.sh            5 repeats of 15 s per figure
#   scripts/bench.sh --quick    1 repeat of 3 s per figure (keeps the benchmark from rotting)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. bench/writer_overhead.sh

REPEATS=5 SECONDS_EACH=15
[ "${1:-}" = "--quick" ] && REPEATS=1 SECONDS_EACH=3
WORK=$REPO/.tmp/bench
PORT=${PG_WEBHOOKS_BENCH_PORT:-55435}

ensure_deps
install_extension
log "building the relay (release)"
cargo build -q --release -p pg-webhooks-relay

cleanup() {
    [ -n "${RELAY_PID:-}" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    cluster_stop "$WORK/cluster"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
cluster_start "$WORK/cluster" "$PORT"

writer_setup
# the relay runs throughout, as in production: it fans out, claims and answers for every event
target/release/pg-webhooks-relay --database-url "host=$PGHOST port=$PGPORT user=postgres dbname=$BENCH_DB" \
    --listen-addr 127.0.0.1:0 >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!

echo
echo "pg_webhooks benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, repeats=$REPEATS x ${SECONDS_EACH}s"
echo "Writer overhead (pgbench, relay running): tracked / untracked, min / median / max"
writer_overhead "$REPEATS" "$SECONDS_EACH"
