//! Asymmetric signatures (configure's "signature"): receivers verify with a public key and hold
//! nothing that could forge a request. ed25519 (Standard Webhooks v1a) is checked by the PyPI
//! `cryptography` package; rsa-sha256 by a PHP receiver written from Copernica's documentation
//! with `openssl_verify` (tests/php/copernica_receiver.php).

use pg_webhooks_tests::{verify_ed25519, PhpReceiver, Receiver, Relay, TestDb};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const ACCOUNT: &str = "environment_1234";

async fn configure(db: &TestDb, hook: i64, options: Value) {
    db.client
        .execute("SELECT webhooks.configure($1, $2)", &[&hook, &options])
        .await
        .expect("configure");
}

async fn public_keys(db: &TestDb, hook: i64) -> Vec<String> {
    db.client
        .query(
            "SELECT public_key FROM webhooks.public_keys($1) ORDER BY current DESC",
            &[&hook],
        )
        .await
        .expect("public keys")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A CRM database with a tracked profiles table, and a Copernica receiver holding the public key
/// of a form-posting webhook that signs with rsa-sha256.
async fn copernica_setup(
    name: &str,
    event: &str,
) -> (TestDb, i64, PhpReceiver, tempfile::TempPath) {
    let db = TestDb::create(name).await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text, first_name text);
         CREATE TABLE orders (id bigserial PRIMARY KEY, profile_id bigint REFERENCES profiles,
                              total numeric);
         SELECT webhooks.track('profiles', entity => 'profile');
         SELECT webhooks.track('orders', entity => 'order', parent => 'profile_id');",
    )
    .await;
    // the receiver reads its key file on every request: it is written once the key exists
    let key_file = tempfile::NamedTempFile::new()
        .expect("a temporary file")
        .into_temp_path();
    let key_path = key_file.to_str().expect("a UTF-8 path").to_owned();
    let php = PhpReceiver::start_script(
        "copernica_receiver.php",
        &[
            ("RECEIVER_PUBLIC_KEY_FILE", &key_path),
            ("RECEIVER_ACCOUNT", ACCOUNT),
        ],
    )
    .await;
    let hook = db
        .create_webhook(event, &php.url("/copernica/in.php?source=crm"))
        .await;
    configure(
        &db,
        hook,
        json!({"format": "form", "signature": "rsa-sha256", "signature_account": ACCOUNT}),
    )
    .await;
    std::fs::write(&key_file, &public_keys(&db, hook).await[0]).expect("write the key");
    (db, hook, php, key_file)
}

#[tokio::test]
async fn a_copernica_receiver_verifies_rsa_signed_form_posts_of_creates_updates_and_deletes() {
    let (db, _hook, php, _key) = copernica_setup("rsa_form_posts", "profile.*").await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email, first_name) VALUES ('ann@example.com', 'Ann')")
        .await;
    db.execute("UPDATE profiles SET first_name = 'Anna & Co'")
        .await;
    db.execute("DELETE FROM profiles").await;

    let requests = php.wait_for_requests(3, WAIT).await;
    let verdicts: Vec<&str> = requests
        .iter()
        .map(|r| r["verdict"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(verdicts, ["ok", "ok", "ok"], "{requests:#?}");
    // (requests run side by side: they may arrive in any order)
    let of_type = |kind: &str| {
        requests
            .iter()
            .find(|r| r["post"]["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} request in {requests:#?}"))
    };
    assert_eq!(of_type("create")["post"]["fields"]["first_name"], "Ann");
    assert_eq!(
        of_type("update")["post"]["fields"]["first_name"],
        "Anna & Co"
    );
    assert_eq!(of_type("delete")["get"]["source"], "crm");
}

#[tokio::test]
async fn a_copernica_receiver_verifies_a_signed_get_with_the_event_in_its_query() {
    let (db, hook, php, _key) = copernica_setup("rsa_get", "profile.*").await;
    configure(&db, hook, json!({"format": "query", "method": "GET"})).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email) VALUES ('bob@example.com')")
        .await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request["verdict"], "ok", "{request:#?}");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["get"]["fields"]["email"], "bob@example.com");
}

