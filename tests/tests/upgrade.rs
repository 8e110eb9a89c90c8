//! Upgrading: 0.1.0 installed from its own install script (pg_webhooks/sql/), with webhooks,
//! a tracked table, a held and a failed delivery, then `ALTER EXTENSION pg_webhooks UPDATE`:
//! the extension's objects are then exactly a fresh install's, ids and secrets are kept, and
//! everything works. The relay refuses the old version until then.

use pg_webhooks_tests::{verify_with_official_library, Receiver, Relay, TestDb};
use std::time::Duration;

const PREVIOUS: &str = "0.1.0";

/// The version being built, from the extension's Cargo.toml (its control file says the same).
fn current_version() -> &'static str {
    include_str!("../../pg_webhooks/Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a version in pg_webhooks/Cargo.toml")
}

/// The extension's objects, one line each (tests/tests/extension_objects.sql).
async fn extension_objects(db: &TestDb) -> Vec<String> {
    db.query(include_str!("extension_objects.sql"))
        .await
        .iter()
        .map(|row| {
            format!(
                "{} {}: {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, Option<String>>(2).unwrap_or_default()
            )
        })
        .collect()
}

/// (webhook, state) of every delivery.
async fn delivery_states(db: &TestDb) -> Vec<(i64, String)> {
    db.query("SELECT webhook_id, state FROM webhooks.deliveries ORDER BY webhook_id")
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn an_installed_previous_version_upgrades_in_place_and_keeps_working() {
    let db = TestDb::create_at_version("upgrade", PREVIOUS).await;
    let receiver = Receiver::start().await;
    db.execute(
        "CREATE TABLE profiles (id bigserial PRIMARY KEY, email text);
         SELECT webhooks.track('profiles', entity => 'profile');",
    )
    .await;
    let failing = db
        .create_webhook("profile.*", &receiver.url("/failing"))
        .await;
    let held = db.create_webhook("profile.*", &receiver.url("/held")).await;
    db.execute(&format!(
        "SELECT webhooks.deactivate({held});
         INSERT INTO profiles (email) VALUES ('ann@example.com');"
    ))
    .await;
    // the previous version's relay API by hand: lease the active webhook's delivery, park it
    let leased = &db
        .query(&format!(
            "SELECT delivery_id, attempt FROM webhooks.claim('old-relay', 10, 10, '{{}}', '1 minute')
             WHERE webhook_id = {failing}"
        ))
        .await[0];
    let (delivery, attempt): (i64, i32) = (leased.get(0), leased.get(1));
    db.execute(&format!(
        "SELECT webhooks.ack('old-relay', '[{{\"delivery_id\": {delivery}, \"attempt\": {attempt},
           \"outcome\": \"failed\", \"status\": 500, \"duration_ms\": 3}}]')"
    ))
    .await;
    let before = delivery_states(&db).await;
    assert_eq!(
        before,
        [(failing, "failed".to_owned()), (held, "held".to_owned())]
    );
    let secrets = (db.secret(failing).await, db.secret(held).await);

    let current = current_version();
    let (code, log) =
        Relay::run_until_exit(&db.conninfo(), "too-new", &[], Duration::from_secs(20)).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains(&format!(
            "pg_webhooks {PREVIOUS} is installed in this database, and this relay speaks {current}"
        )) && log.contains("ALTER EXTENSION pg_webhooks UPDATE"),
        "{log}"
    );

    db.execute("ALTER EXTENSION pg_webhooks UPDATE").await;

    assert_eq!(
        db.value::<String>("SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'")
            .await,
        current
    );
    let fresh = TestDb::create("upgrade_fresh").await;
    assert_eq!(
        extension_objects(&db).await,
        extension_objects(&fresh).await
    );
    assert_eq!(delivery_states(&db).await, before);
    assert_eq!((db.secret(failing).await, db.secret(held).await), secrets);

    // and it works: the parked delivery again, the held one replayed, a new write, a new option
    db.execute(&format!(
        "SELECT webhooks.configure({failing}, '{{\"headers\": {{\"X-Api-Key\": \"after-upgrade\"}}}}')"
    ))
    .await;
    let _relay = Relay::start(&db, "upgraded", &[]).await;
    db.execute(&format!(
        "SELECT webhooks.redeliver({delivery});
         SELECT webhooks.activate({held}, replay_events => true);
         INSERT INTO profiles (email) VALUES ('bob@example.com');"
    ))
    .await;
    let received = receiver.wait_for_requests(4, Duration::from_secs(20)).await;
    let to = |path: &str| -> Vec<_> {
        received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    };
    let (to_failing, to_held) = (to("/failing"), to("/held"));
    assert_eq!((to_failing.len(), to_held.len()), (2, 2));
    assert!(to_failing
        .iter()
        .all(|r| r.header("x-api-key") == "after-upgrade"));
    assert_eq!(
        verify_with_official_library(&secrets.0, &to_failing),
        ["ok", "ok"]
    );
    assert_eq!(
        verify_with_official_library(&secrets.1, &to_held),
        ["ok", "ok"]
    );
}
