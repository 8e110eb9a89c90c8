//! A webhook's life beyond delivery: ownership verification, test sends, and what its owner
//! hears when the system switches it off.

use futures_util::StreamExt;
use pg_webhooks_tests::{verify_with_official_library, wait_for, Receiver, Relay, Reply, TestDb};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

const WAIT: Duration = Duration::from_secs(15);

/// A receiver that serves `file` (path and content, set once the webhook exists) to GET and
/// answers 200 to everything else.
struct FileServer {
    receiver: Receiver,
    file: Arc<Mutex<Option<(String, String)>>>,
}

impl FileServer {
    async fn start() -> FileServer {
        let file: Arc<Mutex<Option<(String, String)>>> = Arc::default();
        let served = file.clone();
        let receiver = Receiver::answering(move |request, _| {
            if request.method != "GET" {
                return Reply::ok();
            }
            match &*served.lock().expect("file lock") {
                Some((path, content)) if *path == request.path => {
                    Reply::ok().with_body(format!("{content}\n"))
                }
                _ => Reply::status(404).with_body("not found"),
            }
        })
        .await;
        FileServer { receiver, file }
    }

    fn serve(&self, path: String, content: String) {
        *self.file.lock().expect("file lock") = Some((path, content));
    }

    fn posts(&self) -> usize {
        self.receiver
            .received()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    }
}

/// A database whose new webhooks must be verified, as by default.
async fn verifying_db(name: &str) -> TestDb {
    let db = TestDb::create(name).await;
    db.execute("UPDATE webhooks.settings SET require_verification = true")
        .await;
    db
}

async fn verification_status(db: &TestDb, hook: i64) -> (String, Option<String>, bool) {
    let row = db
        .query(&format!(
            "SELECT verification_status, verification_reason, sending FROM webhooks.get({hook})"
        ))
        .await;
    (row[0].get(0), row[0].get(1), row[0].get(2))
}

