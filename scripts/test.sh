#!/usr/bin/env bash
# The whole test suite: unit tests, pgrx tests, SQL regression and isolation tests against a real
# PostgreSQL 15, and end-to-end tests with the real relay binary and real HTTP receivers.
# Installs what it needs first. Ends with cargo test's summary line.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. scripts/lib/regress.sh

WORK=${PG_WEBHOOKS_TEST_DIR:-$REPO/.tmp/test}
# cluster ports sit below the ephemeral range (32768-60999), where a client connection could
# already hold them (the demo right after the suite once found 55434 taken)
PORT=${PG_WEBHOOKS_TEST_PORT:-25433}

ensure_deps
install_extension

rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
trap 'cluster_stop "$WORK/cluster"' EXIT
cluster_start "$WORK/cluster" "$PORT"

# Every stage's output is kept so the last line can add up what ran. A failing stage fails the
# suite, but the stages after it still run and the summary line still comes last.
FAILED=""
counted() {
    local status=0
    "$@" 2>&1 | tee "$WORK/stage.log" || status=$? # pipefail: the stage's own status
    cat "$WORK/stage.log" >>"$WORK/counts.log"
    if [ "$status" != 0 ]; then
        FAILED=1
        # a stage that stopped before its runner could count (a build error) counts as one
        grep -Eq '^test result: FAILED|tests? failed' "$WORK/stage.log" ||
            failed_stage "$* exited with $status"
    fi
}
failed_stage() {
    echo "test result: FAILED. 0 passed; 1 failed; ($1)" >>"$WORK/counts.log"
    FAILED=1
}

log "SQL regression tests (pg_regress, tests/regress)"
counted run_sql_regression_tests "$WORK"

log "concurrency tests (pg_isolation_regress, tests/isolation)"
counted run_isolation_tests "$WORK"

log "extension unit and pgrx tests (cargo pgrx test)"
PGRX_DATA="$WORK/pgrx-data"
mkdir -p "$PGRX_DATA"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGRX_DATA"
cd pg_webhooks
counted cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DATA"
cd "$REPO"

log "relay unit tests"
counted cargo test -p pg-webhooks-relay --bins

log "end-to-end tests: real cluster, real relay binary, real receivers"
ensure_python_verifier "$REPO/.tmp/venv"
if cargo build -p pg-webhooks-relay; then
    PG_WEBHOOKS_RELAY_BIN="$REPO/target/debug/pg-webhooks-relay" \
    PG_WEBHOOKS_TEST_PYTHON="$REPO/.tmp/venv/bin/python" \
        counted cargo test -p pg-webhooks-tests --tests -- --test-threads=4
else
    failed_stage "building the relay for the end-to-end tests"
fi

log "benchmarks, quick mode (scripts/bench.sh --quick): every scenario still runs"
# its own cluster, in a directory and on a port apart from a full benchmark run's
# (.tmp/bench, 25435); a failure fails the suite, and it counts as one test in the summary
if PG_WEBHOOKS_BENCH_DIR="$WORK/bench" PG_WEBHOOKS_BENCH_PORT=${PG_WEBHOOKS_BENCH_QUICK_PORT:-25436} \
    scripts/bench.sh --quick; then
    echo "test result: ok. 1 passed; 0 failed; (scripts/bench.sh --quick)" >>"$WORK/counts.log"
else
    failed_stage "scripts/bench.sh --quick"
fi

# pg_regress says "All N tests passed." / "N of M tests failed."; cargo says "test result: ..."
awk '/^ *All [0-9]+ tests passed/ { passed += $2 }
     /^ *[0-9]+ of [0-9]+ tests failed/ { failed += $1; passed += $3 - $1 }
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) passed += $i; if ($(i+1) ~ /^failed/) failed += $i } }
     END { printf "all suites: %d passed, %d failed\n", passed, failed }' "$WORK/counts.log"
[ -z "$FAILED" ]
