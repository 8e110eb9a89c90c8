//! A webhook's own retry policy (configure's "retry_schedule" and "request_timeout") decides its
//! deliveries; the relay's --retry-schedule and --request-timeout decide everyone else's.

use pg_webhooks_tests::{wait_for, Receiver, Relay, Reply, TestDb};
use std::time::Duration;

/// (webhook, attempts, state) of each delivery once none is queued any more.
async fn settled_deliveries(db: &TestDb, expected: usize) -> Vec<(i64, i32, String)> {
    wait_for(
        "every delivery to settle",
        Duration::from_secs(20),
        || async {
            let rows = db
                .query(
                    "SELECT webhook_id, attempts, state FROM webhooks.delivery_status
                 WHERE state NOT IN ('pending', 'leased') ORDER BY webhook_id",
                )
                .await;
            (rows.len() == expected).then(|| {
                rows.iter()
                    .map(|row| (row.get(0), row.get(1), row.get(2)))
                    .collect()
            })
        },
    )
    .await
}

#[tokio::test]
async fn a_webhooks_own_schedule_decides_its_attempts_and_the_relays_decides_the_others() {
    let db = TestDb::create("own_schedule").await;
    let failing = Receiver::answering(|_, _| Reply::status(500)).await;
    let own = db
        .create_webhook("order.placed", &failing.url("/own"))
        .await;
    db.execute(&format!(
        "SELECT webhooks.configure({own}, '{{\"retry_schedule\": [\"0s\", \"0s\"]}}')"
    ))
    .await;
    let relays = db
        .create_webhook("order.placed", &failing.url("/relays"))
        .await;
    // the relay's own schedule: three attempts
    let _relay = Relay::start(&db, "schedules", &["--retry-schedule", "0s,200ms,200ms"]).await;

    db.execute("SELECT webhooks.emit('order.placed', '{}')")
        .await;

    assert_eq!(
        settled_deliveries(&db, 2).await,
        [
            (own, 2, "failed".to_owned()),
            (relays, 3, "failed".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_webhooks_own_request_timeout_cuts_its_requests_short() {
    let db = TestDb::create("own_timeout").await;
    let slow = Receiver::answering(|_, _| Reply::ok().after(Duration::from_secs(2))).await;
    let impatient = db
        .create_webhook("order.placed", &slow.url("/impatient"))
        .await;
    db.execute(&format!(
        "SELECT webhooks.configure({impatient}, '{{\"request_timeout\": \"1 second\"}}')"
    ))
    .await;
    let patient = db
        .create_webhook("order.placed", &slow.url("/patient"))
        .await;
    let _relay = Relay::start(
        &db,
        "timeouts",
        &["--request-timeout", "5s", "--retry-schedule", "0s"],
    )
    .await;

    db.execute("SELECT webhooks.emit('order.placed', '{}')")
        .await;

    assert_eq!(
        settled_deliveries(&db, 2).await,
        [
            (impatient, 1, "failed".to_owned()),
            (patient, 1, "delivered".to_owned())
        ]
    );
    let (error, duration_ms): (Option<String>, i32) = {
        let row = &db
            .query(&format!(
                "SELECT error, duration_ms FROM webhooks.delivery_log WHERE webhook_id = {impatient}"
            ))
            .await[0];
        (row.get(0), row.get(1))
    };
    assert_eq!(error.as_deref(), Some("timeout"));
    assert!(
        (900..1900).contains(&duration_ms),
        "gave up after about a second: {duration_ms} ms"
    );
}
