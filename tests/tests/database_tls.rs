//! TLS between the relay and PostgreSQL, with libpq's sslmode meanings, against a cluster that
//! accepts TCP connections only over TLS (hostssl) with a password, and a CA the test makes.

use pg_webhooks_tests::tls::TestCa;
use pg_webhooks_tests::{OwnCluster, Receiver, Relay, TestDb};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "relay-secret-pw";

struct TlsCluster {
    db: TestDb,
    cluster: OwnCluster,
    trusted_ca: PathBuf,
    other_ca: PathBuf,
}

impl TlsCluster {
    /// A cluster whose certificate is issued for "localhost" by a CA of this test's; a second
    /// CA issued nothing the cluster shows.
    async fn start(name: &str) -> TlsCluster {
        let cluster = OwnCluster::start(name);
        let certificates = PathBuf::from(format!("{}-certs", cluster.dir().display()));
        let trusted = TestCa::new(&certificates, "trusted");
        let other = TestCa::new(&certificates, "other");
        cluster.require_tls(&trusted.issue("server", &["localhost"]));
        let db = TestDb::create_on(&cluster.conninfo(), name).await;
        db.execute(&format!(
            "CREATE ROLE relay_tls LOGIN PASSWORD '{PASSWORD}' IN ROLE webhooks_relay"
        ))
        .await;
        TlsCluster {
            db,
            cluster,
            trusted_ca: trusted.cert_file.clone(),
            other_ca: other.cert_file.clone(),
        }
    }

    /// The relay's connection string over TCP to `host`, with these TLS options.
    fn conninfo(&self, host: &str, tls: &str) -> String {
        format!(
            "host={host} port={} dbname={} user=relay_tls password={PASSWORD} {tls}",
            self.cluster.port(),
            self.db.name
        )
    }

    /// Start a relay with `tls`, send one event and wait for it to arrive.
    async fn delivers_with(&self, host: &str, tls: &str) -> Relay {
        let receiver = Receiver::start().await;
        self.db
            .create_webhook("order.placed", &receiver.url("/"))
            .await;
        let relay = Relay::start_with_conninfo(&self.conninfo(host, tls), "tls", &[]).await;
        self.db
            .execute("SELECT webhooks.emit('order.placed', '{\"order\": 1}')")
            .await;
        let received = receiver.wait_for_requests(1, Duration::from_secs(20)).await;
        assert_eq!(received[0].json()["data"]["order"], 1);
        relay
    }

    /// (connections, how many are encrypted) of the relay's role, once its LISTEN connection
    /// has run LISTEN (it connects beside the pool, so it may come after the first delivery),
    /// and whether that one is encrypted.
    async fn relay_connections(&self) -> (i64, i64, bool) {
        pg_webhooks_tests::wait_for("the LISTEN connection", Duration::from_secs(15), || async {
            let row = &self
                .db
                .query(
                    "SELECT count(*), count(*) FILTER (WHERE s.ssl),
                            bool_or(a.query LIKE 'LISTEN%' AND s.ssl),
                            bool_or(a.query LIKE 'LISTEN%')
                     FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                     WHERE a.usename = 'relay_tls'",
                )
                .await[0];
            let listening = row.get::<_, Option<bool>>(3).unwrap_or(false);
            listening.then(|| {
                (
                    row.get(0),
                    row.get(1),
                    row.get::<_, Option<bool>>(2) == Some(true),
                )
            })
        })
        .await
    }

    /// Run a relay with `tls` that must not start; its exit code and log.
    async fn refused_with(&self, host: &str, tls: &str) -> (Option<i32>, String) {
        Relay::run_until_exit(
            &self.conninfo(host, tls),
            "refused",
            &[],
            Duration::from_secs(30),
        )
        .await
    }
}

#[tokio::test]
async fn require_reaches_a_cluster_that_accepts_only_tls_and_every_connection_is_encrypted() {
    let tls = TlsCluster::start("tls_require").await;
    let _relay = tls.delivers_with("localhost", "sslmode=require").await;
    let (connections, encrypted, listen_encrypted) = tls.relay_connections().await;
    assert!(
        connections >= 2,
        "the pool and the LISTEN connection: {connections}"
    );
    assert_eq!(encrypted, connections);
    assert!(listen_encrypted, "the LISTEN connection is encrypted too");
}

#[tokio::test]
async fn verify_full_delivers_when_the_certificate_is_the_trusted_cas_and_names_the_host() {
    let tls = TlsCluster::start("tls_verify_full").await;
    let options = format!(
        "sslmode=verify-full sslrootcert={}",
        tls.trusted_ca.display()
    );
    let _relay = tls.delivers_with("localhost", &options).await;
    let (connections, encrypted, _) = tls.relay_connections().await;
    assert_eq!(encrypted, connections);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_from_another_ca() {
    let tls = TlsCluster::start("tls_wrong_ca").await;
    let options = format!("sslmode=verify-full sslrootcert={}", tls.other_ca.display());
    let (code, log) = tls.refused_with("localhost", &options).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert!(!log.contains("relay started"), "{log}");
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_was_not_issued_for_and_verify_ca_accepts_it(
) {
    let tls = TlsCluster::start("tls_wrong_name").await;
    let ca = tls.trusted_ca.display().to_string();
    // the certificate names "localhost", not the address
    let (code, log) = tls
        .refused_with(
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        )
        .await;
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(
        log.contains("certificate not valid for name \"127.0.0.1\""),
        "{log}"
    );
    let _relay = tls
        .delivers_with("127.0.0.1", &format!("sslmode=verify-ca sslrootcert={ca}"))
        .await;
}

#[tokio::test]
async fn disable_is_refused_by_a_cluster_that_accepts_only_tls() {
    let tls = TlsCluster::start("tls_disable").await;
    let (code, log) = tls.refused_with("localhost", "sslmode=disable").await;
    assert_eq!(code, Some(3), "{log}");
    assert!(
        log.contains("no encryption"),
        "pg_hba's refusal is shown: {log}"
    );
}

/// A server that answers the TLS request with "N" (no TLS here) and records every byte it
/// gets afterwards.
#[tokio::test]
async fn a_relay_that_asked_for_tls_sends_nothing_to_a_server_without_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(Duration::from_secs(5), listener.accept()).await
        {
            let mut ssl_request = [0u8; 8];
            if socket.read_exact(&mut ssl_request).await.is_err() {
                continue;
            }
            assert_eq!(
                ssl_request,
                [0, 0, 0, 8, 4, 210, 22, 47],
                "an SSLRequest first"
            );
            socket.write_all(b"N").await.expect("answer");
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut received))
                .await;
        }
        received
    });
    let certificates = std::env::temp_dir().join(format!("tls_plain_{}", std::process::id()));
    let ca = TestCa::new(&certificates, "unused");
    for tls in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full sslrootcert={}", ca.cert_file.display()),
    ] {
        let conninfo = format!(
            "host=localhost port={port} user=relay_tls password={PASSWORD} dbname=app {tls}"
        );
        let (code, log) =
            Relay::run_until_exit(&conninfo, "plain", &[], Duration::from_secs(30)).await;
        assert_eq!(code, Some(3), "{tls}: {log}");
        assert!(log.contains("server does not support TLS"), "{tls}: {log}");
    }
    let received = server.await.expect("server");
    assert!(
        received.is_empty(),
        "nothing after the SSLRequest (no user name, no password): {:?}",
        String::from_utf8_lossy(&received)
    );
}
