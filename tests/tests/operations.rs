//! Running the relay: isolation of slow endpoints, several relays, shutdown, crashes.

use pg_webhooks_tests::{wait_for, Receiver, Relay, Reply, TestDb};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_the_others() {
    let db = TestDb::create("slow_endpoint").await;
    let slow = Receiver::answering(|_, _| Reply::ok().after(Duration::from_secs(4))).await;
    let fast = Receiver::start().await;
    db.create_webhook("*", &slow.url("/")).await;
    db.create_webhook("*", &fast.url("/")).await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--max-in-flight-per-webhook", "2", "--max-in-flight", "8"],
    )
    .await;

    db.execute("SELECT webhooks.emit('job.done', jsonb_build_object('n', n)) FROM generate_series(1, 50) n").await;

    wait_for(
        "all 50 at the fast endpoint",
        Duration::from_secs(3),
        || async { (fast.count() == 50).then_some(()) },
    )
    .await;
    assert!(
        slow.count() <= 2,
        "the slow endpoint had {} requests in flight",
        slow.count()
    );
}

#[tokio::test]
async fn two_relays_share_one_outbox_without_sending_anything_twice() {
    let db = TestDb::create("two_relays").await;
    let receiver = Receiver::answering(|_, _| Reply::ok().after(Duration::from_millis(50))).await;
    db.create_webhook("*", &receiver.url("/")).await;
    // answers take 50 ms: one relay alone would need about 2 s for these 600 events, so the
    // other one, whichever misses the first claim, joins at its next poll (500 ms)
    let first = Relay::start(&db, "first", &["--batch-size", "20"]).await;
    let second = Relay::start(&db, "second", &["--batch-size", "20"]).await;

    db.execute("SELECT webhooks.emit('job.done', jsonb_build_object('n', n)) FROM generate_series(1, 600) n").await;

    wait_for("600 deliveries", Duration::from_secs(30), || async {
        (db.deliveries_in("delivered").await == 600).then_some(())
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *seen
            .entry(request.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 600);
    assert!(
        seen.values().all(|&n| n == 1),
        "some events were sent twice"
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM webhooks.relays")
            .await,
        2
    );
    // both relays delivered a share, by their own counts
    let mut shares = Vec::new();
    for relay in [&first, &second] {
        shares.push(delivered_by(relay).await);
    }
    assert!(shares.iter().all(|&n| n > 0), "shares {shares:?}");
    assert_eq!(shares.iter().sum::<u64>(), 600, "shares {shares:?}");
}

/// The deliveries a relay counts as delivered (its /metrics).
async fn delivered_by(relay: &Relay) -> u64 {
    let (_, metrics) = http_get(&relay.metrics_addr(), "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("pg_webhooks_deliveries_total{outcome=\"delivered\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_exits_cleanly() {
    let db = TestDb::create("sigterm").await;
    let receiver = Receiver::answering(|_, _| Reply::ok().after(Duration::from_millis(700))).await;
    db.create_webhook("*", &receiver.url("/")).await;
    let relay = Relay::start(&db, "r1", &["--max-in-flight-per-webhook", "4"]).await;
    db.execute(
        "SELECT webhooks.emit('job.done', jsonb_build_object('n', n)) FROM generate_series(1, 4) n",
    )
    .await;
    receiver.wait_for_requests(4, Duration::from_secs(5)).await;

    let code = relay.terminate(Duration::from_secs(10)).await;

    assert_eq!(code, Some(0));
    assert_eq!(
        db.deliveries_in("delivered").await,
        4,
        "in-flight requests were finished and acknowledged"
    );
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM webhooks.relays")
            .await,
        0,
        "the relay left"
    );
}

#[tokio::test]
async fn sigterm_releases_what_cannot_finish_within_the_grace_period() {
    let db = TestDb::create("sigterm_release").await;
    let receiver = Receiver::answering(|_, _| Reply::ok().after(Duration::from_secs(10))).await;
    db.create_webhook("*", &receiver.url("/")).await;
    let relay = Relay::start(
        &db,
        "r1",
        &[
            "--shutdown-grace",
            "500ms",
            "--request-timeout",
            "15s",
            "--lease",
            "60s",
        ],
    )
    .await;
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;
    receiver.wait_for_requests(1, Duration::from_secs(5)).await;

    assert_eq!(relay.terminate(Duration::from_secs(5)).await, Some(0));

    assert_eq!(
        db.deliveries_in("pending").await,
        1,
        "released, to be sent again at once"
    );
    assert_eq!(
        db.value::<i32>("SELECT attempts FROM webhooks.delivery_status")
            .await,
        0
    );
}

#[tokio::test]
async fn a_crashed_relays_leases_are_taken_over_when_they_expire() {
    let db = TestDb::create("crash").await;
    let receiver = Receiver::answering(|_, n| {
        if n == 0 {
            Reply::ok().after(Duration::from_secs(30))
        } else {
            Reply::ok()
        }
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let crashing = Relay::start(
        &db,
        "crashing",
        &["--lease", "2s", "--request-timeout", "1s"],
    )
    .await;
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;
    receiver.wait_for_requests(1, Duration::from_secs(5)).await;

    crashing.kill().await;
    let _survivor = Relay::start(
        &db,
        "survivor",
        &["--lease", "2s", "--request-timeout", "1s"],
    )
    .await;

    wait_for("the redelivery", Duration::from_secs(10), || async {
        (db.deliveries_in("delivered").await == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.count(), 2);
}

/// A plain HTTP GET on loopback, returning (status, body).
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn health_and_prometheus_metrics_are_served() {
    let db = TestDb::create("metrics").await;
    let receiver = Receiver::start().await;
    db.create_webhook("*", &receiver.url("/")).await;
    let relay = Relay::start(&db, "r1", &[]).await;
    db.execute("SELECT webhooks.emit('job.done', '{}') FROM generate_series(1, 3)")
        .await;
    receiver.wait_for_requests(3, Duration::from_secs(10)).await;

    let addr = relay.metrics_addr();
    assert_eq!(http_get(&addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "pg_webhooks_deliveries_total{outcome=\"delivered\"} 3",
        "pg_webhooks_delivery_duration_seconds_count 3",
        "pg_webhooks_in_flight 0",
        "pg_webhooks_claims_total",
        "pg_webhooks_queue_depth{state=\"queued\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_webhooks_rate_limit_spaces_its_requests() {
    let db = TestDb::create("rate_limit").await;
    let receiver = Receiver::start().await;
    db.execute(&format!(
        "SELECT webhooks.create('e2e', '*', '{}', rate_limit_per_second => 5)",
        receiver.url("/")
    ))
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}') FROM generate_series(1, 6)")
        .await;

    let received = receiver.wait_for_requests(6, Duration::from_secs(10)).await;
    let span = received[5].at - received[0].at;
    assert!(
        span >= Duration::from_millis(950),
        "6 requests at 5/s took only {span:?}"
    );
}

#[tokio::test]
async fn the_relay_reconnects_when_its_database_sessions_are_terminated() {
    let db = TestDb::create("terminated").await;
    let receiver = Receiver::start().await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--poll-interval", "30s", "--idle-after", "50ms"],
    )
    .await;

    let listening = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name = 'pg-webhooks-relay' AND query LIKE 'LISTEN%'",
        db.name
    );
    wait_for("the LISTEN session", Duration::from_secs(5), || async {
        (db.value::<i64>(&listening).await == 1).then_some(())
    })
    .await;
    let terminated: i64 = db
        .value(&format!(
            // OFFSET 0: filter first, so pg_terminate_backend never meets our own session
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM \
             (SELECT pid FROM pg_stat_activity WHERE datname = '{}' \
              AND application_name = 'pg-webhooks-relay' OFFSET 0) relay_sessions",
            db.name
        ))
        .await;
    assert!(
        terminated >= 2,
        "the LISTEN session and a pooled one, got {terminated}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    // far sooner than the 30 s poll: the LISTEN connection is back and was notified
    receiver.wait_for_requests(1, Duration::from_secs(5)).await;
}
