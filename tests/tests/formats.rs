//! Receivers built for the seed platforms work unchanged: Copernica form posts and query strings
//! as PHP decodes them, KlickTipp field mapping and URL placeholders, subprofiles, tags with a
//! throttle and with their contact's email, and email events.

use pg_webhooks_tests::{
    signed_payload, verify_signed_payloads, wait_for, PhpReceiver, Receiver, Relay, TestDb,
};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A database with a tracked profiles table, as a CRM keeps it.
async fn crm_db(name: &str) -> TestDb {
    let db = TestDb::create(name).await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text, first_name text,
                                country text, interests text[], password_hash text);
         SELECT webhooks.track('profiles', entity => 'profile');",
    )
    .await;
    db
}

async fn subscribe(db: &TestDb, event: &str, url: &str, options: Value) -> i64 {
    let hook = db.create_webhook(event, url).await;
    db.client
        .execute("SELECT webhooks.configure($1, $2)", &[&hook, &options])
        .await
        .expect("configure");
    hook
}

/// The official verifier's verdict on a request PHP recorded, given what was signed.
fn verdict(db_secret: &str, request: &Value, signed_content: &str) -> String {
    let header = |name: &str| request[name].as_str().unwrap_or_default().to_owned();
    verify_signed_payloads(
        db_secret,
        &[signed_payload(
            &header("webhook_id"),
            &header("webhook_timestamp"),
            &header("webhook_signature"),
            signed_content,
        )],
    )
    .remove(0)
}

#[tokio::test]
async fn form_posts_reach_php_as_copernica_fields_and_are_signed() {
    let db = crm_db("form_post").await;
    let php = PhpReceiver::start().await;
    let hook = subscribe(
        &db,
        "profile.created",
        &php.url("/hook.php"),
        json!({"format": "form", "parameters": {"account": "shop"}}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "INSERT INTO profiles (email, first_name, country, interests)
         VALUES ('ann@example.com', 'Ann & Co', 'NL', '{sports,music}')",
    )
    .await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request["method"], "POST");
    assert_eq!(request["content_type"], "application/x-www-form-urlencoded");
    let post = &request["post"];
    assert_eq!(post["type"], "create");
    assert_eq!(post["profile"], "1");
    assert_eq!(post["database"], "public.profiles");
    assert_eq!(post["fields"]["email"], "ann@example.com");
    assert_eq!(post["fields"]["first_name"], "Ann & Co");
    assert_eq!(post["fields"]["password_hash"], "");
    assert_eq!(post["interests"], json!(["sports", "music"]));
    assert_eq!(post["parameters"]["account"], "shop");
    assert!(post["fields"].get("interests").is_none());
    let timestamp = post["timestamp"].as_str().expect("timestamp");
    assert!(
        chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{timestamp}"
    );
    assert!(post["time"].as_str().expect("time").parse::<i64>().is_ok());
    let secret = db.secret(hook).await;
    let body = request["body"].as_str().expect("raw body").to_owned();
    assert_eq!(verdict(&secret, &request, &body), "ok");
}

#[tokio::test]
async fn a_get_webhook_sends_the_parameters_in_the_query_string_and_signs_them() {
    let db = crm_db("query_get").await;
    let php = PhpReceiver::start().await;
    let hook = subscribe(
        &db,
        "profile.updated",
        &php.url("/in.php?list=7"),
        json!({"format": "query", "method": "GET"}),
    )
    .await;
    db.execute("INSERT INTO profiles (email, country) VALUES ('bob@example.com', 'DE')")
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("UPDATE profiles SET country = 'BE'").await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request["method"], "GET");
    assert_eq!(request["body"], "");
    let get = &request["get"];
    assert_eq!(get["list"], "7");
    assert_eq!(get["type"], "update");
    assert_eq!(get["fields"]["country"], "BE");
    // what is signed for a GET: the query string the relay added (after the URL's own)
    let query = request["query_string"].as_str().expect("query string");
    let signed = query
        .strip_prefix("list=7&")
        .expect("the relay's part follows the URL's");
    let secret = db.secret(hook).await;
    assert_eq!(verdict(&secret, &request, signed), "ok");
}

#[tokio::test]
async fn a_put_webhook_is_sent_with_put() {
    let db = crm_db("put_method").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "profile.*",
        &receiver.url("/"),
        json!({"method": "PUT"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email) VALUES ('c@example.com')")
        .await;

    let request = receiver.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request.method, "PUT");
    assert_eq!(request.json()["type"], "profile.created");
}

