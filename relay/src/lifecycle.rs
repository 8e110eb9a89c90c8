//! Start and stop: signals become a cancellation, and periodic upkeep (partitions, retention,
//! queue depth) runs beside the delivery loop.

use crate::metrics::Metrics;
use crate::relay_api;
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::tunables::QUEUE_DEPTH_EVERY;

/// Cancel `shutdown` on SIGTERM or SIGINT.
pub fn cancel_on_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping claims, finishing requests in flight"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping claims, finishing requests in flight"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// webhooks.maintain() every `maintain_every`, and the queue-depth gauge every few seconds.
pub async fn upkeep(
    pool: Pool,
    maintain_every: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut maintain = tokio::time::interval(maintain_every);
    let mut depth = tokio::time::interval(QUEUE_DEPTH_EVERY);
    loop {
        tokio::select! {
            _ = maintain.tick() => run_maintain(&pool).await,
            _ = depth.tick() => refresh_queue_depth(&pool, &metrics).await,
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn run_maintain(pool: &Pool) {
    match relay_api::maintain(pool).await {
        Ok(done) => {
            for (action, object) in done {
                tracing::info!(action, object, "maintenance");
            }
        }
        Err(error) => tracing::warn!(%error, "maintenance failed"),
    }
}

async fn refresh_queue_depth(pool: &Pool, metrics: &Metrics) {
    match relay_api::queue_depth(pool).await {
        Ok((queued, held)) => {
            metrics
                .queue_depth
                .with_label_values(&["queued"])
                .set(queued);
            metrics.queue_depth.with_label_values(&["held"]).set(held);
        }
        Err(error) => tracing::debug!(%error, "queue depth unavailable"),
    }
}