#[tokio::test]
async fn a_file_served_beside_the_callback_verifies_the_webhook_and_it_then_delivers() {
    let db = verifying_db("verify_beside").await;
    let server = FileServer::start().await;
    let hook = db
        .create_webhook("*", &server.receiver.url("/dir/hook.php"))
        .await;
    let (file, content) = db.verification_file(hook).await;
    server.serve(format!("/dir/{file}"), content);
    let _relay = Relay::start(&db, "r1", &[]).await;

    let (success, result, status, _) = db.run_probe(&format!("webhooks.verify({hook})")).await;

    assert!(success, "{result}");
    assert_eq!(status, Some(200));
    assert_eq!(
        result,
        format!("found at {}", server.receiver.url(&format!("/dir/{file}")))
    );
    assert_eq!(verification_status(&db, hook).await.0, "verified");
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;
    wait_for("the event delivered", WAIT, || async {
        (server.posts() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_file_may_be_served_at_the_web_root_instead() {
    let db = verifying_db("verify_root").await;
    let server = FileServer::start().await;
    let hook = db
        .create_webhook("*", &server.receiver.url("/dir/hook.php"))
        .await;
    let (file, content) = db.verification_file(hook).await;
    server.serve(format!("/{file}"), content);
    let _relay = Relay::start(&db, "r1", &[]).await;

    let (success, result, _, _) = db.run_probe(&format!("webhooks.verify({hook})")).await;

    assert!(success, "{result}");
    let paths: Vec<_> = server
        .receiver
        .received()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, [format!("/dir/{file}"), format!("/{file}")]);
}

#[tokio::test]
async fn without_the_file_verification_fails_and_nothing_is_delivered() {
    let db = verifying_db("verify_missing").await;
    let server = FileServer::start().await;
    let hook = db
        .create_webhook("*", &server.receiver.url("/dir/hook.php"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    let (success, result, status, _) = db.run_probe(&format!("webhooks.verify({hook})")).await;

    assert!(!success);
    assert_eq!(status, Some(404));
    assert!(
        result.starts_with("verification file not found: ")
            && result.matches("HTTP 404").count() == 2,
        "{result}"
    );
    let (state, reason, sending) = verification_status(&db, hook).await;
    assert_eq!((state.as_str(), sending), ("failed", false));
    assert_eq!(reason.as_deref(), Some(result.as_str()));
    tokio::time::sleep(Duration::from_secs(1)).await; // time enough for a wrong delivery
    assert_eq!(server.posts(), 0);
    assert_eq!(
        db.value::<i64>("SELECT count(*) FROM webhooks.delivery_status")
            .await,
        0
    );
}

#[tokio::test]
async fn a_file_with_the_wrong_content_does_not_verify() {
    let db = verifying_db("verify_wrong").await;
    let server = FileServer::start().await;
    let hook = db
        .create_webhook("*", &server.receiver.url("/hook.php"))
        .await;
    let (file, _) = db.verification_file(hook).await;
    server.serve(format!("/{file}"), "somebody else's token".into());
    let _relay = Relay::start(&db, "r1", &[]).await;

    let (success, result, status, response) =
        db.run_probe(&format!("webhooks.verify({hook})")).await;

    assert!(!success);
    assert_eq!(status, Some(200));
    assert!(result.ends_with("the content does not match"), "{result}");
    assert_eq!(response.as_deref(), Some("somebody else's token\n"));
    assert_eq!(verification_status(&db, hook).await.0, "failed");
}

#[tokio::test]
async fn changing_the_url_drops_the_verification() {
    let db = verifying_db("verify_url_change").await;
    let server = FileServer::start().await;
    let hook = db.create_webhook("*", &server.receiver.url("/a")).await;
    let (file, content) = db.verification_file(hook).await;
    server.serve(format!("/{file}"), content);
    let _relay = Relay::start(&db, "r1", &[]).await;
    assert!(db.run_probe(&format!("webhooks.verify({hook})")).await.0);

    db.execute(&format!(
        "SELECT webhooks.update({hook}, url => '{}')",
        server.receiver.url("/b")
    ))
    .await;

    let (state, reason, sending) = verification_status(&db, hook).await;
    assert_eq!((state.as_str(), sending), ("unverified", false));
    assert!(reason.is_some_and(|r| r.starts_with("the URL changed from ")));
}

#[tokio::test]
async fn a_test_send_arrives_signed_with_a_sample_for_the_event_and_its_answer_is_kept() {
    let db = TestDb::create("test_send").await;
    let receiver = Receiver::answering(|_, _| Reply::ok().with_body("thanks")).await;
    let hook = db
        .create_webhook("profile.updated", &receiver.url("/hook"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let (success, result, status, response) = db.run_probe(&format!("webhooks.test({hook})")).await;

    assert!(success);
    assert_eq!(
        (result.as_str(), status, response.as_deref()),
        ("HTTP 200", Some(200), Some("thanks"))
    );
    let request = receiver.received().remove(0);
    assert!(request.header("webhook-id").starts_with("test_"));
    let body = request.json();
    assert_eq!(body["type"], "profile.updated");
    assert_eq!(body["data"]["changed"], serde_json::json!(["country"]));
    let secret = db.secret(hook).await;
    assert_eq!(verify_with_official_library(&secret, &[request]), ["ok"]);
}

#[tokio::test]
async fn a_test_send_reports_a_failing_receiver_without_retrying() {
    let db = TestDb::create("test_send_fails").await;
    let receiver = Receiver::answering(|_, _| Reply::status(500).with_body("boom")).await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    let (success, result, status, response) = db
        .run_probe(&format!("webhooks.test({hook}, '{{\"hello\": 1}}')"))
        .await;

    assert!(!success);
    assert_eq!(
        (result.as_str(), status, response.as_deref()),
        ("HTTP 500", Some(500), Some("boom"))
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // past the first retry of the schedule
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        receiver.received()[0].json()["data"],
        serde_json::json!({"hello": 1})
    );
}

#[tokio::test]
async fn a_test_send_reaches_a_deactivated_webhook() {
    let db = TestDb::create("test_send_inactive").await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    db.execute(&format!("SELECT webhooks.deactivate({hook})"))
        .await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    assert!(db.run_probe(&format!("webhooks.test({hook})")).await.0);
}

#[tokio::test]
async fn a_disabled_webhook_is_announced_to_an_owner_url_and_on_a_notify_channel() {
    let db = TestDb::create("disabled_announced").await;
    let gone = Receiver::answering(|_, _| Reply::status(410)).await;
    let owner = Receiver::start().await;
    let hook = db.create_webhook("job.done", &gone.url("/")).await;
    db.create_webhook("webhook.disabled", &owner.url("/ops"))
        .await;
    let (listener, mut connection) = tokio_postgres::connect(&db.conninfo(), NoTls)
        .await
        .expect("connect");
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let (notes, mut noted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(note) = message {
                let _ = notes.send(note.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN webhooks_notifications")
        .await
        .expect("listen");
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    let announced = owner.wait_for_requests(1, WAIT).await.remove(0).json();
    assert_eq!(announced["type"], "webhook.disabled");
    assert_eq!(announced["data"]["webhook_id"], hook);
    assert_eq!(announced["data"]["url"], gone.url("/"));
    let note: serde_json::Value = serde_json::from_str(
        &tokio::time::timeout(WAIT, noted.recv())
            .await
            .expect("a notification in time")
            .expect("a notification"),
    )
    .expect("JSON payload");
    assert_eq!(note["webhook_id"], hook);
    assert_eq!(note["kind"], "disabled");
}

/// Mailingwork's buffer, end to end with a 3-second window: after the system switches a webhook
/// off, the events of the first window are kept and replayed on activation; a later one is not.
#[tokio::test]
async fn a_disabled_webhook_replays_the_first_window_of_events_and_not_the_later_ones() {
    let db = TestDb::create("first_window_buffer").await;
    db.execute(
        "INSERT INTO webhooks.settings (replay_window) VALUES ('3 seconds')
         ON CONFLICT (singleton) DO UPDATE SET replay_window = excluded.replay_window",
    )
    .await;
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answer_gone = gone.clone();
    let receiver = Receiver::answering(move |_, _| {
        if answer_gone.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(410)
        } else {
            Reply::ok()
        }
    })
    .await;
    let hook = db.create_webhook("job.*", &receiver.url("/")).await;
    let _relay = Relay::start(&db, "r1", &[]).await;

    db.execute("SELECT webhooks.emit('job.first', '{}')").await;
    let status_query = format!("SELECT status FROM webhooks.webhooks WHERE id = {hook}");
    wait_for("the 410 to disable the webhook", WAIT, || async {
        (db.value::<String>(&status_query).await == "disabled").then_some(())
    })
    .await;
    db.execute("SELECT webhooks.emit('job.within_window', '{}')")
        .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    db.execute("SELECT webhooks.emit('job.after_window', '{}')")
        .await;
    let late = "SELECT count(*) FROM webhooks.delivery_status
                WHERE event = 'job.after_window' AND state = 'dropped'
                  AND last_error = 'after the replay window of an automatic deactivation'";
    wait_for("the late event to be dropped visibly", WAIT, || async {
        (db.value::<i64>(late).await == 1).then_some(())
    })
    .await;

    gone.store(false, std::sync::atomic::Ordering::SeqCst);
    let replayed: i64 = db
        .value(&format!(
            "SELECT webhooks.activate({hook}, replay_events => true)"
        ))
        .await;
    assert_eq!(replayed, 1);
    receiver.wait_for_requests(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // time for anything else to arrive
    let types: Vec<String> = receiver
        .received()
        .iter()
        .map(|request| {
            request.json()["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["job.first", "job.within_window"]);
}