#[tokio::test]
async fn mapped_fields_go_under_their_own_names_with_defaults_and_fill_url_placeholders() {
    let db = crm_db("klicktipp_mapping").await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "profile.created",
        &php.url("/subscribe/__country__.php?email=__email__"),
        json!({"format": "query", "method": "GET", "fields": [
            {"column": "first_name", "name": "fname", "default": "friend"},
            {"column": "country"}]}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email, country) VALUES ('d+1@example.com', 'NL')")
        .await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request["path"], "/subscribe/NL.php");
    assert_eq!(
        request["get"],
        json!({"email": "d+1@example.com", "fname": "friend", "country": "NL"})
    );
    assert!(
        request["query_string"]
            .as_str()
            .expect("query")
            .starts_with("email=d%2B1%40example.com&"),
        "the placeholder is URL-encoded: {}",
        request["query_string"]
    );
}

#[tokio::test]
async fn a_placeholder_value_that_would_climb_the_path_is_parked_unsent() {
    let db = crm_db("placeholder_dot_segment").await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "profile.created",
        &receiver.url("/private/__country__/hook"),
        json!({}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s"]).await;

    // "/private/../hook" would reach "/hook"
    db.execute("INSERT INTO profiles (email, country) VALUES ('f@example.com', '..')")
        .await;

    wait_for("parked", WAIT, || async {
        (db.deliveries_in("failed").await == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.count(), 0, "a request was sent");
    assert_eq!(
        db.attempts().await,
        [("failed".to_owned(), None, Some("render".to_owned()))]
    );
}

#[tokio::test]
async fn subprofile_events_carry_the_profile_and_the_collection() {
    let db = crm_db("subprofiles").await;
    db.execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, profile_id bigint REFERENCES profiles,
                              total numeric);
         SELECT webhooks.track('orders', entity => 'order', parent => 'profile_id');
         INSERT INTO profiles (email) VALUES ('e@example.com');",
    )
    .await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "order.*",
        &php.url("/orders.php"),
        json!({"format": "form"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO orders (profile_id, total) VALUES (1, 9.95)")
        .await;

    let post = php.wait_for_requests(1, WAIT).await.remove(0)["post"].clone();
    assert_eq!(post["type"], "create");
    assert_eq!(post["profile"], "1");
    assert_eq!(post["subprofile"], "1");
    assert_eq!(post["collection"], "order");
    assert_eq!(post["database"], "public.profiles");
    assert_eq!(post["fields"]["total"], "9.95");
    assert!(post.get("interests").is_none());
}

#[tokio::test]
async fn identified_tables_are_sent_as_the_database_and_collection_ids_the_receiver_knows() {
    let db = crm_db("identified").await;
    db.execute(
        "CREATE TABLE orders (id bigserial PRIMARY KEY, profile_id bigint REFERENCES profiles);
         SELECT webhooks.track('orders', entity => 'order', parent => 'profile_id');
         SELECT webhooks.identify('profiles', database => '12');
         SELECT webhooks.identify('orders', database => '12', collection => '34');",
    )
    .await;
    let php = PhpReceiver::start().await;
    subscribe(&db, "*", &php.url("/crm.php"), json!({"format": "form"})).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email) VALUES ('e@example.com')")
        .await;
    php.wait_for_requests(1, WAIT).await;
    db.execute("INSERT INTO orders (profile_id) VALUES (1)")
        .await;

    let posts: Vec<Value> = php
        .wait_for_requests(2, WAIT)
        .await
        .into_iter()
        .map(|request| request["post"].clone())
        .collect();
    assert_eq!(posts[0]["database"], "12");
    assert!(posts[0].get("collection").is_none());
    assert_eq!(posts[1]["database"], "12");
    assert_eq!(posts[1]["collection"], "34");
    assert_eq!(posts[1]["subprofile"], "1");
}

#[tokio::test]
async fn a_tag_webhook_fires_once_per_contact_within_its_throttle_and_others_fire_every_time() {
    let db = TestDb::create("tag_throttle").await;
    db.execute(
        "CREATE TABLE contact_tags (contact_id bigint, tag_id int, PRIMARY KEY (contact_id, tag_id));
         SELECT webhooks.track('contact_tags', entity => 'tag');",
    )
    .await;
    let throttled = Receiver::start().await;
    let immediate = Receiver::start().await;
    let options = json!({"filter": "$.new.tag_id == 7"});
    let mut throttled_options = options.clone();
    throttled_options["throttle"] = json!("6 hours");
    throttled_options["throttle_per"] = json!("contact_id");
    subscribe(&db, "tag.created", &throttled.url("/"), throttled_options).await;
    subscribe(&db, "tag.created", &immediate.url("/"), options).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    for sql in [
        "INSERT INTO contact_tags VALUES (1, 7), (2, 7), (1, 8)",
        "DELETE FROM contact_tags WHERE contact_id = 1",
        "INSERT INTO contact_tags VALUES (1, 7)",
    ] {
        db.execute(sql).await;
    }

    immediate.wait_for_requests(3, WAIT).await;
    let fired: Vec<Value> = immediate
        .received_in_event_order()
        .iter()
        .map(|r| r.json()["data"]["new"]["contact_id"].clone())
        .collect();
    assert_eq!(fired, [json!(1), json!(2), json!(1)]);
    let mut once_each: Vec<Value> = throttled
        .wait_for_requests(2, WAIT)
        .await
        .iter()
        .map(|r| r.json()["data"]["new"]["contact_id"].clone())
        .collect();
    once_each.sort_by_key(|v| v.as_i64());
    assert_eq!(once_each, [json!(1), json!(2)]);
    let throttled_rows: i64 = db
        .value("SELECT count(*) FROM webhooks.delivery_status WHERE last_error = 'throttled'")
        .await;
    assert_eq!(
        throttled_rows, 1,
        "the repeat is dropped visibly, not merged"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(throttled.count(), 2);
}

#[tokio::test]
async fn email_events_are_posted_with_copernicas_type_names_and_fields() {
    let db = TestDb::create("email_form").await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "email.*",
        &php.url("/mail.php"),
        json!({"format": "form"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "SELECT webhooks.emit('email.clicked', '{\"recipient\": \"f@example.com\",
             \"ip\": \"192.0.2.7\", \"useragent\": \"Mozilla/5.0\",
             \"referer\": \"https://mail.example.com/\",
             \"original\": \"https://shop.example.com/?a=1&b=2\", \"tags\": [\"spring\"]}')",
    )
    .await;

    let post = php.wait_for_requests(1, WAIT).await.remove(0)["post"].clone();
    assert_eq!(post["type"], "click");
    assert_eq!(post["recipient"], "f@example.com");
    assert_eq!(post["original"], "https://shop.example.com/?a=1&b=2");
    assert_eq!(post["tags"], json!(["spring"]));
    assert!(post["id"]
        .as_str()
        .is_some_and(|id| id.parse::<i64>().is_ok()));
}

#[tokio::test]
async fn the_raw_format_sends_an_emitted_payload_alone_exactly_as_stored_and_signed() {
    let db = TestDb::create("raw_format").await;
    let receiver = Receiver::start().await;
    let hook = subscribe(
        &db,
        "subscriber.changed",
        &receiver.url("/emma"),
        json!({"format": "raw"}),
    )
    .await;
    let _relay = Relay::start(&db, "raw", &[]).await;

    // a Mailingwork-style object: its own id, fields as {id, value}, a timestamp of its own
    let event_id: i64 = db
        .value(
            r#"SELECT webhooks.emit('subscriber.changed', '{"id": 4711, "fields": [{"id": 3,
                 "value": "Jan"}], "lists": [{"id": 9, "state": "active"}],
                 "date": "2026-12-02 10:00:00", "score": 1.10}')"#,
        )
        .await;
    let received = receiver.wait_for_requests(1, WAIT).await;

    let stored: String = db
        .value(&format!(
            "SELECT payload::text FROM webhooks.events WHERE id = {event_id}"
        ))
        .await;
    assert_eq!(String::from_utf8_lossy(&received[0].body), stored);
    assert_eq!(
        received[0].json()["id"],
        4711,
        "no envelope: the payload's own id"
    );
    assert_eq!(received[0].header("content-type"), "application/json");
    assert_eq!(
        pg_webhooks_tests::verify_with_official_library(&db.secret(hook).await, &received),
        ["ok"]
    );
}

#[tokio::test]
async fn a_mailingwork_handler_reads_each_subscription_event_sent_raw() {
    let db = TestDb::create("mailingwork_php").await;
    let php = PhpReceiver::start_script("mailingwork_receiver.php", &[]).await;
    for event in [
        "optin_finalized",
        "optout_finalized",
        "profilemanager_finalized",
    ] {
        subscribe(&db, event, &php.url("/emma.php"), json!({"format": "raw"})).await;
    }
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        r#"SELECT webhooks.emit(e, jsonb_build_object(
               'id', n, 'subscriber_id', 4711,
               'fields', '[{"id": 3, "value": "Jan"}, {"id": 4, "value": "de Vries"}]'::jsonb,
               'lists', jsonb_build_array(jsonb_build_object('id', 9, 'state',
                            CASE e WHEN 'optout_finalized' THEN 'inactive' ELSE 'active' END)),
               'timestamp', '2026-12-02 10:00:00'))
           FROM unnest(ARRAY['optin_finalized', 'optout_finalized', 'profilemanager_finalized'])
                WITH ORDINALITY AS x(e, n)"#,
    )
    .await;

    let mut understood = php.wait_for_requests(3, WAIT).await;
    understood.sort_by_key(|r| r["id"].as_i64());
    for (record, list_state) in understood.iter().zip(["active", "inactive", "active"]) {
        assert_eq!(record["subscriber_id"], 4711);
        assert_eq!(record["fields"], json!({"3": "Jan", "4": "de Vries"}));
        assert_eq!(record["lists"], json!({"9": list_state}));
        assert_eq!(record["timestamp"], "2026-12-02 10:00:00");
    }
}

