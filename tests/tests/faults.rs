//! Faults: the relay killed under load, PostgreSQL restarted under it, receivers that break in
//! ways the outcome tests do not cover. Nothing committed is lost; each test prints its counts
//! (RELIABILITY.md quotes them).

use pg_webhooks_tests::{wait_for, OwnCluster, Receiver, Relay, TestDb};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The `n` of each request's `data`, with how often it arrived.
fn arrivals(receiver: &Receiver) -> HashMap<i64, usize> {
    let mut seen = HashMap::new();
    for request in receiver.received() {
        if let Some(n) = request.json()["data"]["n"].as_i64() {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

/// PG_WEBHOOKS_SOAK=1 runs the long variants (RELIABILITY.md).
fn soak() -> bool {
    std::env::var_os("PG_WEBHOOKS_SOAK").is_some()
}

/// Options for relays that are killed: leases short enough to be taken over quickly.
const CRASHY: &[&str] = &["--lease", "2s", "--request-timeout", "1s"];
const MAX_IN_FLIGHT: usize = 256;

#[tokio::test]
async fn ten_sigkills_under_load_lose_no_event_and_duplicate_only_what_was_in_flight() {
    let db = TestDb::create("sigkill_load").await;
    let receiver = Receiver::start().await;
    db.create_webhook("load.*", &receiver.url("/")).await;
    let writer = db.connect().await;
    let (batches, per_batch) = if soak() {
        (1000i64, 100i64)
    } else {
        (100, 100)
    };
    let writing = tokio::spawn(async move {
        for batch in 0..batches {
            writer
                .execute(
                    "SELECT count(webhooks.emit('load.tick', jsonb_build_object('n', g)))
                     FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) g",
                    &[&(batch * per_batch), &per_batch],
                )
                .await
                .expect("emit a batch");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let kills = if soak() { 100 } else { 10 };
    for round in 0..kills {
        let relay = Relay::start(&db, &format!("crash{round}"), CRASHY).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        relay.kill().await;
    }
    writing.await.expect("the writer finished");
    let _survivor = Relay::start(&db, "survivor", CRASHY).await;

    let events = (batches * per_batch) as usize;
    let seen = wait_for(
        "every event delivered",
        Duration::from_secs(600),
        || async {
            let seen = arrivals(&receiver);
            (seen.len() == events).then_some(seen)
        },
    )
    .await;
    let received: usize = seen.values().sum();
    let duplicates = received - events;
    eprintln!(
        "SIGKILL under load: {events} events committed, {kills} kills, {received} requests \
         received, {events} distinct, {duplicates} duplicates"
    );
    assert!(
        duplicates <= kills * MAX_IN_FLIGHT,
        "{duplicates} duplicates: more than {kills} kills x {MAX_IN_FLIGHT} in flight"
    );
    wait_for("all acknowledged", Duration::from_secs(30), || async {
        (db.deliveries_in("delivered").await == events as i64).then_some(())
    })
    .await;
}

/// Write events one per transaction until the time `until` holds, reconnecting after errors;
/// returns the `n` of every event whose commit was confirmed, with the time of the confirmation.
async fn write_through_faults(
    conninfo: String,
    until: watch::Receiver<Instant>,
) -> Vec<(i64, Instant)> {
    let mut committed = Vec::new();
    let mut client = None;
    let mut n = 0i64;
    while Instant::now() < *until.borrow() {
        if client.is_none() {
            client = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .ok()
                .map(|(client, connection)| {
                    tokio::spawn(connection);
                    client
                });
        }
        if let Some(c) = &client {
            n += 1;
            match c
                .execute(
                    "SELECT webhooks.emit('db.tick', jsonb_build_object('n', $1::bigint))",
                    &[&n],
                )
                .await
            {
                Ok(_) => committed.push((n, Instant::now())),
                Err(_) => client = None, // unknown outcome: not counted, may still arrive
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    committed
}

/// Restart PostgreSQL under a running relay and writer; every confirmed event arrives, and the
/// first one confirmed after the restart arrives within the poll interval (plus a second).
async fn survives_a_restart(mode: &str) {
    let cluster = OwnCluster::start(&format!("restart_{mode}"));
    let db = TestDb::create_on(&cluster.conninfo(), "restart").await;
    let receiver = Receiver::start().await;
    db.create_webhook("db.*", &receiver.url("/")).await;
    let poll = Duration::from_millis(500);
    let relay = Relay::start(&db, "r1", &["--poll-interval", "500ms"]).await;
    let (until, writer_until) = watch::channel(Instant::now() + Duration::from_secs(120));
    let writing = tokio::spawn(write_through_faults(db.conninfo(), writer_until));

    tokio::time::sleep(Duration::from_secs(2)).await;
    // the writer and the receiver go on while pg_ctl runs, as they would beside a real restart
    tokio::task::block_in_place(|| cluster.restart(mode));
    let back_at = Instant::now();
    // four seconds of writes after the restart, however long it took on a loaded machine
    until.send_replace(back_at + Duration::from_secs(4));
    let committed = writing.await.expect("the writer finished");

    let seen = wait_for("every confirmed event", Duration::from_secs(60), || async {
        let seen = arrivals(&receiver);
        committed
            .iter()
            .all(|(n, _)| seen.contains_key(n))
            .then_some(seen)
    })
    .await;
    let (first_after, confirmed_at) = committed
        .iter()
        .find(|(_, at)| *at > back_at)
        .expect("events were committed after the restart");
    let arrived_at = receiver
        .received()
        .iter()
        .find(|r| r.json()["data"]["n"].as_i64() == Some(*first_after))
        .map(|r| r.at)
        .expect("it arrived");
    let stall = arrived_at.saturating_duration_since(*confirmed_at);
    eprintln!(
        "PostgreSQL restart ({mode}): {} events confirmed, all delivered ({} requests); first \
         event after the restart delivered {stall:?} after its commit",
        committed.len(),
        seen.values().sum::<usize>()
    );
    assert!(
        stall <= poll + Duration::from_secs(1),
        "event {first_after} stalled {stall:?}; the relay logged:\n{}",
        relay.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_by_itself_from_a_fast_restart_of_postgresql() {
    survives_a_restart("fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_recovers_by_itself_from_a_crash_and_recovery_of_postgresql() {
    survives_a_restart("immediate").await;
}

/// A TCP server that hands each connection to `serve`, counting connections.
async fn raw_server<F, Fut>(serve: F) -> (String, Arc<Mutex<usize>>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let url = format!("http://{address}/");
    // the same port on IPv6 loopback too, so the IPv6 forms of loopback would be counted
    let listener_v6 = TcpListener::bind(("::1", address.port()))
        .await
        .expect("bind [::1] on the same port");
    let connections = Arc::new(Mutex::new(0));
    let serve = Arc::new(serve);
    for listener in [listener, listener_v6] {
        let counted = connections.clone();
        let serve = serve.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *counted.lock().expect("count") += 1;
                let serve = serve.clone();
                tokio::spawn(async move { serve(stream).await });
            }
        });
    }
    (url, connections)
}

async fn read_request_head(stream: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
}

/// Close with RST, not FIN: a zero linger resets at once instead of blocking the drop.
fn reset_on_drop(stream: &tokio::net::TcpStream) {
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// One event for a webhook at `url`, sent by a relay that retries once, after 1 s.
async fn one_event_retried_once(db: &TestDb, url: &str) -> Relay {
    db.create_webhook("*", url).await;
    let relay = Relay::start(db, "r1", &["--retry-schedule", "0s,1s"]).await;
    db.execute("SELECT webhooks.emit('job.done', '{}')").await;
    relay
}

async fn wait_for_state(db: &TestDb, state: &str) {
    wait_for(state, Duration::from_secs(20), || async {
        (db.deliveries_in(state).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_connection_reset_before_the_answer_is_retried_on_schedule_then_parked() {
    let db = TestDb::create("reset_before_answer").await;
    let (url, connections) = raw_server(|mut stream| async move {
        read_request_head(&mut stream).await;
        reset_on_drop(&stream);
    })
    .await;
    let _relay = one_event_retried_once(&db, &url).await;

    wait_for_state(&db, "failed").await;
    let outcomes: Vec<_> = db.attempts().await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(_, status, error)| status.is_none() && error.is_some()),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        ["retry", "failed"]
    );
    assert_eq!(*connections.lock().expect("count"), 2);
}

#[tokio::test]
async fn a_connection_reset_in_the_middle_of_the_answer_keeps_its_status() {
    let db = TestDb::create("reset_in_answer").await;
    let (url, _) = raw_server(|mut stream| async move {
        read_request_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
            .await;
        reset_on_drop(&stream);
    })
    .await;
    let _relay = one_event_retried_once(&db, &url).await;

    // the receiver answered 200 before the body broke off: delivered, the break recorded
    wait_for_state(&db, "delivered").await;
    assert_eq!(
        db.attempts().await,
        [("delivered".into(), Some(200), Some("body".into()))]
    );
}

#[tokio::test]
async fn an_endless_response_body_is_cut_off_and_the_status_counts() {
    let db = TestDb::create("endless_body").await;
    let (url, _) = raw_server(|mut stream| async move {
        read_request_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("1000\r\n{}\r\n", "y".repeat(0x1000));
        while stream.write_all(chunk.as_bytes()).await.is_ok() {}
    })
    .await;
    db.create_webhook("*", &url).await;
    let _relay = Relay::start(&db, "r1", &["--request-timeout", "5s"]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    wait_for_state(&db, "delivered").await;
    let row = &db
        .query("SELECT length(response), duration_ms FROM webhooks.delivery_log")
        .await[0];
    let (excerpt, duration_ms): (i32, i32) = (row.get(0), row.get(1));
    assert!(excerpt > 0 && excerpt <= 4096, "excerpt of {excerpt} bytes");
    assert!(
        duration_ms < 5000,
        "reading stopped at the cap, took {duration_ms} ms"
    );
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_retried_then_parked() {
    let db = TestDb::create("no_such_name").await;
    db.create_webhook("*", "http://no-such-host.invalid/hook")
        .await;
    let _relay = Relay::start(&db, "r1", &["--retry-schedule", "0s,1s"]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    wait_for_state(&db, "failed").await;
    assert_eq!(
        db.attempts().await,
        [
            ("retry".into(), None, Some("dns".into())),
            ("failed".into(), None, Some("dns".into()))
        ]
    );
}

#[tokio::test]
async fn every_loopback_address_form_is_refused_without_a_request_and_with_a_logged_reason() {
    let db = TestDb::create("ssrf_forms").await;
    let (url, connections) = raw_server(|_| async {}).await;
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    // the counting listener sees IPv6 loopback too: one connection of the test's own
    let port_number: u16 = port.parse().expect("a port number");
    drop(
        tokio::net::TcpStream::connect(("::1", port_number))
            .await
            .expect("connect to [::1]"),
    );
    wait_for(
        "the listener to count it",
        Duration::from_secs(5),
        || async { (*connections.lock().expect("count") == 1).then_some(()) },
    )
    .await;
    let forms = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://[::]:{port}/"),
        format!("http://[64:ff9b::7f00:1]:{port}/"),
        format!("http://[2002:7f00:1::]:{port}/"),
        format!("http://169.254.169.254:{port}/"),
        format!("http://10.0.0.1:{port}/"),
        format!("http://192.168.1.1:{port}/"),
    ];
    for form in &forms {
        db.create_webhook("*", form).await;
    }
    // credentials in a URL are refused before anything is stored
    let with_credentials = db
        .client
        .execute(
            "SELECT webhooks.create('e2e', '*', $1)",
            &[&format!("http://1:2@[::1]:{port}/")],
        )
        .await;
    assert!(with_credentials.is_err());
    let mut relay = Relay::start(&db, "r1", &["--allow-cidr", "", "--retry-schedule", "0s"]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;

    wait_for("every form refused", Duration::from_secs(20), || async {
        (db.deliveries_in("failed").await == forms.len() as i64).then_some(())
    })
    .await;
    let errors: Vec<Option<String>> = db.attempts().await.into_iter().map(|a| a.2).collect();
    assert!(
        errors
            .iter()
            .all(|e| e.as_deref() == Some("refused_address")),
        "{errors:?}"
    );
    assert_eq!(
        *connections.lock().expect("count"),
        1,
        "a request got through (1 is the test's own connection)"
    );
    relay
        .wait_for_log("refused by the address policy", Duration::from_secs(5))
        .await;
    let log = relay.log();
    assert!(
        log.contains("127.0.0.1 is an internal address")
            && log.contains("resolves only to internal addresses"),
        "the reasons name the address, and the name that resolved to it:\n{log}"
    );
}

#[tokio::test]
async fn the_relay_delivers_as_a_role_with_only_the_webhooks_relay_grants() {
    let db = TestDb::create("least_privilege").await;
    let role = format!("relay_only_{}", std::process::id());
    db.execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN IN ROLE webhooks_relay"
    ))
    .await;
    let receiver = Receiver::start().await;
    let hook = db.create_webhook("*", &receiver.url("/")).await;
    let conninfo = db
        .conninfo()
        .replace("user=postgres", &format!("user={role}"));
    let _relay = Relay::start_with_conninfo(&conninfo, "least", &[]).await;

    db.execute("SELECT webhooks.emit('job.done', '{}')").await;
    db.execute(&format!("SELECT webhooks.test({hook})")).await;

    receiver.wait_for_requests(2, Duration::from_secs(10)).await;
    wait_for("acknowledged", Duration::from_secs(10), || async {
        (db.deliveries_in("delivered").await == 1).then_some(())
    })
    .await;
    let denied = db
        .client
        .batch_execute(&format!(
            "SET ROLE {role}; SELECT secret FROM webhooks.webhooks"
        ))
        .await;
    assert!(
        denied.is_err(),
        "the relay role cannot read the webhooks table"
    );
    db.execute(&format!(
        "RESET ROLE; DROP OWNED BY {role}; DROP ROLE {role}"
    ))
    .await;
}
