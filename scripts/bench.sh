#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md). Starts a throwaway cluster and prints, each beside its
# baseline from the same run: writer overhead (pgbench, relay running), delivery rate against a
# raw HTTP client, latency at 50 events/s, isolation from a silent endpoint, and a large backlog.
#   scripts/bench.sh            release builds, 3-5 repeats, 100k/1M events (about 20 minutes)
#   scripts/bench.sh --quick    debug builds, one small repeat of everything (a minute or two;
#                               the test suite runs it so the benchmark cannot rot)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. bench/writer_overhead.sh

QUICK=""
REPEATS=5 SECONDS_EACH=15 PROFILE=release
if [ "${1:-}" = "--quick" ]; then
    QUICK=--quick REPEATS=1 SECONDS_EACH=3 PROFILE=debug
fi
WORK=${PG_WEBHOOKS_BENCH_DIR:-$REPO/.tmp/bench}
PORT=${PG_WEBHOOKS_BENCH_PORT:-25435}

ensure_deps
install_extension
log "building the relay and the benchmark tool ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build -q --release -p pg-webhooks-relay -p pg-webhooks-bench
else
    cargo build -q -p pg-webhooks-relay -p pg-webhooks-bench
fi
BIN=$REPO/target/$PROFILE

cleanup() {
    [ -n "${RELAY_PID:-}" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    cluster_stop "$WORK/cluster"
}
trap cleanup EXIT
cluster_stop "$WORK/cluster" # one left running by an interrupted run would hold the port
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
cluster_start "$WORK/cluster" "$PORT"

echo
echo "pg_webhooks benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores, $PROFILE build${QUICK:+, quick}"

writer_setup
# the relay runs throughout, as in production: it fans out, claims and answers for every event
"$BIN/pg-webhooks-relay" --database-url "host=$PGHOST port=$PGPORT user=postgres dbname=$BENCH_DB" \
    --listen-addr 127.0.0.1:0 >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
echo "Writer overhead (pgbench, relay running; repeats=$REPEATS x ${SECONDS_EACH}s): tracked / untracked, min / median / max"
writer_overhead "$REPEATS" "$SECONDS_EACH"
kill "$RELAY_PID" && wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=

"$BIN/pg-webhooks-bench" --cluster "host=$PGHOST port=$PGPORT user=postgres" \
    --relay-bin "$BIN/pg-webhooks-relay" $QUICK
echo "benchmarks done"