#[tokio::test]
async fn a_tables_timestamp_columns_reach_php_as_copernica_writes_created_and_modified() {
    let db = TestDb::create("form_timestamps").await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text,
                                created_at timestamptz, updated_at timestamp);
         SELECT webhooks.track('profiles', entity => 'profile');",
    )
    .await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "profile.created",
        &php.url("/hook.php"),
        json!({"format": "form"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "INSERT INTO profiles (email, created_at, updated_at)
         VALUES ('ann@example.com', '2026-11-20 09:30:00.123456+01', '2026-11-21 08:00:00.5')",
    )
    .await;

    let post = php.wait_for_requests(1, WAIT).await.remove(0)["post"].clone();
    assert_eq!(post["created"], "2026-11-20 08:30:00");
    assert_eq!(post["modified"], "2026-11-21 08:00:00");
}

#[tokio::test]
async fn a_klicktipp_post_with_field_mapping_reaches_php_under_its_own_names_email_included() {
    let db = crm_db("klicktipp_post").await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "profile.created",
        &php.url("/subscribe.php"),
        json!({"format": "form", "fields": [
            {"column": "email", "name": "EmailAddress"},
            {"column": "first_name", "name": "fname", "default": "friend"},
            {"column": "country"}], "parameters": {"list": "7"}}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email, country) VALUES ('d+1@example.com', 'NL')")
        .await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(request["method"], "POST");
    assert_eq!(
        request["post"],
        json!({"EmailAddress": "d+1@example.com", "fname": "friend", "country": "NL",
               "parameters": {"list": "7"}})
    );
}

