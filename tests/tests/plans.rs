//! The relay's hot statements keep their index plans at a large backlog with stale statistics.
//!
//! A day's partitions are analyzed by autovacuum while nearly empty, and the planner then
//! believes them small for the rest of the day (BENCHMARKS.md, "Plans"). Each hot statement was
//! once planned into a sort, a hash or a scan of the whole backlog on such statistics. These
//! tests make exactly that situation, 100,000 events behind statistics taken at 10, and read
//! every plan the statements inside `claim()`, `ack()` and `fan_out()` ran (auto_explain, with
//! nested statements, sent to the client as notices), so an edit cannot quietly bring one back.

use pg_webhooks_tests::TestDb;
use serde_json::Value;
use tokio_postgres::AsyncMessage;

const BACKLOG: i64 = 100_000;
const WEBHOOKS: i64 = 10;

/// Acknowledges the deliveries in table `claimed`: half delivered, half to be retried.
const ACK_HALF_OF_CLAIMED: &str = "SELECT webhooks.ack('plans', (
    SELECT jsonb_agg(jsonb_build_object(
               'delivery_id', delivery_id, 'attempt', attempt,
               'outcome', CASE WHEN delivery_id % 2 = 0 THEN 'delivered' ELSE 'retry' END,
               'retry_after_ms', 1000, 'status', 500, 'duration_ms', 3))
    FROM claimed))";

/// 10 webhooks, half of them ordered by a key of 100 values (so most of their deliveries wait
/// for an earlier one of their key), statistics taken when 10 events and their deliveries were
/// there, then the backlog written and fanned out behind those statistics: every delivery due.
async fn backlog_behind_stale_statistics() -> TestDb {
    let db = TestDb::create("plans").await;
    for i in 0..WEBHOOKS {
        let id = db
            .create_webhook(&format!("plan.e{i}"), "http://127.0.0.1:9/never")
            .await;
        if i % 2 == 1 {
            db.execute(&format!(
                "SELECT webhooks.configure({id}, '{{\"ordered_by\": \"k\"}}')"
            ))
            .await;
        }
    }
    let emit = |count: i64| {
        format!(
            "SELECT count(webhooks.emit('plan.e' || (g % {WEBHOOKS}),
                                       jsonb_build_object('n', g, 'k', g % 100,
                                                          'pad', repeat('x', 100))))
             FROM generate_series(1, {count}) g"
        )
    };
    db.execute(&emit(10)).await;
    db.execute("SELECT webhooks.fan_out(100)").await;
    // no autovacuum from here on: the statistics stay those of 10 events
    db.execute(
        "DO $$ DECLARE t regclass; BEGIN
             FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'webhooks' AND c.relkind = 'r' LOOP
                 EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', t);
                 EXECUTE format('ANALYZE %s', t);
             END LOOP;
         END $$",
    )
    .await;
    db.execute(&emit(BACKLOG)).await;
    db.execute(&format!("SELECT webhooks.fan_out({BACKLOG} + 10)"))
        .await;
    db
}

/// The plans auto_explain reported for the statements run inside `sql`.
async fn plans_inside(db: &TestDb, sql: &str) -> Vec<Value> {
    plans_inside_with(db, sql, "").await
}

/// The same, run with EXPLAIN ANALYZE's figures, the buffers each node read among them.
async fn analyzed_plans_inside(db: &TestDb, sql: &str) -> Vec<Value> {
    plans_inside_with(
        db,
        sql,
        "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on;",
    )
    .await
}

async fn plans_inside_with(db: &TestDb, sql: &str, settings: &str) -> Vec<Value> {
    let (client, mut messages) = db.connect_with_messages().await;
    client
        .batch_execute(&format!(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_level = notice;
             SET auto_explain.log_format = json;
             SET client_min_messages = notice;
             {settings}"
        ))
        .await
        .expect("auto_explain");
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    drop(client);
    let mut plans = Vec::new();
    while let Some(message) = messages.recv().await {
        let AsyncMessage::Notice(notice) = message else {
            continue;
        };
        // "duration: 0.1 ms  plan:\n{...}"
        let notice = notice.message();
        if let Some(json) = notice.find('{').map(|start| &notice[start..]) {
            plans.push(serde_json::from_str(json).expect("auto_explain's JSON"));
        }
    }
    plans
}

/// The tables that grow with the backlog.
fn is_backlog_table(node: &Value) -> bool {
    node["Relation Name"].as_str().is_some_and(|name| {
        ["events", "deliveries", "attempts"]
            .iter()
            .any(|table| name == *table || name.starts_with(&format!("{table}_")))
    })
}

