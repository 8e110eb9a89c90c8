//! Committed events arrive as signed JSON POSTs; nothing else arrives.

use pg_webhooks_tests::{wait_for, Receiver, Relay, Reply, TestDb};
use std::time::Duration;

const PROFILES: &str = "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text, country text);
                        SELECT webhooks.track('profiles', entity => 'profile');";

fn event_number(webhook_id: &str) -> i64 {
    webhook_id
        .trim_start_matches("evt_")
        .parse()
        .unwrap_or_default()
}

#[tokio::test]
async fn committed_row_changes_arrive_as_json_posts() {
    let db = TestDb::create("row_changes").await;
    db.execute(PROFILES).await;
    let receiver = Receiver::start().await;
    db.create_webhook("profile.*", &receiver.url("/hook.php"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "INSERT INTO profiles (email, country) VALUES ('ann@example.com', 'NL');
                UPDATE profiles SET country = 'DE';
                DELETE FROM profiles;",
    )
    .await;

    receiver.wait_for_requests(3, Duration::from_secs(10)).await;
    // deliveries run concurrently, so arrival order is not event order: sort by event id
    let mut received = receiver.received();
    received.sort_by_key(|r| event_number(r.header("webhook-id")));
    let types: Vec<_> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        types,
        ["profile.created", "profile.updated", "profile.deleted"]
    );
    let updated = received[1].json();
    assert_eq!(received[1].method, "POST");
    assert_eq!(received[1].path, "/hook.php");
    assert_eq!(received[1].header("content-type"), "application/json");
    assert_eq!(updated["data"]["table"], "public.profiles");
    assert_eq!(updated["data"]["key"]["id"], 1);
    assert_eq!(updated["data"]["old"]["country"], "NL");
    assert_eq!(updated["data"]["new"]["country"], "DE");
    assert_eq!(updated["data"]["changed"], serde_json::json!(["country"]));
    assert!(
        updated["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{updated}"
    );
}

#[tokio::test]
async fn emitted_application_events_arrive_with_their_payload() {
    let db = TestDb::create("emitted").await;
    let receiver = Receiver::start().await;
    db.create_webhook("email.*", &receiver.url("/events")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('email.opened', '{\"recipient\": \"ann@example.com\", \"ip\": \"192.0.2.1\"}')").await;

    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    let body = receiver.received()[0].json();
    assert_eq!(body["type"], "email.opened");
    assert_eq!(
        body["data"],
        serde_json::json!({"recipient": "ann@example.com", "ip": "192.0.2.1"})
    );
}

#[tokio::test]
async fn rolled_back_changes_are_never_sent() {
    let db = TestDb::create("rolled_back").await;
    db.execute(PROFILES).await;
    let receiver = Receiver::start().await;
    db.create_webhook("profile.created", &receiver.url("/"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute(
        "BEGIN; INSERT INTO profiles (email) VALUES ('never@example.com'); ROLLBACK;
                INSERT INTO profiles (email) VALUES ('kept@example.com');",
    )
    .await;

    receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].json()["data"]["new"]["email"],
        "kept@example.com"
    );
}

#[tokio::test]
async fn each_event_reaches_every_matching_webhook_and_no_other() {
    let db = TestDb::create("fan_out").await;
    db.execute(PROFILES).await;
    let (created, all, deleted) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    db.create_webhook("profile.created", &created.url("/"))
        .await;
    db.create_webhook("*", &all.url("/")).await;
    db.create_webhook("profile.deleted", &deleted.url("/"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("INSERT INTO profiles (email) VALUES ('a@example.com'), ('b@example.com')")
        .await;

    wait_for("both receivers", Duration::from_secs(10), || async {
        (created.count() == 2 && all.count() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deleted.count(), 0);
}

#[tokio::test]
async fn an_event_whose_notification_is_lost_is_delivered_by_the_poll() {
    let db = TestDb::create("lost_notify").await;
    let receiver = Receiver::start().await;
    db.create_webhook("profile.created", &receiver.url("/"))
        .await;
    let _relay = Relay::start(
        &db,
        "r1",
        &["--poll-interval", "1s", "--idle-after", "50ms"],
    )
    .await;
    db.wait_for_an_idle_relay().await;

    // written behind the capture trigger's back: no NOTIFY is sent
    db.execute("INSERT INTO webhooks.events (event, payload) VALUES ('profile.created', '{}')")
        .await;

    receiver.wait_for_requests(1, Duration::from_secs(5)).await;
}

/// Whether a NOTIFY on webhooks_wakeup arrives within `limit`.
async fn woken(
    notifications: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
    limit: Duration,
) -> bool {
    let wakeup = async {
        while let Some(message) = notifications.recv().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                if n.channel() == "webhooks_wakeup" {
                    return true;
                }
            }
        }
        false
    };
    tokio::time::timeout(limit, wakeup).await.unwrap_or(false)
}

#[tokio::test]
async fn writers_notify_an_idle_relay_and_leave_a_busy_one_alone() {
    let db = TestDb::create("wakeup").await;
    db.execute(PROFILES).await;
    let (listener, mut notifications) = db.connect_with_messages().await;
    listener
        .batch_execute("LISTEN webhooks_wakeup")
        .await
        .expect("listen");
    // one writer connection throughout: what its backend keeps must follow the relay's state
    let writer = db.connect().await;
    let write = |sql: &'static str| {
        let writer = &writer;
        async move { writer.batch_execute(sql).await.expect(sql) }
    };
    write("INSERT INTO profiles (email) VALUES ('first@example.com')").await;

    db.execute("SELECT webhooks.relay_idle('r1', true)").await;
    write("INSERT INTO profiles (email) VALUES ('ann@example.com')").await;
    assert!(woken(&mut notifications, Duration::from_secs(5)).await);
    // an update that changes nothing is no event, and wakes no one
    write("UPDATE profiles SET email = email").await;
    assert!(!woken(&mut notifications, Duration::from_millis(500)).await);

    db.execute("SELECT webhooks.relay_idle('r1', false)").await;
    write("INSERT INTO profiles (email) VALUES ('bob@example.com')").await;
    write("UPDATE profiles SET country = 'NL'").await;
    assert!(!woken(&mut notifications, Duration::from_millis(500)).await);
}

#[tokio::test]
async fn a_delivery_is_recorded_in_the_attempt_log() {
    let db = TestDb::create("attempt_log").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("order.paid", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('order.paid', '{\"order\": 7}')")
        .await;

    let row = wait_for("the logged attempt", Duration::from_secs(10), || async {
        db.query(&format!("SELECT outcome, status, duration_ms FROM webhooks.delivery_log WHERE webhook_id = {hook}"))
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(row.get::<_, String>(0), "delivered");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(200));
    assert!(row.get::<_, i32>(2) >= 0);
    assert_eq!(db.deliveries_in("delivered").await, 1);
}

#[tokio::test]
async fn the_webhooks_of_one_receiver_reuse_its_connections() {
    const WEBHOOKS: usize = 40; // more than --max-in-flight-per-webhook (16)
    let db = TestDb::create("shared_connections").await;
    // slow enough that every webhook's request is in flight at once
    let receiver = Receiver::answering(|_, _| Reply::ok().after(Duration::from_millis(50))).await;
    for i in 0..WEBHOOKS {
        db.create_webhook("*", &receiver.url(&format!("/hook{i}")))
            .await;
    }
    let _relay = Relay::start(&db, "r1", &[]).await;

    for round in 1..=3 {
        db.execute("SELECT webhooks.emit('job.done', '{}')").await;
        wait_for("every answer read", Duration::from_secs(15), || async {
            let delivered = db.deliveries_in("delivered").await;
            (delivered == (round * WEBHOOKS) as i64).then_some(())
        })
        .await;
    }
    // each round opens new connections for all but those kept idle from the round before
    assert!(
        receiver.connections() <= WEBHOOKS + 4,
        "{} connections for {} requests",
        receiver.connections(),
        receiver.count()
    );
}
