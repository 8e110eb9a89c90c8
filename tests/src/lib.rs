//! The end-to-end test harness: a fresh database on the suite's PostgreSQL cluster, HTTP
//! receivers on loopback that record what they get, and the real relay binary.
//!
//! `scripts/test.sh` starts the cluster and exports PGHOST/PGPORT, installs the extension, builds
//! the relay and sets PG_WEBHOOKS_RELAY_BIN.

pub mod cluster;
pub mod database;
pub mod php;
pub mod receiver;
pub mod relay;
pub mod tls;
pub mod verifier;

use std::future::Future;
use std::time::{Duration, Instant};

pub use cluster::OwnCluster;
pub use database::TestDb;
pub use php::PhpReceiver;
pub use receiver::{Received, Receiver, Reply};
pub use relay::Relay;
pub use tls::TestCa;
pub use verifier::{
    signed_payload, verify_ed25519, verify_signed_payloads, verify_with_official_library,
};

/// Poll `check` until it returns Some, or panic with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