fn children(node: &Value) -> impl Iterator<Item = &Value> {
    node["Plans"].as_array().into_iter().flatten()
}

/// The children whose rows the node reads (not the CTEs and subqueries it runs beside them).
fn inputs(node: &Value) -> impl Iterator<Item = &Value> {
    children(node).filter(|child| {
        !matches!(
            child["Parent Relationship"].as_str(),
            Some("InitPlan" | "SubPlan")
        )
    })
}

fn scans_backlog_table(node: &Value) -> bool {
    node["Node Type"]
        .as_str()
        .is_some_and(|kind| kind.ends_with("Scan"))
        && is_backlog_table(node)
}

/// Whether the node reads rows of a backlog table without a bound: rows below a Limit are
/// bounded, and so is the inner side of a nested loop, looked up once per outer row.
fn reads_backlog_unbounded(node: &Value) -> bool {
    match node["Node Type"].as_str().unwrap_or_default() {
        "Limit" => false,
        "Nested Loop" => inputs(node)
            .filter(|child| child["Parent Relationship"] == "Outer")
            .any(reads_backlog_unbounded),
        _ => scans_backlog_table(node) || inputs(node).any(reads_backlog_unbounded),
    }
}

/// What a hot statement's plan must never do, as "node on relation": scan a backlog table
/// whole or into a bitmap (both read every matching row before the first is used), or sort,
/// hash or materialize what it reads from one without a bound. Sorting the call's own batch (a
/// CTE's result, an argument unnested, each webhook's LIMITed share) is fine.
fn whole_backlog_readers(node: &Value, found: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let scans_whole = matches!(kind, "Seq Scan" | "Bitmap Heap Scan") && is_backlog_table(node);
    let gathers_whole = matches!(kind, "Sort" | "Incremental Sort" | "Hash" | "Materialize")
        && inputs(node).any(reads_backlog_unbounded);
    if scans_whole || gathers_whole {
        found.push(format!(
            "{kind} on {}",
            node["Relation Name"].as_str().unwrap_or("its input")
        ));
    }
    children(node).for_each(|child| whole_backlog_readers(child, found));
}

fn assert_index_plans(plans: &[Value], expected_statement: &str) {
    let text = |plan: &Value| plan["Query Text"].as_str().unwrap_or_default().to_owned();
    assert!(
        plans
            .iter()
            .any(|plan| text(plan).contains(expected_statement)),
        "no plan of a statement with {expected_statement:?} was reported; got {:#?}",
        plans.iter().map(text).collect::<Vec<_>>()
    );
    for plan in plans {
        let mut readers = Vec::new();
        whole_backlog_readers(&plan["Plan"], &mut readers);
        assert!(
            readers.is_empty(),
            "a hot statement reads the whole backlog ({readers:?}):\n{}\n{plan:#}",
            text(plan)
        );
    }
}

#[tokio::test]
async fn claim_leases_by_index_at_a_large_backlog_with_stale_statistics() {
    let db = backlog_behind_stale_statistics().await;
    let plans = plans_inside(
        &db,
        "SELECT count(*) FROM webhooks.claim('plans', 500, 100, '{}', '1 minute')",
    )
    .await;
    assert_index_plans(&plans, "candidates AS");
}

#[tokio::test]
async fn ack_records_outcomes_by_index_at_a_large_backlog_with_stale_statistics() {
    let db = backlog_behind_stale_statistics().await;
    db.execute(
        "CREATE TABLE claimed AS
         SELECT delivery_id, attempt FROM webhooks.claim('plans', 500, 100, '{}', '1 minute')",
    )
    .await;
    let plans = plans_inside(&db, ACK_HALF_OF_CLAIMED).await;
    assert_index_plans(&plans, "outcome AS");
}

#[tokio::test]
async fn fan_out_walks_the_index_at_a_large_backlog_with_stale_statistics() {
    let db = backlog_behind_stale_statistics().await;
    db.execute(
        "SELECT count(webhooks.emit('plan.e1', jsonb_build_object('n', g, 'k', g % 100)))
         FROM generate_series(1, 5000) g",
    )
    .await;
    let plans = plans_inside(&db, "SELECT webhooks.fan_out(1000)").await;
    assert_index_plans(&plans, "_fan_out_batch");
}

