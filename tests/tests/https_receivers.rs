//! HTTPS receivers for real: deliveries, test requests and verification over TLS to receivers
//! whose certificates come from a CA the test makes, trusted through --receiver-ca-file, and
//! the refusal of a certificate the relay cannot trust.

use pg_webhooks_tests::tls::{ServerCert, TestCa};
use pg_webhooks_tests::{verify_with_official_library, Receiver, Relay, Reply, TestDb};
use std::path::PathBuf;
use std::time::Duration;

/// A CA of this test's, and a certificate it issued for `names`.
fn private_ca(test: &str, names: &[&str]) -> (TestCa, ServerCert) {
    let dir = std::env::temp_dir().join(format!("{test}_{}", std::process::id()));
    let ca = TestCa::new(&dir, "receivers");
    let certificate = ca.issue("receiver", names);
    (ca, certificate)
}

fn ca_option(ca: &TestCa) -> [String; 2] {
    [
        "--receiver-ca-file".to_owned(),
        ca.cert_file.display().to_string(),
    ]
}

#[tokio::test]
async fn a_receiver_on_a_private_ca_gets_deliveries_test_requests_and_verification() {
    let (ca, certificate) = private_ca("https_private_ca", &["127.0.0.1"]);
    let db = TestDb::create("https_private_ca").await;
    db.execute("UPDATE webhooks.settings SET require_verification = true")
        .await;
    let file = std::sync::Arc::new(std::sync::Mutex::new(None::<(String, String)>));
    let served = file.clone();
    let receiver = Receiver::answering_over_tls(&certificate, move |request, _| {
        match &*served.lock().expect("file lock") {
            Some((path, content)) if request.method == "GET" && *path == request.path => {
                Reply::ok().with_body(content.clone())
            }
            _ => Reply::ok(),
        }
    })
    .await;
    let hook = db.create_webhook("*", &receiver.url("/hook")).await;
    let (name, content) = db.verification_file(hook).await;
    *file.lock().expect("file lock") = Some((format!("/{name}"), content));
    let option = ca_option(&ca);
    let _relay = Relay::start(&db, "https", &[&option[0], &option[1]]).await;

    let (verified, result, _, _) = db.run_probe(&format!("webhooks.verify({hook})")).await;
    assert!(verified, "{result}");
    let (tested, result, status, _) = db.run_probe(&format!("webhooks.test({hook})")).await;
    assert!(tested, "{result}");
    assert_eq!(status, Some(200));
    db.execute("SELECT webhooks.emit('order.placed', '{\"order\": 1}')")
        .await;
    let received = receiver.wait_for_requests(3, Duration::from_secs(15)).await;

    let delivered: Vec<_> = received
        .into_iter()
        .filter(|r| r.method == "POST" && r.json()["type"] == "order.placed")
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        verify_with_official_library(&db.secret(hook).await, &delivered),
        ["ok"]
    );
}

#[tokio::test]
async fn certificates_the_relay_cannot_trust_are_refused_as_tls_and_nothing_is_sent() {
    let (_, unknown_issuer) = private_ca("https_unknown_ca", &["127.0.0.1"]);
    let (ca, other_name) = private_ca("https_other_name", &["receiver.example"]);
    let db = TestDb::create("https_refused").await;
    let untrusted = Receiver::answering_over_tls(&unknown_issuer, |_, _| Reply::ok()).await;
    let misnamed = Receiver::answering_over_tls(&other_name, |_, _| Reply::ok()).await;
    db.create_webhook("order.placed", &untrusted.url("/")).await;
    db.create_webhook("order.placed", &misnamed.url("/")).await;
    // the relay trusts the second CA, not the first; the second's certificate names another host
    let option = ca_option(&ca);
    let _relay = Relay::start(
        &db,
        "https",
        &[&option[0], &option[1], "--retry-schedule", "0s"],
    )
    .await;

    db.execute("SELECT webhooks.emit('order.placed', '{}')")
        .await;
    pg_webhooks_tests::wait_for("both attempts", Duration::from_secs(15), || async {
        (db.value::<i64>("SELECT count(*) FROM webhooks.delivery_log")
            .await
            == 2)
            .then_some(())
    })
    .await;

    let errors: Vec<Option<String>> = db
        .query("SELECT error FROM webhooks.delivery_log ORDER BY webhook_id")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(errors, [Some("tls".to_owned()), Some("tls".to_owned())]);
    assert_eq!(
        untrusted.count() + misnamed.count(),
        0,
        "no request got through"
    );
    assert_eq!(db.deliveries_in("failed").await, 2);
}

#[tokio::test]
async fn an_unreadable_receiver_ca_file_stops_the_relay_at_start() {
    let db = TestDb::create("https_bad_ca_file").await;
    let missing = PathBuf::from("/nonexistent/receivers-ca.pem");
    let (code, log) = Relay::run_until_exit(
        &db.conninfo(),
        "https",
        &["--receiver-ca-file", missing.to_str().expect("utf-8")],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("cannot read --receiver-ca-file /nonexistent/receivers-ca.pem"),
        "{log}"
    );
}
