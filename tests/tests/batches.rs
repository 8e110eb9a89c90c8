//! Batches (configure's "batch"): a webhook may take up to N events per request, as one signed
//! JSON array of their bodies, each with its own id; the request's outcome is each event's.

use pg_webhooks_tests::{verify_with_official_library, wait_for, Receiver, Relay, Reply, TestDb};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn batching_webhook(db: &TestDb, url: &str, batch: i64) -> i64 {
    let hook = db.create_webhook("order.*", url).await;
    db.client
        .execute(
            "SELECT webhooks.configure($1, $2)",
            &[&hook, &json!({ "batch": batch })],
        )
        .await
        .expect("configure");
    hook
}

/// Every event id the receiver got, in the order of the arrays it received.
fn ids_in(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .flat_map(|body| body.as_array().cloned().unwrap_or_default())
        .map(|element| element["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_batching_webhook_receives_its_events_as_signed_json_arrays_each_with_its_id() {
    let db = TestDb::create("batches").await;
    let receiver = Receiver::start().await;
    let hook = batching_webhook(&db, &receiver.url("/orders"), 10).await;
    // 25 events committed before the relay starts: its first claim holds them all
    db.execute(
        "SELECT webhooks.emit('order.placed', jsonb_build_object('n', g, 'total', 1.50))
         FROM generate_series(1, 25) g",
    )
    .await;
    let _relay = Relay::start(&db, "batches", &[]).await;

    wait_for("25 events delivered", WAIT, || async {
        (db.deliveries_in("delivered").await == 25).then_some(())
    })
    .await;
    let received = receiver.received();
    let bodies: Vec<Value> = received.iter().map(|request| request.json()).collect();
    assert!(
        bodies
            .iter()
            .all(|body| body.as_array().is_some_and(|a| (1..=10).contains(&a.len()))),
        "arrays of 1 to 10 events: {bodies:?}"
    );
    assert!(
        received.len() < 25,
        "fewer requests than events: {}",
        received.len()
    );
    let mut ids = ids_in(&bodies);
    let expected: Vec<String> = db
        .query("SELECT 'evt_' || id FROM webhooks.events ORDER BY id")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    ids.sort_by_key(|id| id[4..].parse::<i64>().unwrap_or_default());
    assert_eq!(ids, expected, "each event once, with its id");
    let first = &bodies[0][0];
    assert_eq!(first["type"], "order.placed");
    assert_eq!(first["data"]["n"].as_i64().map(|n| n > 0), Some(true));
    assert!(
        String::from_utf8_lossy(&received[0].body).contains("\"total\": 1.50"),
        "data as PostgreSQL wrote it"
    );
    assert!(received
        .iter()
        .all(|request| request.header("webhook-id").starts_with("batch_")));
    assert_eq!(
        verify_with_official_library(&db.secret(hook).await, &received),
        vec!["ok"; received.len()]
    );
}

#[tokio::test]
async fn a_failed_batch_is_retried_for_every_event_it_carried() {
    let db = TestDb::create("batch_retry").await;
    // the first request fails, every later one succeeds
    let receiver = Receiver::answering(|_, nth| {
        if nth == 0 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    batching_webhook(&db, &receiver.url("/orders"), 5).await;
    db.execute(
        "SELECT webhooks.emit('order.placed', jsonb_build_object('n', g))
         FROM generate_series(1, 5) g",
    )
    .await;
    let _relay = Relay::start(&db, "batch_retry", &["--retry-schedule", "0s,0s"]).await;

    wait_for("5 events delivered", WAIT, || async {
        (db.deliveries_in("delivered").await == 5).then_some(())
    })
    .await;
    let bodies: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    let first: Vec<String> = ids_in(&bodies[..1]);
    assert_eq!(first.len(), 5, "one batch of five first");
    let mut again = ids_in(&bodies[1..]);
    again.sort();
    let mut first_sorted = first.clone();
    first_sorted.sort();
    assert_eq!(again, first_sorted, "each of its events sent again");
    let log: Vec<(String, i32, i64)> = db
        .query(
            "SELECT outcome, attempt, count(*) FROM webhooks.delivery_log
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        log,
        [("delivered".to_owned(), 2, 5), ("retry".to_owned(), 1, 5)]
    );
}
