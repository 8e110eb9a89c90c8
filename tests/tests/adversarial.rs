//! Hostile data, hostile receivers, a relay with a wrong clock and prepared transactions: each
//! fails at most itself (RELIABILITY.md, "One poison fails only itself").

use pg_webhooks_tests::{wait_for, OwnCluster, Receiver, Relay, Reply, TestDb};
use std::time::Duration;

/// What a numeric, a bigint past 2^53 and text outside the Basic Multilingual Plane look like
/// in PostgreSQL's jsonb text: they must arrive exactly so.
const EXACT_ID: &str = "123456789012345678901234567890.000000000000000001";
const EXACT_AMOUNT: &str = "0.1000000000000000055511151231257827";
const EXACT_BIG: &str = "9007199254740993";

fn body_text(request: &pg_webhooks_tests::Received) -> String {
    String::from_utf8(request.body.to_vec()).expect("a UTF-8 body")
}

#[tokio::test]
async fn values_no_float_holds_arrive_as_postgresql_wrote_them_in_json_and_form() {
    let db = TestDb::create("exact_values").await;
    db.execute(
        "CREATE TABLE ledger (id numeric PRIMARY KEY, amount numeric, big bigint, note text,
                              tree jsonb);
         SELECT webhooks.track('ledger', entity => 'entry');",
    )
    .await;
    let json = Receiver::start().await;
    let form = Receiver::start().await;
    db.create_webhook("entry.*", &json.url("/json")).await;
    let form_hook = db.create_webhook("entry.*", &form.url("/form")).await;
    db.execute(&format!(
        "SELECT webhooks.configure({form_hook}, '{{\"format\": \"form\"}}')"
    ))
    .await;
    let _relay = Relay::start(&db, "exact", &["--retry-schedule", "0s,1h"]).await;

    db.execute(&format!(
        "INSERT INTO ledger VALUES ({EXACT_ID}, {EXACT_AMOUNT}, {EXACT_BIG}, 'é😀\u{2028}', NULL);
         INSERT INTO ledger VALUES (2, 1, 1, 'deep',
             (repeat('[', 3000) || '\"bottom\"' || repeat(']', 3000))::jsonb);"
    ))
    .await;

    let received = json.wait_for_requests(2, Duration::from_secs(10)).await;
    let expected_rows: Vec<String> = db
        .query("SELECT (payload -> 'new')::text FROM webhooks.events ORDER BY id")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (request, row) in json.received_in_event_order().iter().zip(&expected_rows) {
        let body = body_text(request);
        assert!(body.contains(row.as_str()), "{row} not in {body}");
    }
    assert_eq!(received.len(), 2);
    let first = body_text(&json.received_in_event_order()[0]);
    for exact in [EXACT_ID, EXACT_AMOUNT, EXACT_BIG, "é😀\u{2028}"] {
        assert!(first.contains(exact), "{exact} not in {first}");
    }
    assert!(
        first.contains(&format!("\"key\": {{\"id\": {EXACT_ID}}}")),
        "{first}"
    );

    // the form request reads the row: its digits stay digits
    let posted = form.wait_for_requests(1, Duration::from_secs(10)).await;
    let form_body = body_text(&posted[0]);
    for field in [
        format!("fields%5Bid%5D={EXACT_ID}"),
        format!("fields%5Bamount%5D={EXACT_AMOUNT}"),
        format!("fields%5Bbig%5D={EXACT_BIG}"),
        format!("profile={EXACT_ID}"),
    ] {
        assert!(form_body.contains(&field), "{field} not in {form_body}");
    }
    // ... and a row nested deeper than it can read fails only its own delivery, at once
    let parked = wait_for(
        "the deep row's form delivery to be parked",
        Duration::from_secs(10),
        || async {
            let rows = db
                .query(&format!(
                    "SELECT attempts, last_error FROM webhooks.delivery_status
                 WHERE webhook_id = {form_hook} AND state = 'failed'"
                ))
                .await;
            rows.first()
                .map(|row| (row.get::<_, i32>(0), row.get::<_, Option<String>>(1)))
        },
    )
    .await;
    assert_eq!(parked, (1, Some("render".to_owned())));
    assert_eq!(form.count(), 1);
}

