# Run the SQL regression (tests/regress) and isolation (tests/isolation) suites against the
# running cluster (PGHOST/PGPORT). Sourced by scripts/test.sh.

# the PostgreSQL of cluster.sh's PG_CONFIG and PG_BIN
pgxs_test_dir() { echo "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test"; }

# run_pg_regress TOOL INPUTDIR OUTPUTDIR DBNAME TESTS...
run_pg_regress() {
    local tool=$1 inputdir=$2 outputdir=$3 dbname=$4
    shift 4
    mkdir -p "$outputdir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$outputdir"
    # with --use-existing pg_regress expects the database to be there
    "$PG_BIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $dbname" -c "CREATE DATABASE $dbname"
    as_cluster_owner "$(pgxs_test_dir)/$tool" --use-existing --host="$PGHOST" --port="$PGPORT" \
        --user=postgres --dbname="$dbname" --bindir="$PG_BIN" \
        --inputdir="$inputdir" --outputdir="$outputdir" "$@" || {
        cat "$outputdir/regression.diffs" >&2 || true
        return 1
    }
}

run_sql_regression_tests() {
    local work=$1
    run_pg_regress regress/pg_regress "$REPO/tests/regress" "$work/regress" pg_webhooks_regress \
        $(cd "$REPO/tests/regress/sql" && ls *.sql | sed 's/\.sql$//' | sort)
}

run_isolation_tests() {
    local work=$1
    run_pg_regress isolation/pg_isolation_regress "$REPO/tests/isolation" "$work/isolation" \
        pg_webhooks_isolation \
        $(cd "$REPO/tests/isolation/specs" && ls *.spec | sed 's/\.spec$//' | sort)
}
