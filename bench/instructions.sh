# Instructions per writer statement, sourced by scripts/bench.sh after writer_setup.
#
# Why: pgbench's rates on these shared machines move by a third between runs of the same code,
# so a change worth 5% cannot be told from noise there. valgrind's callgrind counts the
# instructions one backend runs (single-user mode, synchronous_commit off), which do not move
# with the machine's load. The count per statement is the marginal one, (I(3n) - I(n)) / 2n:
# the backend's start, its shutdown checkpoint and the first touch of each page cancel out.
# untracked / target is the rate a writer bound by its CPU keeps; with synchronous commit a
# writer also waits for its flush, so pgbench's ratios are higher.
#
#   instructions_per_statement N DATA_DIR   the cluster of DATA_DIR must be stopped

# the workload's N statements against TABLE, as writer_overhead runs them
instruction_workload() {
    local table=$1 workload=$2 n=$3
    case $workload in
        insert1 | insert100) yes "$(workload_sql "$table" "$workload");" | head -n "$n" ;;
        update1) seq 1 "$n" | awk -v t="$table" \
            '{ print "UPDATE " t " SET country = md5(random()::text) WHERE id = " ($1 % 10000) + 1 ";" }' ;;
    esac
}

# instructions_of TABLE WORKLOAD N DATA_DIR DIR -> instructions of a backend running them
instructions_of() {
    local table=$1 workload=$2 n=$3 data=$4 dir=$5 sql
    sql=$dir/$table.$workload.$n.sql
    instruction_workload "$table" "$workload" "$n" >"$sql"
    chmod 644 "$sql"
    as_cluster_owner valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$PG_BIN/postgres" --single -D "$data" -c synchronous_commit=off "$BENCH_DB" \
        <"$sql" 2>&1 >/dev/null | awk '/Collected :/ { print $NF }'
}

instructions_per_statement() {
    local n=$1 data=$2 dir workload target spec count first third
    dir=$(mktemp -d)
    chmod 755 "$dir"
    printf '%-36s' "workload (one backend)"
    for target in $WRITER_TARGETS_ALONE; do printf ' %-20s' "$target"; done
    printf '\n'
    # 100-row statements: a tenth as many
    for spec in "insert1 $n" "insert100 $((n / 10))" "update1 $n"; do
        read -r workload count <<<"$spec"
        local base=""
        printf '%-36s' "$(describe_workload "$workload")"
        for target in $WRITER_TARGETS_ALONE; do
            first=$(instructions_of "$target" "$workload" "$count" "$data" "$dir")
            third=$(instructions_of "$target" "$workload" $((3 * count)) "$data" "$dir")
            local per=$(((third - first) / (2 * count)))
            [ "$target" = untracked ] && base=$per
            printf ' %-20s' "$(awk -v per="$per" -v base="$base" \
                'BEGIN { printf "%d (%.2f)", per, base / per }')"
        done
        printf '\n'
    done
    rm -rf "$dir"
}
