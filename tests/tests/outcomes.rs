//! The outcome policy: what each kind of answer (or no answer) leads to.

use pg_webhooks_tests::{wait_for, Receiver, Relay, Reply, TestDb};
use std::time::Duration;

async fn emit_one(db: &TestDb) {
    db.execute("SELECT webhooks.emit('job.done', '{\"job\": 1}')")
        .await;
}

async fn wait_for_state(db: &TestDb, state: &str) {
    wait_for(state, Duration::from_secs(15), || async {
        (db.deliveries_in(state).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_on_the_schedule_until_success() {
    let db = TestDb::create("retry_schedule").await;
    let receiver = Receiver::answering(|_, n| {
        if n < 2 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s,1s,2s"]).await;

    emit_one(&db).await;

    wait_for_state(&db, "delivered").await;
    let at: Vec<_> = receiver.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 3);
    let (first_gap, second_gap) = (at[1] - at[0], at[2] - at[1]);
    assert!(
        first_gap >= Duration::from_millis(900) && first_gap < Duration::from_millis(1900),
        "{first_gap:?}"
    );
    assert!(
        second_gap >= Duration::from_millis(1900) && second_gap < Duration::from_millis(2900),
        "{second_gap:?}"
    );
    let outcomes: Vec<_> = db
        .attempts()
        .await
        .into_iter()
        .map(|a| (a.0, a.1))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("retry".into(), Some(500)),
            ("retry".into(), Some(500)),
            ("delivered".into(), Some(200))
        ]
    );
}

#[tokio::test]
async fn after_the_last_attempt_the_delivery_is_parked_and_can_be_redelivered() {
    let db = TestDb::create("parked").await;
    let receiver = Receiver::answering(|_, n| {
        if n < 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s,200ms"]).await;

    emit_one(&db).await;

    wait_for_state(&db, "failed").await;
    assert_eq!(receiver.count(), 2);
    assert_eq!(
        db.attempts().await.last().map(|a| a.0.clone()),
        Some("failed".into())
    );
    db.execute("SELECT webhooks.redeliver(delivery_id) FROM webhooks.delivery_status")
        .await;
    wait_for_state(&db, "delivered").await;
    assert_eq!(receiver.count(), 3);
}

#[tokio::test]
async fn redirects_are_failures_and_are_not_followed() {
    let db = TestDb::create("redirect").await;
    let target = Receiver::start().await;
    let location = target.url("/elsewhere");
    let receiver = Receiver::answering(move |_, _| {
        Reply::status(302).with_header("location", location.clone())
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s"]).await;

    emit_one(&db).await;

    wait_for_state(&db, "failed").await;
    assert_eq!(target.count(), 0);
    assert_eq!(db.attempts().await[0].1, Some(302));
}

#[tokio::test]
async fn gone_disables_the_webhook_at_once() {
    let db = TestDb::create("gone").await;
    let receiver = Receiver::answering(|_, _| Reply::status(410)).await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    emit_one(&db).await;

    wait_for_state(&db, "failed").await;
    let (status, reason): (String, String) = {
        let row = &db
            .query(&format!(
                "SELECT status, status_reason FROM webhooks.get({hook})"
            ))
            .await[0];
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "disabled");
    assert!(reason.contains("410"), "{reason}");
    emit_one(&db).await;
    wait_for(
        "the next event to be held",
        Duration::from_secs(10),
        || async { (db.deliveries_in("held").await == 1).then_some(()) },
    )
    .await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let db = TestDb::create("retry_after").await;
    let receiver = Receiver::answering(|_, n| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "2")
        } else {
            Reply::ok()
        }
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s,100ms"]).await;

    emit_one(&db).await;

    wait_for_state(&db, "delivered").await;
    let received = receiver.received();
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, before Retry-After"
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout() {
    let db = TestDb::create("timeout").await;
    let receiver = Receiver::answering(|_, _| Reply::ok().after(Duration::from_secs(3))).await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--request-timeout", "500ms", "--retry-schedule", "0s"],
    )
    .await;

    emit_one(&db).await;

    wait_for_state(&db, "failed").await;
    assert_eq!(
        db.attempts().await[0],
        ("failed".into(), None, Some("timeout".into()))
    );
}

#[tokio::test]
async fn the_stored_response_excerpt_is_capped() {
    let db = TestDb::create("excerpt").await;
    let receiver =
        Receiver::answering(|_, _| Reply::status(500).with_body("x".repeat(100_000))).await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--retry-schedule", "0s", "--response-excerpt-bytes", "100"],
    )
    .await;

    emit_one(&db).await;

    wait_for_state(&db, "failed").await;
    let excerpt: String = db.value("SELECT response FROM webhooks.delivery_log").await;
    assert!(
        !excerpt.is_empty() && excerpt.len() <= 100,
        "{} bytes",
        excerpt.len()
    );
}

#[tokio::test]
async fn loopback_receivers_are_refused_without_the_allow_list() {
    let db = TestDb::create("ssrf").await;
    let receiver = Receiver::start().await;
    let by_name = format!("http://localhost:{}/", receiver.addr.port());
    db.create_webhook("*", &receiver.url("/")).await;
    db.create_webhook("*", &by_name).await;
    // the empty allow-list replaces the test default (127.0.0.0/8)
    let _relay = Relay::start(&db, "r1", &["--allow-cidr", "", "--retry-schedule", "0s"]).await;

    emit_one(&db).await;

    wait_for("both refused", Duration::from_secs(10), || async {
        (db.deliveries_in("failed").await == 2).then_some(())
    })
    .await;
    assert_eq!(
        receiver.count(),
        0,
        "a request reached the loopback receiver"
    );
    let errors: Vec<Option<String>> = db.attempts().await.into_iter().map(|a| a.2).collect();
    assert_eq!(
        errors,
        [
            Some("refused_address".into()),
            Some("refused_address".into())
        ]
    );
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_disabled_with_a_notification() {
    let db = TestDb::create("auto_disable").await;
    let receiver = Receiver::answering(|_, _| Reply::status(500)).await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    db.execute(
        "UPDATE webhooks.settings SET disable_after_failures = 4, disable_after = '1 second'",
    )
    .await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--retry-schedule", "0s,500ms,500ms,500ms,500ms"],
    )
    .await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    let reason: String = wait_for(
        "the webhook to be disabled",
        Duration::from_secs(15),
        || async {
            db.query(&format!(
                "SELECT reason FROM webhooks.notifications WHERE webhook_id = {hook}"
            ))
            .await
            .first()
            .map(|row| row.get(0))
        },
    )
    .await;
    assert!(reason.contains("consecutive failed attempts"), "{reason}");
    assert_eq!(
        db.value::<String>(&format!("SELECT status FROM webhooks.get({hook})"))
            .await,
        "disabled"
    );
    assert_eq!(
        db.deliveries_in("held").await,
        1,
        "the unfinished delivery waits for activate()"
    );
}