#[tokio::test]
async fn a_receiver_answering_nul_bytes_is_recorded_and_costs_other_webhooks_nothing() {
    let db = TestDb::create("nul_answer").await;
    let hostile = Receiver::answering(|_, _| Reply::status(500).with_body("bad\0answer\0")).await;
    let fine = Receiver::start().await;
    let hostile_hook = db.create_webhook("signal.*", &hostile.url("/")).await;
    let fine_hook = db.create_webhook("signal.*", &fine.url("/")).await;
    let _relay = Relay::start(&db, "nul", &["--retry-schedule", "0s,1h"]).await;

    db.execute(
        "SELECT webhooks.emit('signal.tick', jsonb_build_object('n', g)) FROM generate_series(1, 20) g",
    )
    .await;

    // every attempt of both webhooks is recorded: one batch does not fail them all
    wait_for(
        "20 recorded attempts of each webhook",
        Duration::from_secs(15),
        || async {
            let counts: (i64, i64) = {
                let row = &db
                    .query(&format!(
                        "SELECT count(*) FILTER (WHERE webhook_id = {hostile_hook}),
                            count(*) FILTER (WHERE webhook_id = {fine_hook})
                     FROM webhooks.delivery_log"
                    ))
                    .await[0];
                (row.get(0), row.get(1))
            };
            (counts == (20, 20)).then_some(())
        },
    )
    .await;
    let responses: Vec<Option<String>> = db
        .query(&format!(
            "SELECT DISTINCT response FROM webhooks.delivery_log WHERE webhook_id = {hostile_hook}"
        ))
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(responses, [Some("bad\u{FFFD}answer\u{FFFD}".to_owned())]);
    assert_eq!(db.deliveries_in("delivered").await, 20);
    // and the innocent webhook got each event once
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fine.count(), 20);
}

/// libfaketime from Debian's faketime package (scripts/lib/deps.sh installs it).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test]
async fn a_relay_whose_clock_is_two_days_behind_moves_neither_retries_nor_disabling() {
    let db = TestDb::create("skewed_clock").await;
    let failing = Receiver::answering(|_, _| Reply::status(500)).await;
    let hook = db.create_webhook("signal.*", &failing.url("/")).await;
    // one failure disables once the failures span a day: a relay that dated them two days
    // back would disable at once, and would date the retry due long ago
    db.execute("UPDATE webhooks.settings SET disable_after_failures = 1, disable_after = '1 day'")
        .await;
    let _relay = Relay::start_with_env(
        &db.conninfo(),
        "skewed",
        &["--retry-schedule", "0s,10m"],
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "-2d"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
    .await;

    db.execute("SELECT webhooks.emit('signal.tick', '{}')")
        .await;
    let sent = failing.wait_for_requests(1, Duration::from_secs(10)).await;
    // the relay's clock really is off: it signs with its own time
    let signed_at: i64 = sent[0]
        .header("webhook-timestamp")
        .parse()
        .expect("a timestamp");
    let now = db
        .value::<f64>("SELECT extract(epoch FROM now())::float8")
        .await as i64;
    assert!(
        (now - signed_at - 2 * 86_400).abs() < 120,
        "signed {signed_at}, now {now}"
    );

    let (due_in_seconds, status): (f64, String) = wait_for(
        "the failed attempt to be recorded",
        Duration::from_secs(10),
        || async {
            let rows = db
                .query(&format!(
                    "SELECT extract(epoch FROM d.next_attempt_at - now())::float8, w.status
                     FROM webhooks.delivery_status d JOIN webhooks.webhooks w ON w.id = d.webhook_id
                     WHERE d.webhook_id = {hook} AND d.state = 'pending' AND d.attempts = 1"
                ))
                .await;
            rows.first().map(|row| (row.get(0), row.get(1)))
        },
    )
    .await;
    assert!(
        (590.0..=600.0).contains(&due_in_seconds),
        "due in {due_in_seconds} s"
    );
    assert_eq!(status, "active");
    let failing_for: f64 = db
        .value(&format!(
            "SELECT extract(epoch FROM now() - failing_since)::float8 FROM webhooks.webhooks WHERE id = {hook}"
        ))
        .await;
    assert!(
        (0.0..60.0).contains(&failing_for),
        "failing for {failing_for} s"
    );
    assert_eq!(failing.count(), 1);
}

#[tokio::test]
async fn prepared_transactions_commit_tracked_writes_and_emits_and_keep_their_day_from_retention() {
    let cluster = OwnCluster::start("two_phase");
    {
        let admin = TestDb::create_on(&cluster.conninfo(), "two_phase_setup").await;
        admin
            .execute("ALTER SYSTEM SET max_prepared_transactions = 4")
            .await;
    }
    cluster.restart("fast");
    let db = TestDb::create_on(&cluster.conninfo(), "two_phase").await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text);
         SELECT webhooks.track('profiles', entity => 'profile');",
    )
    .await;
    let receiver = Receiver::start().await;
    db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start_with_conninfo(
        &db.conninfo(),
        "idle",
        &["--poll-interval", "300ms", "--idle-after", "50ms"],
    )
    .await;
    db.wait_for_an_idle_relay().await;

    // and one more event the prepared transaction writes into a day past retention: the day
    // is kept while the prepared transaction can still commit into it
    db.execute(
        "SELECT webhooks._create_partition(parent, (now() AT TIME ZONE 'UTC')::date - 10)
         FROM unnest(ARRAY['events', 'deliveries', 'attempts']) parent",
    )
    .await;
    db.execute(
        "BEGIN;
         INSERT INTO profiles (email) VALUES ('two-phase@example.com');
         SELECT webhooks.emit('order.placed', '{\"order\": 7}');
         INSERT INTO webhooks.events (created_at, event, payload)
         VALUES (now() - interval '10 days', 'order.late', '{}');
         PREPARE TRANSACTION 'pg_webhooks_two_phase';",
    )
    .await;
    let kept: Option<String> = db
        .value("SELECT string_agg(action, ', ') FROM webhooks.maintain() WHERE action LIKE 'kept%'")
        .await;
    assert_eq!(
        kept.as_deref(),
        Some("kept (locked, tried again next time)")
    );
    assert_eq!(receiver.count(), 0, "nothing before the commit");
    db.execute("COMMIT PREPARED 'pg_webhooks_two_phase'").await;

    let received = receiver.wait_for_requests(3, Duration::from_secs(10)).await;
    let mut types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["order.late", "order.placed", "profile.created"]);
}