#[tokio::test]
async fn a_tag_fires_again_once_its_throttle_has_passed() {
    let db = TestDb::create("tag_throttle_passes").await;
    db.execute(
        "CREATE TABLE contact_tags (contact_id bigint, tag_id int, PRIMARY KEY (contact_id, tag_id));
         SELECT webhooks.track('contact_tags', entity => 'tag');",
    )
    .await;
    let receiver = Receiver::start().await;
    subscribe(
        &db,
        "tag.created",
        &receiver.url("/"),
        json!({"throttle": "5 seconds", "throttle_per": "contact_id"}),
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO contact_tags VALUES (1, 7)").await;
    receiver.wait_for_requests(1, WAIT).await;
    // within the throttle (5 s after the first event, with room for a slow delivery): dropped;
    // after it: sent again
    db.execute("DELETE FROM contact_tags; INSERT INTO contact_tags VALUES (1, 7)")
        .await;
    tokio::time::sleep(Duration::from_millis(5500)).await;
    db.execute("DELETE FROM contact_tags; INSERT INTO contact_tags VALUES (1, 7)")
        .await;

    receiver.wait_for_requests(2, WAIT).await;
    let dropped: i64 = db
        .value("SELECT count(*) FROM webhooks.delivery_status WHERE last_error = 'throttled'")
        .await;
    assert_eq!((receiver.count(), dropped), (2, 1));
}

#[tokio::test]
async fn a_klicktipp_tag_webhook_sends_the_contacts_email_as_it_was_when_tagged() {
    let db = TestDb::create("tag_parent_values").await;
    db.execute(
        "CREATE TABLE contacts (id bigserial PRIMARY KEY, email text, first_name text);
         CREATE TABLE contact_tags (contact_id bigint REFERENCES contacts, tag_id int,
                                    PRIMARY KEY (contact_id, tag_id));
         SELECT webhooks.track('contact_tags', entity => 'tag', parent => 'contact_id');
         SELECT webhooks.enrich('contact_tags', ARRAY['email', 'first_name']);",
    )
    .await;
    let php = PhpReceiver::start().await;
    subscribe(
        &db,
        "tag.created",
        &php.url("/tagged.php"),
        json!({"format": "query", "method": "GET", "fields": [
            {"column": "tag_id", "name": "tag"},
            {"column": "first_name", "name": "fname"}]}),
    )
    .await;

    // the contact changes address before the relay runs: the tag's event keeps the old one
    db.execute(
        "INSERT INTO contacts (email, first_name) VALUES ('d+1@example.com', 'Dana');
         INSERT INTO contact_tags VALUES (currval('contacts_id_seq'), 7);
         UPDATE contacts SET email = 'later@example.com';",
    )
    .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let request = php.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(
        request["get"],
        json!({"email": "d+1@example.com", "tag": "7", "fname": "Dana"})
    );
}
