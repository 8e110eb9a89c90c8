//! A fresh database with the extension, one per test, on the suite's cluster (or on a test's
//! own cluster, tests/src/cluster.rs).

use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::{Client, NoTls, Row};

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

pub struct TestDb {
    pub name: String,
    pub client: Client,
    /// `host=... port=... user=...` of the cluster it lives on
    cluster: String,
}

/// The suite's cluster, from the PGHOST and PGPORT scripts/test.sh exports.
pub fn suite_cluster() -> String {
    let host = std::env::var("PGHOST").expect("PGHOST: run the tests through scripts/test.sh");
    let port = std::env::var("PGPORT").expect("PGPORT: run the tests through scripts/test.sh");
    format!("host={host} port={port} user=postgres")
}

async fn connect(conninfo: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect {conninfo}: {error}"));
    tokio::spawn(connection);
    client
}

impl TestDb {
    /// A new database named after the test, with pg_webhooks created in it. Webhooks created
    /// in it need no ownership verification (tests/tests/verification.rs turns it back on),
    /// so the tests of everything else can post to loopback receivers at once.
    pub async fn create(test_name: &str) -> TestDb {
        TestDb::create_on(&suite_cluster(), test_name).await
    }

    /// The same on another cluster (`host=... port=... user=...`).
    pub async fn create_on(cluster: &str, test_name: &str) -> TestDb {
        TestDb::create_with(cluster, test_name, "CREATE EXTENSION pg_webhooks").await
    }

    /// The same with an earlier version of the extension (tests/tests/upgrade.rs).
    pub async fn create_at_version(test_name: &str, version: &str) -> TestDb {
        let create = format!("CREATE EXTENSION pg_webhooks VERSION '{version}'");
        TestDb::create_with(&suite_cluster(), test_name, &create).await
    }

    async fn create_with(cluster: &str, test_name: &str, create_extension: &str) -> TestDb {
        let name = format!(
            "e2e_{}_{}_{}",
            test_name.chars().take(40).collect::<String>(),
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&format!("{cluster} dbname=postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let client = connect(&format!("{cluster} dbname={name}")).await;
        client
            .batch_execute(&format!(
                "{create_extension}; \
                 INSERT INTO webhooks.settings (require_verification) VALUES (false)"
            ))
            .await
            .expect("create extension");
        TestDb {
            name,
            client,
            cluster: cluster.to_owned(),
        }
    }

    /// libpq key=value connection string for this database (what the relay is given).
    pub fn conninfo(&self) -> String {
        format!("{} dbname={}", self.cluster, self.name)
    }

    /// Another connection to this database.
    pub async fn connect(&self) -> Client {
        connect(&self.conninfo()).await
    }

    /// Another connection to this database, whose notices and notifications arrive on the
    /// receiver.
    pub async fn connect_with_messages(
        &self,
    ) -> (
        Client,
        tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
    ) {
        use futures_util::StreamExt;
        let (client, mut connection) = tokio_postgres::connect(&self.conninfo(), NoTls)
            .await
            .expect("connect");
        let (messages, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = stream.next().await {
                let _ = messages.send(message);
            }
        });
        (client, received)
    }

    pub async fn execute(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    }

    pub async fn query(&self, sql: &str) -> Vec<Row> {
        self.client
            .query(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
    }

    /// The single value of a one-row, one-column query.
    pub async fn value<T>(&self, sql: &str) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
            .get(0)
    }

    /// A webhook's verification file: its name and its content.
    pub async fn verification_file(&self, hook: i64) -> (String, String) {
        let row = &self
            .query(&format!(
                "SELECT file_name, content FROM webhooks.verification_file({hook})"
            ))
            .await[0];
        (row.get(0), row.get(1))
    }

    /// Start a probe (`webhooks.verify(7)` or `webhooks.test(7)`) in its own committed
    /// statement and wait for its result: (success, result, status, response).
    pub async fn run_probe(&self, call: &str) -> (bool, String, Option<i32>, Option<String>) {
        let probe: i64 = self.value(&format!("SELECT {call}")).await;
        let row = self
            .query(&format!(
                "SELECT state, success, result, status, response \
                 FROM webhooks.probe({probe}, wait => '15 seconds')"
            ))
            .await;
        assert_eq!(
            row[0].get::<_, String>(0),
            "done",
            "probe {probe} did not finish"
        );
        (row[0].get(1), row[0].get(2), row[0].get(3), row[0].get(4))
    }

    /// Wait until some relay has marked itself idle (writers then NOTIFY it).
    pub async fn wait_for_an_idle_relay(&self) {
        crate::wait_for(
            "a relay to be idle",
            std::time::Duration::from_secs(5),
            || async {
                self.value::<bool>("SELECT coalesce(bool_or(idle), false) FROM webhooks.relays")
                    .await
                    .then_some(())
            },
        )
        .await;
    }

    /// Subscribe `url` to `event` and return the webhook id.
    pub async fn create_webhook(&self, event: &str, url: &str) -> i64 {
        self.client
            .query_one("SELECT webhooks.create('e2e', $1, $2)", &[&event, &url])
            .await
            .expect("create webhook")
            .get(0)
    }

    pub async fn secret(&self, webhook_id: i64) -> String {
        self.client
            .query_one("SELECT webhooks.secret($1)", &[&webhook_id])
            .await
            .expect("read secret")
            .get(0)
    }

    /// (outcome, status, error) of each logged attempt, oldest first.
    pub async fn attempts(&self) -> Vec<(String, Option<i32>, Option<String>)> {
        self.query("SELECT outcome, status, error FROM webhooks.delivery_log ORDER BY attempt")
            .await
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    /// Count of deliveries in a state.
    pub async fn deliveries_in(&self, state: &str) -> i64 {
        self.client
            .query_one(
                "SELECT count(*) FROM webhooks.delivery_status WHERE state = $1",
                &[&state],
            )
            .await
            .expect("count deliveries")
            .get(0)
    }
}