mod random_documents {
    //! Random JSON documents and random row values through capture or emit(), fan-out, claim,
    //! render and ack: each arrives exactly as PostgreSQL holds it, or is parked visibly.

    use super::body_text;
    use pg_webhooks_tests::{wait_for, Receiver, Relay, TestDb};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashMap;
    use std::time::Duration;

    /// JSON text: numbers of any size and precision, strings of any character but NUL (which
    /// jsonb refuses), nesting a few levels deep and now and then a hundred and fifty.
    fn json_text() -> impl Strategy<Value = String> {
        let number = (
            proptest::option::of(Just("-")),
            "[1-9][0-9]{0,39}|0",
            proptest::option::of("[0-9]{1,40}"),
            proptest::option::of(-300i32..300),
        )
            .prop_map(|(sign, int, frac, exp)| {
                let mut text = format!("{}{int}", sign.unwrap_or_default());
                if let Some(frac) = frac {
                    text.push('.');
                    text.push_str(&frac);
                }
                if let Some(exp) = exp {
                    text.push_str(&format!("e{exp}"));
                }
                text
            });
        let string = "[^\u{0}]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string());
        let leaf = prop_oneof![
            number,
            string.clone(),
            Just("true".to_owned()),
            Just("null".to_owned())
        ];
        let tree = leaf.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                proptest::collection::vec(("[^\u{0}]{0,8}", inner), 0..4).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(key, value)| format!("{}: {value}", serde_json::Value::String(key)))
                        .collect();
                    format!("{{{}}}", members.join(", "))
                }),
            ]
        });
        prop_oneof![
            9 => tree,
            1 => Just(format!("{}1{}", "[".repeat(150), "]".repeat(150))),
        ]
    }

    /// The same documents on every run (a fixed seed), so a failure repeats.
    fn samples(count: usize) -> Vec<String> {
        let mut runner = TestRunner::deterministic();
        let strategy = json_text();
        (0..count)
            .map(|_| strategy.new_tree(&mut runner).expect("a sample").current())
            .collect()
    }

    #[tokio::test]
    async fn random_documents_and_rows_arrive_exactly_or_are_parked_visibly() {
        let db = TestDb::create("random_documents").await;
        db.execute(
            "CREATE TABLE randoms (id bigserial PRIMARY KEY, doc jsonb, amount numeric, note text);
             SELECT webhooks.track('randoms', entity => 'random');",
        )
        .await;
        let json = Receiver::start().await;
        let form = Receiver::start().await;
        db.create_webhook("*", &json.url("/json")).await;
        let form_hook = db.create_webhook("*", &form.url("/form")).await;
        db.execute(&format!(
            "SELECT webhooks.configure({form_hook}, '{{\"format\": \"form\"}}')"
        ))
        .await;
        let _relay = Relay::start(&db, "random", &["--retry-schedule", "0s,1h"]).await;

        let documents = samples(150);
        let writer = db.connect().await;
        for (n, document) in documents.iter().enumerate() {
            let payload = format!("{{\"doc\": {document}}}");
            writer
                .execute(
                    "SELECT webhooks.emit('random.doc', $1::text::jsonb)",
                    &[&payload],
                )
                .await
                .unwrap_or_else(|error| panic!("emit {payload}: {error:?}"));
            let amount = format!("{}.{}", n * 7919, "3".repeat(n % 45));
            writer
                .execute(
                    "INSERT INTO randoms (doc, amount, note) VALUES ($1::text::jsonb, $2::text::numeric, $3)",
                    &[document, &amount, &document],
                )
                .await
                .unwrap_or_else(|error| panic!("insert {document}: {error:?}"));
        }
        let events = documents.len() * 2;
        json.wait_for_requests(events, Duration::from_secs(60))
            .await;

        // json: the data is PostgreSQL's text of the event, byte for byte
        let expected: HashMap<String, String> = db
            .query(
                "SELECT 'evt_' || id, CASE WHEN source IS NULL THEN payload::text
                                           ELSE (payload -> 'new')::text END
                 FROM webhooks.events WHERE event IN ('random.doc', 'random.created')",
            )
            .await
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(expected.len(), events);
        for request in json.received() {
            let body = body_text(&request);
            let text = &expected[request.header("webhook-id")];
            assert!(body.contains(text.as_str()), "{text} not in {body}");
        }
        // form: every delivery is delivered or parked with its reason, none left waiting
        let states: Vec<(String, Option<String>, i64)> = wait_for(
            "every form delivery to be decided",
            Duration::from_secs(30),
            || async {
                let rows = db
                    .query(&format!(
                        "SELECT state, last_error, count(*) FROM webhooks.delivery_status
                         WHERE webhook_id = {form_hook} GROUP BY 1, 2 ORDER BY 1, 2"
                    ))
                    .await;
                let states: Vec<(String, Option<String>, i64)> = rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                let decided: i64 = states
                    .iter()
                    .filter(|(state, ..)| state == "delivered" || state == "failed")
                    .map(|(.., n)| n)
                    .sum();
                (decided == i64::try_from(events).unwrap_or(i64::MAX)).then_some(states)
            },
        )
        .await;
        for (state, error, _) in &states {
            assert!(
                state == "delivered" || error.as_deref() == Some("render"),
                "{states:?}"
            );
        }
        let delivered: i64 = states
            .iter()
            .filter(|(state, ..)| state == "delivered")
            .map(|(.., n)| n)
            .sum();
        assert_eq!(form.count(), usize::try_from(delivered).unwrap_or_default());
        // parked are exactly the documents nested deeper than a form can read, row and emit
        let deep = documents
            .iter()
            .filter(|document| document.starts_with(&"[".repeat(150)))
            .count();
        assert_eq!(
            delivered,
            i64::try_from(events - 2 * deep).unwrap_or_default()
        );
        println!("random documents: {events} events, form deliveries {states:?}");
    }
}

