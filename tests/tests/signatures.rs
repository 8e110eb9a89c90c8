//! Requests carry Standard Webhooks signatures that the official verifier accepts.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use pg_webhooks_tests::{verify_with_official_library, Received, Receiver, Relay, TestDb};
use sha2::Sha256;
use std::time::Duration;

fn expected_signature(secret: &str, request: &Received) -> String {
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(request.header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(request.header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_official_standard_webhooks_library_verifies_every_delivery() {
    let db = TestDb::create("official_verifier").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let secret = db.secret(hook).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "SELECT webhooks.emit('email.' || e, jsonb_build_object('n', n, 'text', 'ünïcode ✓'))
                FROM unnest(ARRAY['opened', 'clicked', 'bounced']) WITH ORDINALITY AS x(e, n)",
    )
    .await;

    receiver.wait_for_requests(3, Duration::from_secs(10)).await;
    assert_eq!(
        verify_with_official_library(&secret, &receiver.received()),
        ["ok", "ok", "ok"]
    );
}

#[tokio::test]
async fn the_official_library_rejects_a_wrong_secret_and_a_tampered_body() {
    let db = TestDb::create("verifier_rejects").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let secret = db.secret(hook).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('email.opened', '{\"amount\": 10}')")
        .await;

    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let genuine = receiver.received().remove(0);
    let mut tampered = genuine.clone();
    tampered.body = String::from_utf8_lossy(&genuine.body)
        .replace("10", "99")
        .into_bytes()
        .into();
    let other_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verdicts = [
        verify_with_official_library(&secret, std::slice::from_ref(&tampered)),
        verify_with_official_library(other_secret, std::slice::from_ref(&genuine)),
    ];
    // rejected for the signature, not for anything else
    assert!(
        verdicts
            .iter()
            .all(|v| v[0] == "rejected: No matching signature found"),
        "{verdicts:?}"
    );
}

#[tokio::test]
async fn the_webhook_id_stays_the_same_across_retries() {
    let db = TestDb::create("stable_id").await;
    let receiver = Receiver::answering(|_, n| {
        if n == 0 {
            pg_webhooks_tests::Reply::status(500)
        } else {
            pg_webhooks_tests::Reply::ok()
        }
    })
    .await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    let [first, second] = <[Received; 2]>::try_from(receiver.received()).expect("two requests");
    assert!(!first.header("webhook-id").is_empty());
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    assert_eq!(first.body, second.body);
}

#[tokio::test]
async fn both_secrets_sign_during_a_rotation_overlap() {
    let db = TestDb::create("rotation").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let old_secret = db.secret(hook).await;
    let new_secret: String = db
        .value(&format!(
            "SELECT webhooks.rotate_secret({hook}, overlap => '1 hour')"
        ))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let request = receiver.received().remove(0);
    let signatures: Vec<&str> = request.header("webhook-signature").split(' ').collect();
    assert_eq!(
        signatures,
        [
            expected_signature(&new_secret, &request),
            expected_signature(&old_secret, &request)
        ]
    );
    for secret in [&old_secret, &new_secret] {
        assert_eq!(
            verify_with_official_library(secret, std::slice::from_ref(&request)),
            ["ok"]
        );
    }
}

/// A copy of `request` with the timestamp moved by `shift_seconds` and signed again with the
/// right secret, so only the timestamp is wrong.
fn resigned_at(secret: &str, request: &Received, shift_seconds: i64) -> Received {
    let mut moved = request.clone();
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .parse()
        .expect("a number");
    moved.headers.insert(
        "webhook-timestamp",
        (timestamp + shift_seconds)
            .to_string()
            .parse()
            .expect("header"),
    );
    let signature = expected_signature(secret, &moved);
    moved
        .headers
        .insert("webhook-signature", signature.parse().expect("header"));
    moved
}

#[tokio::test]
async fn the_official_library_rejects_stale_and_future_timestamps_and_missing_headers() {
    let db = TestDb::create("verifier_timestamps").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let secret = db.secret(hook).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('email.opened', '{}')")
        .await;

    let genuine = receiver
        .wait_for_requests(1, Duration::from_secs(10))
        .await
        .remove(0);
    // each case with the reason the verifier gives for it
    let mut cases = vec![
        ("genuine", genuine.clone(), "ok"),
        (
            "10 minutes old",
            resigned_at(&secret, &genuine, -600),
            "rejected: Message timestamp too old",
        ),
        (
            "10 minutes ahead",
            resigned_at(&secret, &genuine, 600),
            "rejected: Message timestamp too new",
        ),
    ];
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut without = genuine.clone();
        without.headers.remove(header);
        cases.push((header, without, "rejected: Missing required headers"));
    }
    let requests: Vec<Received> = cases.iter().map(|(_, r, _)| r.clone()).collect();
    let verdicts = verify_with_official_library(&secret, &requests);
    for ((case, _, expected), verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(verdict, expected, "{case}");
    }
}
