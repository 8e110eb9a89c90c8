#!/usr/bin/env bash
# Benchmarks (see BENCHMARKS.md). Starts a throwaway cluster and prints, each beside its
# baseline from the same run: writer overhead (pgbench; beside PgQ and a hand-written outbox,
# then with the relay delivering), the writers' instructions per statement (callgrind), the
# database's work per delivered event (from the WAL), delivery rate against a raw HTTP client,
# latency at 50 events/s, isolation from a silent endpoint, and a large backlog.
#   scripts/bench.sh            release builds, 3-5 repeats, 100k/1M events (about 20 minutes)
#   scripts/bench.sh --writers  release builds, the writer and database-work figures only
#   scripts/bench.sh --quick    debug builds, one small repeat of everything (a minute or two;
#                               the test suite runs it so the benchmark cannot rot)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. bench/writer_overhead.sh
. bench/delivery_work.sh
. bench/instructions.sh

QUICK=""
ROUNDS=3 SECONDS_EACH=10 WORK_EVENTS=20000 CATCH_UP=120 PROFILE=release WRITERS_ONLY=""
INSTRUCTION_STATEMENTS=500
case "${1:-}" in
    --quick) QUICK=--quick ROUNDS=1 SECONDS_EACH=2 WORK_EVENTS=1000 CATCH_UP=5 PROFILE=debug
        INSTRUCTION_STATEMENTS=20 ;;
    --writers) WRITERS_ONLY=yes ;;
esac
WORK=${PG_WEBHOOKS_BENCH_DIR:-$REPO/.tmp/bench}
PORT=${PG_WEBHOOKS_BENCH_PORT:-25435}

ensure_deps
install_extension "$([ "$PROFILE" = release ] && echo --release)"
log "building the relay and the benchmark tool ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build -q --release -p pg-webhooks-relay -p pg-webhooks-bench
else
    cargo build -q -p pg-webhooks-relay -p pg-webhooks-bench
fi
BIN=$REPO/target/$PROFILE

cleanup() {
    [ -n "${RELAY_PID:-}" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
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

SINK_PORT=${PG_WEBHOOKS_BENCH_SINK_PORT:-$((PORT + 1000))}
SINK_URL=http://127.0.0.1:$SINK_PORT/hook
"$BIN/pg-webhooks-bench" --sink "127.0.0.1:$SINK_PORT" &
SINK_PID=$!
writer_setup "$SINK_URL"
echo "Writer overhead, capture alone (no consumer running; $ROUNDS alternated rounds x ${SECONDS_EACH}s): ratio to untracked, min / median / max"
writer_overhead "$ROUNDS" "$SECONDS_EACH" alone
echo "Instructions per statement (callgrind, one single-user backend, synchronous_commit off; (untracked / target): the rate a CPU-bound writer keeps)"
cluster_stop "$WORK/cluster"
instructions_per_statement "$INSTRUCTION_STATEMENTS" "$WORK/cluster/data"
cluster_start "$WORK/cluster" "$PORT"
echo "Payloads enriched from the parent row (webhooks.enrich), capture alone (same rounds): ratio to a child table tracked without it"
enrich_overhead "$ROUNDS" "$SECONDS_EACH"
# capture alone left millions of events behind that no relay has seen: the figures below are
# of writers beside a relay that keeps up, not of one draining them (that is the backlog figure)
psql -X -q -d "$BENCH_DB" -c "TRUNCATE webhooks.events"
# the relay delivers every pg_webhooks event to the sink, as in production
"$BIN/pg-webhooks-relay" --database-url "host=$PGHOST port=$PGPORT user=postgres dbname=$BENCH_DB" \
    --allow-cidr 127.0.0.1/32 --listen-addr 127.0.0.1:0 >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
echo "Writer overhead, the relay delivering to a local sink at full speed (same rounds)"
writer_overhead "$ROUNDS" "$SECONDS_EACH" relay
# the same with the webhook taking up to 50 events per request (configure's "batch"): what the
# relay's requests, not the database's work, cost the writers
psql -X -q -d "$BENCH_DB" -c "SELECT webhooks.configure(id, '{\"batch\": 50}') FROM webhooks.webhooks" >/dev/null
echo "Writer overhead, the relay delivering in batches of up to 50 events per request (same rounds)"
writer_overhead "$ROUNDS" "$SECONDS_EACH" relay
kill "$RELAY_PID" && wait "$RELAY_PID" 2>/dev/null || true
RELAY_PID=
delivery_work "$WORK_EVENTS" "$BIN/pg-webhooks-relay" "$SINK_URL"
kill "$SINK_PID" && wait "$SINK_PID" 2>/dev/null || true
SINK_PID=

[ -n "$WRITERS_ONLY" ] || "$BIN/pg-webhooks-bench" --cluster "host=$PGHOST port=$PGPORT user=postgres" \
    --relay-bin "$BIN/pg-webhooks-relay" $QUICK
echo "benchmarks done"
