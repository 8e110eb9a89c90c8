//! Per-key ordering (configure's "ordered_by"): with the real relay, concurrent writers and a
//! relay killed mid-run, each key's events reach the receiver in commit order, one at a time,
//! and a key whose receiver fails holds back only itself.

use pg_webhooks_tests::{wait_for, Receiver, Relay, Reply, TestDb};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CONTACTS: i32 = 5;
const WRITERS: usize = 4;
const UPDATES_PER_WRITER: usize = 25;
/// Leases short enough for the next relay to take over quickly after a kill.
const CRASHY: &[&str] = &["--lease", "2s", "--request-timeout", "1s"];

/// Contact and version of a row event's body.
fn contact_version(body: &serde_json::Value) -> (i64, i64) {
    let row = &body["data"]["new"];
    (
        row["id"].as_i64().unwrap_or_default(),
        row["version"].as_i64().unwrap_or_default(),
    )
}

#[tokio::test]
async fn each_key_arrives_in_commit_order_through_concurrent_writers_failures_and_a_relay_crash() {
    let db = TestDb::create("ordering").await;
    db.execute(
        "CREATE TABLE contacts (id int PRIMARY KEY, version int NOT NULL DEFAULT 1);
         SELECT webhooks.track('contacts', entity => 'contact');",
    )
    .await;
    // contact 1's receiver fails its first three requests
    let contact_1_failures = Arc::new(AtomicUsize::new(0));
    let failures = contact_1_failures.clone();
    let receiver = Receiver::answering(move |request, _| {
        let (contact, _) = contact_version(&request.json());
        if contact == 1 && failures.fetch_add(1, Ordering::SeqCst) < 3 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let hook = db
        .create_webhook("contact.*", &receiver.url("/contacts"))
        .await;
    db.client
        .execute(
            "SELECT webhooks.configure($1, $2)",
            &[
                &hook,
                &json!({"ordered_by": "primary key",
                        "retry_schedule": ["0s", "300 milliseconds", "300 milliseconds",
                                           "300 milliseconds", "300 milliseconds"]}),
            ],
        )
        .await
        .expect("configure");
    db.execute(&format!(
        "INSERT INTO contacts (id) SELECT generate_series(1, {CONTACTS})"
    ))
    .await;

    // writers update the same rows at once: a row's versions are its commit order
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = db.connect().await;
        writers.push(tokio::spawn(async move {
            for n in 0..UPDATES_PER_WRITER {
                let contact = ((writer + n) % CONTACTS as usize) as i32 + 1;
                client
                    .execute(
                        "UPDATE contacts SET version = version + 1 WHERE id = $1",
                        &[&contact],
                    )
                    .await
                    .expect("update a contact");
            }
        }));
    }
    let relay = Relay::start(&db, "ordering-a", CRASHY).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    relay.kill().await;
    for writer in writers {
        writer.await.expect("writer");
    }
    let _relay = Relay::start(&db, "ordering-b", CRASHY).await;

    let events = (CONTACTS as usize + WRITERS * UPDATES_PER_WRITER) as i64;
    wait_for("every event delivered", Duration::from_secs(60), || async {
        (db.deliveries_in("delivered").await == events).then_some(())
    })
    .await;

    let received = receiver.received();
    let mut versions: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for request in &received {
        let (contact, version) = contact_version(&request.json());
        versions.entry(contact).or_default().push(version);
    }
    let finals: BTreeMap<i64, i64> = db
        .query("SELECT id::bigint, version::bigint FROM contacts")
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (contact, arrived) in &versions {
        // at-least-once: a request in flight when the relay died comes again, in its place
        assert!(
            arrived.windows(2).all(|pair| pair[0] <= pair[1]),
            "contact {contact}'s versions arrived out of commit order: {arrived:?}"
        );
        let mut distinct = arrived.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            (1..=finals[contact]).collect::<Vec<_>>(),
            "contact {contact}: every version once, in order"
        );
    }

    // while contact 1 waited for its retries, the other contacts' events went on
    let contact_of = |index: usize| contact_version(&received[index].json()).0;
    let first_failure = (0..received.len()).find(|&i| contact_of(i) == 1);
    let retried = (0..received.len()).filter(|&i| contact_of(i) == 1).nth(3);
    let (Some(first_failure), Some(retried)) = (first_failure, retried) else {
        panic!("contact 1 was sent fewer than four requests");
    };
    assert!(
        (first_failure..retried).any(|i| contact_of(i) != 1),
        "another contact's event went between contact 1's failures and its success"
    );
}