/// The receiver's checks are real: the same request sent again with one thing changed is
/// refused for that thing.
#[tokio::test]
async fn a_copernica_receiver_refuses_a_changed_body_a_forged_digest_and_an_old_date() {
    let (db, _hook, php, _key) = copernica_setup("rsa_refusals", "profile.*").await;
    let relay = Relay::start(&db, "r1", &[]).await;
    db.execute("INSERT INTO profiles (email) VALUES ('eve@example.com')")
        .await;
    let genuine = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(genuine["verdict"], "ok");
    drop(relay);

    let body = genuine["body"].as_str().expect("a body").to_owned();
    let changed = body.replace("eve%40example.com", "mallory%40example.com");
    let forged_digest = format!(
        "SHA-256={}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            <sha2::Sha256 as sha2::Digest>::digest(changed.as_bytes())
        )
    );
    let old_date = (chrono::Utc::now() - chrono::Duration::minutes(5))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let cases = [
        ("as sent", body.clone(), None),
        ("body changed", changed.clone(), None),
        ("digest forged", changed, Some(("digest", forged_digest))),
        ("date old", body, Some(("date", old_date))),
    ];
    let client = reqwest::Client::new();
    let mut verdicts = Vec::new();
    for (case, body, replaced) in cases {
        let mut request = client.post(php.url("/copernica/in.php?source=crm"));
        for name in [
            "date",
            "digest",
            "x-nonce",
            "x-copernica-id",
            "signature",
            "content-type",
        ] {
            let value = match &replaced {
                Some((replaced_name, value)) if *replaced_name == name => value.clone(),
                _ => genuine["headers"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            request = request.header(name, value);
        }
        let answer = request.body(body).send().await.expect("PHP answers");
        verdicts.push((case, answer.text().await.expect("a verdict")));
    }
    let expected = [
        ("as sent", "ok"),
        ("body changed", "rejected: digest"),
        ("digest forged", "rejected: signature"),
        ("date old", "rejected: date"),
    ];
    let verdicts: Vec<(&str, &str)> = verdicts.iter().map(|(c, v)| (*c, v.as_str())).collect();
    assert_eq!(verdicts, expected);
}

/// Every event type the seeds name: subprofile creates, updates and removals, and the email
/// events (opens, clicks, bounces, failures, deliveries), each verified by the receiver.
#[tokio::test]
async fn a_copernica_receiver_verifies_subprofile_and_email_events_too() {
    let (db, _hook, php, _key) = copernica_setup("rsa_every_type", "*").await;
    db.execute("INSERT INTO profiles (email) VALUES ('ann@example.com')")
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "INSERT INTO orders (profile_id, total) VALUES (1, 9.95);
         UPDATE orders SET total = 12.50;
         DELETE FROM orders;
         SELECT webhooks.emit('email.' || kind, jsonb_build_object(
                    'recipient', 'ann@example.com', 'message_id', 'm-' || kind))
         FROM unnest(ARRAY['opened', 'clicked', 'bounced', 'failed', 'delivered']) kind;",
    )
    .await;

    let requests = php.wait_for_requests(9, WAIT).await;
    assert!(
        requests.iter().all(|r| r["verdict"] == "ok"),
        "{requests:#?}"
    );
    let mut seen: Vec<String> = requests
        .iter()
        .map(|r| {
            let post = &r["post"];
            match post["collection"].as_str() {
                Some(collection) => format!("{collection} {}", post["type"].as_str().unwrap_or("")),
                None => post["type"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "bounce",
            "click",
            "create",
            "delivery",
            "failure",
            "open",
            "order create",
            "order delete",
            "order update"
        ]
    );
}

#[tokio::test]
async fn ed25519_signatures_verify_with_the_public_key_and_only_with_it() {
    let db = TestDb::create("ed25519").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    configure(&db, hook, json!({"signature": "ed25519"})).await;
    let public_key = public_keys(&db, hook).await.remove(0);
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "SELECT webhooks.emit('email.' || e, jsonb_build_object('n', n, 'text', 'ünïcode ✓'))
         FROM unnest(ARRAY['opened', 'clicked', 'bounced']) WITH ORDINALITY AS x(e, n)",
    )
    .await;

    let requests = receiver.wait_for_requests(3, WAIT).await;
    assert_eq!(verify_ed25519(&public_key, &requests), ["ok", "ok", "ok"]);
    assert!(requests[0].header("webhook-signature").starts_with("v1a,"));
    let mut tampered = requests[0].clone();
    tampered.body = String::from_utf8_lossy(&tampered.body)
        .replace("ünïcode", "unicode")
        .into_bytes()
        .into();
    assert_eq!(
        verify_ed25519(&public_key, &[tampered]),
        ["rejected: no matching signature"]
    );
}

#[tokio::test]
async fn during_a_key_rotation_ed25519_requests_verify_with_the_old_key_and_the_new() {
    let db = TestDb::create("ed25519_rotation").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    configure(&db, hook, json!({"signature": "ed25519"})).await;
    let old_key = public_keys(&db, hook).await.remove(0);
    let new_key: String = db
        .client
        .query_one("SELECT webhooks.rotate_signing_key($1, '1 hour')", &[&hook])
        .await
        .expect("rotate")
        .get(0);
    assert_eq!(
        public_keys(&db, hook).await,
        [new_key.clone(), old_key.clone()]
    );
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('email.opened', '{}')")
        .await;

    let requests = receiver.wait_for_requests(1, WAIT).await;
    assert_eq!(verify_ed25519(&old_key, &requests), ["ok"]);
    assert_eq!(verify_ed25519(&new_key, &requests), ["ok"]);
}
