//! Receivers that authenticate callers with a header of their own (`Authorization: Bearer ...`,
//! `X-Api-Key`): configure()'s "headers" are sent with every delivery, test request and
//! verification fetch of that webhook, and with no other webhook's.

use pg_webhooks_tests::{
    verify_with_official_library, wait_for, Received, Receiver, Relay, Reply, TestDb,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A verification file (path, content) a receiver serves.
type ServedFile = Arc<Mutex<Option<(String, String)>>>;

const TOKEN: &str = "Bearer tok-7f3a9c";
const API_KEY: &str = "key-41d8cd98";

/// 401 unless both headers are there; serves `file` to an authenticated GET.
async fn receiver_wanting_the_headers(file: ServedFile) -> Receiver {
    Receiver::answering(move |request: &Received, _| {
        if request.header("authorization") != TOKEN || request.header("x-api-key") != API_KEY {
            return Reply::status(401).with_body("who are you?");
        }
        match (&*file.lock().expect("file lock"), request.method.as_str()) {
            (Some((path, content)), "GET") if *path == request.path => {
                Reply::ok().with_body(content.clone())
            }
            _ => Reply::ok(),
        }
    })
    .await
}

async fn configure_headers(db: &TestDb, hook: i64) {
    db.execute(&format!(
        "SELECT webhooks.configure({hook}, '{{\"headers\": \
         {{\"Authorization\": \"{TOKEN}\", \"X-Api-Key\": \"{API_KEY}\"}}}}')"
    ))
    .await;
}

#[tokio::test]
async fn a_webhooks_headers_reach_its_receiver_and_the_signature_still_verifies() {
    let db = TestDb::create("headers_delivered").await;
    let receiver = receiver_wanting_the_headers(ServedFile::default()).await;
    let hook = db.create_webhook("order.placed", &receiver.url("/")).await;
    configure_headers(&db, hook).await;
    // debug level: not even the relay's most talkative log may show a value
    let relay =
        Relay::start_with_env(&db.conninfo(), "headers", &[], &[("RUST_LOG", "debug")]).await;

    db.execute("SELECT webhooks.emit('order.placed', '{\"order\": 1}')")
        .await;
    let received = receiver.wait_for_requests(1, Duration::from_secs(15)).await;

    assert_eq!(received[0].header("authorization"), TOKEN);
    assert_eq!(received[0].header("x-api-key"), API_KEY);
    assert_eq!(
        verify_with_official_library(&db.secret(hook).await, &received),
        ["ok"]
    );
    // the request arrives before its acknowledgement is recorded
    let attempts = wait_for("the attempt logged", Duration::from_secs(10), || async {
        Some(db.attempts().await).filter(|attempts| !attempts.is_empty())
    })
    .await;
    assert_eq!(attempts[0].1, Some(200));
    let log = relay.log();
    assert!(
        !log.contains("tok-7f3a9c") && !log.contains(API_KEY),
        "the relay logged a header value"
    );
}

#[tokio::test]
async fn a_webhook_without_the_headers_is_refused_by_that_receiver_and_gets_none_of_anothers() {
    let db = TestDb::create("headers_refused").await;
    let receiver = receiver_wanting_the_headers(ServedFile::default()).await;
    let with = db
        .create_webhook("order.placed", &receiver.url("/with"))
        .await;
    configure_headers(&db, with).await;
    let without = db
        .create_webhook("order.placed", &receiver.url("/without"))
        .await;
    let _relay = Relay::start(&db, "headers", &["--retry-schedule", "0s"]).await;

    db.execute("SELECT webhooks.emit('order.placed', '{\"order\": 1}')")
        .await;
    pg_webhooks_tests::wait_for("both outcomes", Duration::from_secs(15), || async {
        (db.value::<i64>("SELECT count(*) FROM webhooks.delivery_log")
            .await
            == 2)
            .then_some(())
    })
    .await;

    let outcomes: Vec<(i64, i32)> = db
        .query("SELECT webhook_id, status FROM webhooks.delivery_log ORDER BY webhook_id")
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(outcomes, [(with, 200), (without, 401)]);
    let to_without = receiver
        .received()
        .into_iter()
        .find(|r| r.path == "/without")
        .expect("a request to /without");
    assert_eq!(to_without.header("authorization"), "");
    assert_eq!(to_without.header("x-api-key"), "");
}

#[tokio::test]
async fn test_requests_and_verification_carry_the_headers_too() {
    let db = TestDb::create("headers_probes").await;
    db.execute("UPDATE webhooks.settings SET require_verification = true")
        .await;
    let served = ServedFile::default();
    let receiver = receiver_wanting_the_headers(served.clone()).await;
    let hook = db.create_webhook("*", &receiver.url("/hook")).await;
    let (file, content) = db.verification_file(hook).await;
    *served.lock().expect("file lock") = Some((format!("/{file}"), content));
    configure_headers(&db, hook).await;
    let _relay = Relay::start(&db, "headers", &[]).await;

    let (verified, result, status, _) = db.run_probe(&format!("webhooks.verify({hook})")).await;
    assert!(verified, "{result}");
    assert_eq!(status, Some(200));
    let (delivered, result, status, _) = db.run_probe(&format!("webhooks.test({hook})")).await;
    assert!(delivered, "{result}");
    assert_eq!(status, Some(200));
}
