//! pg_dump keeps the webhooks and the tracking; a restored database captures again at once.

use pg_webhooks_tests::TestDb;
use std::process::Command;

/// `program` of the PostgreSQL under test (PG_BIN, set by scripts/test.sh; 15 by default).
fn run(program: &str, args: &[&str]) {
    let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    let status = Command::new(format!("{bin}/{program}"))
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed");
}

#[tokio::test]
async fn a_dump_and_restore_keeps_webhooks_secrets_headers_and_tracking() {
    let source = TestDb::create("dump_source").await;
    source
        .execute(
            r#"CREATE TABLE profiles (id serial PRIMARY KEY, email text);
               SELECT webhooks.track('profiles', entity => 'profile');
               SELECT webhooks.create('crm', 'profile.updated', 'https://example.com/hook.php');
               SELECT webhooks.create('crm', 'profile.*', 'https://example.com/all.php');
               SELECT webhooks.deactivate(2);
               SELECT webhooks.configure(2, '{"source": "profiles", "format": "form",
                   "filter": "$.new.email like_regex \"@example\"", "exclude_columns": ["x"],
                   "headers": {"X-Api-Key": "kept-by-pg-dump"}}');
               CREATE TABLE orders (id serial PRIMARY KEY, profile_id int REFERENCES profiles);
               SELECT webhooks.track('orders', entity => 'order', parent => 'profile_id');
               INSERT INTO profiles (email) VALUES ('ann@example.com');"#,
        )
        .await;
    let secret = source.secret(1).await;
    let target = TestDb::create("dump_target").await;
    // an empty database: DROP EXTENSION leaves the (then empty) webhooks schema behind
    target
        .execute("DROP EXTENSION pg_webhooks; DROP SCHEMA webhooks")
        .await;
    let dump = std::env::temp_dir().join(format!("{}.dump", source.name));
    let dump_path = dump.to_str().expect("utf-8 path");

    run(
        "pg_dump",
        &["--format=custom", "--file", dump_path, &source.conninfo()],
    );
    run(
        "pg_restore",
        &["--exit-on-error", "--dbname", &target.conninfo(), dump_path],
    );

    let hooks: Vec<(i64, String, String)> = target
        .query("SELECT id, event, status FROM webhooks.list() ORDER BY id")
        .await
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        hooks,
        [
            (1, "profile.updated".into(), "active".into()),
            (2, "profile.*".into(), "inactive".into())
        ]
    );
    assert_eq!(target.secret(1).await, secret);
    let options = "SELECT options::text FROM webhooks.get(2)";
    assert_eq!(
        target.value::<String>(options).await,
        source.value::<String>(options).await
    );
    let headers = "SELECT headers::text FROM webhooks.webhooks WHERE id = 2";
    assert_eq!(
        target.value::<String>(headers).await,
        r#"{"X-Api-Key": "kept-by-pg-dump"}"#
    );
    let parents =
        "SELECT string_agg(concat(source, ':', parent_table), ',') FROM webhooks.tracked_tables";
    assert_eq!(
        target.value::<String>(parents).await,
        source.value::<String>(parents).await
    );
    assert_eq!(
        target
            .value::<String>(
                "SELECT string_agg(entity, ',' ORDER BY entity) FROM webhooks.tracked_tables"
            )
            .await,
        "order,profile"
    );
    assert_eq!(
        target
            .value::<i64>("SELECT count(*) FROM webhooks.events")
            .await,
        0,
        "events are not dumped"
    );
    target
        .execute("UPDATE profiles SET email = 'restored@example.com'")
        .await;
    assert_eq!(
        target
            .value::<i64>("SELECT count(*) FROM webhooks.events WHERE event = 'profile.updated'")
            .await,
        1
    );
    let next_id = target.create_webhook("*", "https://example.com/new").await;
    assert_eq!(next_id, 3, "ids continue after the restored ones");
    let _ = std::fs::remove_file(dump);
}
