//! Which events a webhook gets, and which columns: scoping to a table, row conditions, update
//! columns, column allow and deny lists, and loop prevention by origin.

use pg_webhooks_tests::{Receiver, Relay, TestDb};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

async fn crm_db(name: &str) -> TestDb {
    let db = TestDb::create(name).await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text, country text,
                                password_hash text);
         CREATE TABLE partners (id bigserial PRIMARY KEY, email text, country text);
         SELECT webhooks.track('profiles', entity => 'contact');
         SELECT webhooks.track('partners', entity => 'contact');",
    )
    .await;
    db
}

async fn subscribe(db: &TestDb, event: &str, receiver: &Receiver, options: Value) {
    let hook = db.create_webhook(event, &receiver.url("/")).await;
    db.client
        .execute("SELECT webhooks.configure($1, $2)", &[&hook, &options])
        .await
        .expect("configure");
}

/// Write `sql`, then a marker row every webhook here wants, and return the `data` of what
/// `receiver` got for the writes, in event order. Once the marker has arrived and nothing is
/// queued any more, every delivery the writes made has arrived: events a webhook does not want
/// get no delivery at all.
async fn received_for(db: &TestDb, receiver: &Receiver, sql: &str) -> Vec<Value> {
    db.execute(sql).await;
    db.execute("INSERT INTO profiles (email, country) VALUES ('marker@example.com', 'NL')")
        .await;
    pg_webhooks_tests::wait_for("the marker, and an empty queue", WAIT, || async {
        let marker_arrived = receiver
            .received()
            .iter()
            .any(|r| r.json()["data"]["new"]["email"] == "marker@example.com");
        let queued: i64 = db
            .value("SELECT count(*) FROM webhooks.delivery_status WHERE state IN ('pending', 'leased')")
            .await;
        (marker_arrived && queued == 0).then_some(())
    })
    .await;
    receiver
        .received_in_event_order()
        .iter()
        .map(|r| r.json()["data"].clone())
        .filter(|data| data["new"]["email"] != "marker@example.com")
        .collect()
}

#[tokio::test]
async fn a_webhook_scoped_to_one_table_ignores_the_same_events_from_another() {
    let db = crm_db("scope_source").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "contact.created",
        &receiver,
        json!({"source": "profiles"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let got = received_for(
        &db,
        &receiver,
        "INSERT INTO partners (email) VALUES ('partner@example.com');
         INSERT INTO profiles (email) VALUES ('profile@example.com');",
    )
    .await;

    let tables: Vec<_> = got.iter().map(|d| d["table"].clone()).collect();
    assert_eq!(tables, [json!("public.profiles")]);
}

#[tokio::test]
async fn a_row_condition_selects_the_events_sent() {
    let db = crm_db("row_filter").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "contact.created",
        &receiver,
        json!({"filter": "$.new.country == \"NL\""}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let got = received_for(
        &db,
        &receiver,
        "INSERT INTO profiles (email, country) VALUES ('de@example.com', 'DE'),
                                                      ('nl@example.com', 'NL'), ('none@example.com', NULL)",
    )
    .await;

    let emails: Vec<_> = got.iter().map(|d| d["new"]["email"].clone()).collect();
    assert_eq!(emails, [json!("nl@example.com")]);
}

#[tokio::test]
async fn updates_are_sent_only_when_a_listed_column_changed() {
    let db = crm_db("on_change").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "contact.*",
        &receiver,
        json!({"on_change": ["email"], "source": "profiles"}),
    )
    .await;
    db.execute("INSERT INTO profiles (email, country) VALUES ('a@example.com', 'NL')")
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;
    receiver.wait_for_requests(1, WAIT).await;

    let got = received_for(
        &db,
        &receiver,
        "UPDATE profiles SET country = 'DE' WHERE id = 1;
         UPDATE profiles SET email = 'a2@example.com' WHERE id = 1;",
    )
    .await;

    let changed: Vec<_> = got[1..].iter().map(|d| d["changed"].clone()).collect();
    assert_eq!(changed, [json!(["email"])]);
}

#[tokio::test]
async fn an_excluded_column_is_never_sent_and_changing_only_it_sends_nothing() {
    let db = crm_db("exclude_columns").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "contact.*",
        &receiver,
        json!({"exclude_columns": ["password_hash"]}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let got = received_for(
        &db,
        &receiver,
        "INSERT INTO profiles (email, password_hash) VALUES ('p@example.com', 'argon2:secret');
         UPDATE profiles SET password_hash = 'argon2:other';
         UPDATE profiles SET country = 'NL', password_hash = 'argon2:third';",
    )
    .await;

    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter()
            .all(|d| !d.to_string().contains("argon2") && !d.to_string().contains("password_hash")),
        "{got:?}"
    );
    assert_eq!(got[1]["changed"], json!(["country"]));
}

#[tokio::test]
async fn an_allow_list_sends_only_its_columns() {
    let db = crm_db("include_columns").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "contact.created",
        &receiver,
        json!({"include_columns": ["email"]}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let got = received_for(
        &db,
        &receiver,
        "INSERT INTO profiles (email, country, password_hash) VALUES ('i@example.com', 'NL', 'x')",
    )
    .await;

    assert_eq!(got[0]["new"], json!({"email": "i@example.com"}));
    assert_eq!(got[0]["key"], json!({"id": 1}), "the key is always sent");
}

#[tokio::test]
async fn changes_from_an_excluded_origin_are_not_sent_back_to_it() {
    let db = crm_db("loop_prevention").await;
    let squeezely = Receiver::start().await;
    let others = Receiver::start().await;
    subscribe(
        &db,
        "contact.*",
        &squeezely,
        json!({"exclude_origins": ["squeezely"]}),
    )
    .await;
    subscribe(&db, "contact.*", &others, json!({})).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let got = received_for(
        &db,
        &squeezely,
        "BEGIN;
         SET LOCAL pg_webhooks.origin = 'squeezely';
         INSERT INTO profiles (email) VALUES ('written-back@example.com');
         COMMIT;
         SET application_name = 'squeezely';
         INSERT INTO profiles (email) VALUES ('by-app-name@example.com');
         RESET application_name;
         INSERT INTO profiles (email) VALUES ('crm@example.com');",
    )
    .await;

    let emails: Vec<_> = got.iter().map(|d| d["new"]["email"].clone()).collect();
    assert_eq!(emails, [json!("crm@example.com")]);
    others.wait_for_requests(4, WAIT).await;
}