/// The rows of a large statement outgrow work_mem and are read back from disk: every one is
/// captured, paired with its own old image, and the session survives (a first version of the
/// direct transition-table reader freed such rows twice and crashed the server).
#[tokio::test]
async fn a_statement_whose_rows_spill_out_of_work_mem_is_captured_whole() {
    let db = TestDb::create("spilled_rows").await;
    db.execute(
        "CREATE TABLE wide (id int PRIMARY KEY, note text, tags int[]);
         SELECT webhooks.track('wide', entity => 'wide');
         SET work_mem = '64kB';
         INSERT INTO wide SELECT g, repeat('n', 50), ARRAY[g, g] FROM generate_series(1, 20000) g;
         UPDATE wide SET note = note;
         UPDATE wide SET note = note || '!';
         DELETE FROM wide;",
    )
    .await;
    let counts: Vec<(String, i64)> = db
        .query("SELECT event, count(*) FROM webhooks.events GROUP BY event ORDER BY event")
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let expected =
        ["wide.created", "wide.deleted", "wide.updated"].map(|event| (event.to_owned(), 20_000));
    assert_eq!(counts, expected);
    let mispaired: i64 = db
        .value(
            "SELECT count(*) FROM webhooks.events
             WHERE event = 'wide.updated'
               AND (payload #> '{old,id}' IS DISTINCT FROM payload #> '{new,id}'
                    OR payload -> 'changed' <> '[\"note\"]')",
        )
        .await;
    assert_eq!(mispaired, 0);
}