/// The walk of new events starts at the first of them: once started below the events fanned
/// out before, and read the index entries of all of them on every call (BENCHMARKS.md).
#[tokio::test]
async fn fan_out_reads_only_the_new_events_behind_a_large_fanned_out_day() {
    let db = backlog_behind_stale_statistics().await;
    db.execute(
        "SELECT webhooks.emit('plan.e1', jsonb_build_object('n', g)) FROM generate_series(1, 5) g",
    )
    .await;
    let plans = analyzed_plans_inside(&db, "SELECT webhooks.fan_out(1000)").await;
    let walk = plans
        .iter()
        .find(|plan| {
            plan["Query Text"]
                .as_str()
                .is_some_and(|text| text.contains("pg_snapshot_xip(state.done_upto)"))
        })
        .expect("the plan of _fan_out_batch's query");
    let blocks = walk["Plan"]["Shared Hit Blocks"]
        .as_i64()
        .unwrap_or_default()
        + walk["Plan"]["Shared Read Blocks"]
            .as_i64()
            .unwrap_or_default();
    // the 100,000 events fanned out before fill about 400 pages of the (xid, id) index; the
    // five new ones take one descent per day's partition
    assert!(
        blocks < 60,
        "the walk of 5 new events read {blocks} blocks:\n{walk:#}"
    );
}

/// The partitions that the named readers among the statements inside `sql` scan: a reader is
/// a table alias (`x` also names `x_2`, its scan of one partition) or a CTE (`CTE target`),
/// all of whose scans count. Fan-out's look for new events is left out: an event not yet fanned
/// out may be from any day.
async fn partitions_read_by(db: &TestDb, sql: &str, readers: &[&str]) -> Vec<String> {
    fn collect(node: &Value, inside: bool, readers: &[&str], found: &mut Vec<String>) {
        let alias = node["Alias"].as_str().unwrap_or_default();
        let alias = alias.split_once('_').map_or(alias, |(base, _)| base);
        let cte = node["Subplan Name"].as_str().unwrap_or_default();
        let inside = inside || readers.contains(&cte);
        if inside || readers.contains(&alias) {
            if let Some(name) = node["Relation Name"].as_str() {
                found.push(name.to_owned());
            }
        }
        children(node).for_each(|child| collect(child, inside, readers, found));
    }
    let mut found = Vec::new();
    for plan in plans_inside(db, sql).await {
        if !plan["Query Text"]
            .as_str()
            .unwrap_or_default()
            .contains("pg_snapshot")
        {
            collect(&plan["Plan"], false, readers, &mut found);
        }
    }
    found
}

/// Those of `partitions` that hold a day before today.
async fn of_earlier_days(db: &TestDb, partitions: &[String]) -> Vec<String> {
    let today: String = db
        .value("SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD')")
        .await;
    partitions
        .iter()
        .filter(|name| {
            name.rsplit_once("_p")
                .is_some_and(|(_, day)| day.len() == 8 && day < today.as_str())
        })
        .cloned()
        .collect()
}

/// A week of days kept behind today, nothing queued in them: what claims and acknowledgements
/// read opens no partition of those days (each one opened cost every call, BENCHMARKS.md):
/// each webhook's walk of due rows (`x`), an ordered key's earlier rows (`y`), the events sent
/// (`e`), and the acknowledged rows (`target`). The rows they lock and update are reached
/// through all days' partitions: pruning those made PostgreSQL 18.6 lease events twice.
#[tokio::test]
async fn claim_and_ack_read_no_day_before_the_oldest_queued_delivery() {
    let db = TestDb::create("plans_days").await;
    db.create_webhook("plan.days", "http://127.0.0.1:9/never")
        .await;
    db.execute(
        "SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - day)
         FROM unnest(ARRAY['events', 'deliveries', 'attempts', 'successes']) parent,
              generate_series(2, 8) day",
    )
    .await;
    db.execute("SELECT count(*) FROM webhooks.maintain()").await;
    db.execute("SELECT webhooks.emit('plan.days', jsonb_build_object('n', g)) FROM generate_series(1, 4) g")
        .await;
    let claim_read = partitions_read_by(
        &db,
        "CREATE TABLE claimed AS
         SELECT delivery_id, attempt FROM webhooks.claim('plans', 100, 100, '{}', '1 minute')",
        &["x", "y", "e"],
    )
    .await;
    assert_eq!(db.value::<i64>("SELECT count(*) FROM claimed").await, 4);
    assert!(!claim_read.is_empty(), "no plan showed claim()'s reads");
    assert_eq!(
        of_earlier_days(&db, &claim_read).await,
        Vec::<String>::new(),
        "claim() read earlier days"
    );
    let ack_read = partitions_read_by(&db, ACK_HALF_OF_CLAIMED, &["CTE target"]).await;
    assert!(!ack_read.is_empty(), "no plan showed ack()'s reads");
    assert_eq!(
        of_earlier_days(&db, &ack_read).await,
        Vec::<String>::new(),
        "ack() read earlier days"
    );
}
