//! Acknowledgements go to the database in batches, never one transaction per delivery: with a
//! synchronous commit costing milliseconds, one per delivery would cap a relay far too low.

use crate::relay_api::{acknowledge, AttemptReport};
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::tunables::{ACK_BATCH, ACK_GATHER_FOR, ACK_TRIES};

pub fn start(pool: Pool, relay: String) -> (mpsc::Sender<AttemptReport>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(4 * ACK_BATCH);
    (sender, tokio::spawn(run(pool, relay, receiver)))
}

async fn run(pool: Pool, relay: String, mut receiver: mpsc::Receiver<AttemptReport>) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        let gathering = tokio::time::sleep(ACK_GATHER_FOR);
        tokio::pin!(gathering);
        while batch.len() < ACK_BATCH {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(report) => batch.push(report),
                    None => break,
                },
                _ = &mut gathering => break,
            }
        }
        flush(&pool, &relay, &mut batch).await;
    }
}

/// If the database stays away, the reports are dropped with an error: their leases run out and
/// the deliveries are sent again (at least once), only the attempt log misses them.
async fn flush(pool: &Pool, relay: &str, batch: &mut Vec<AttemptReport>) {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=ACK_TRIES {
        match acknowledge(pool, relay, batch).await {
            Ok(_) => {
                batch.clear();
                return;
            }
            Err(error) if error.is_refusal() => {
                tracing::warn!(%error, reports = batch.len(), "acknowledgement refused; recording the reports one by one");
                record_singly(pool, relay, batch).await;
                batch.clear();
                return;
            }
            Err(error) if attempt < ACK_TRIES => {
                tracing::warn!(%error, reports = batch.len(), "acknowledgement failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => {
                tracing::error!(%error, reports = batch.len(), "acknowledgements lost; their leases will expire and the deliveries repeat")
            }
        }
    }
    batch.clear();
}

/// PostgreSQL refused the batch for something in it: one report must not cost the others their
/// acknowledgement (they would be sent again and again). Each is recorded alone; one still
/// refused is recorded without the receiver's answer, which is all a receiver controls.
async fn record_singly(pool: &Pool, relay: &str, batch: &[AttemptReport]) {
    for report in batch {
        let single = std::slice::from_ref(report);
        if let Err(error) = acknowledge(pool, relay, single).await {
            let bare = AttemptReport {
                response: None,
                ..report.clone()
            };
            match acknowledge(pool, relay, std::slice::from_ref(&bare)).await {
                Ok(_) => {
                    tracing::warn!(%error, delivery = report.delivery_id, "recorded without the receiver's answer")
                }
                Err(error) => {
                    tracing::error!(%error, delivery = report.delivery_id, "acknowledgement lost; its lease will expire")
                }
            }
        }
    }
}
