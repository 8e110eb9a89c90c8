//! The wake-up line: a dedicated connection (never a pooled one: recycling runs UNLISTEN) that
//! LISTENs on webhooks_wakeup and reconnects with backoff. Notifications can be lost while it is
//! down, so every (re)connect also wakes the relay, and the relay polls anyway.

use futures_util::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "webhooks_wakeup";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(config: tokio_postgres::Config, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    while !shutdown.is_cancelled() {
        match listen_until_closed(&config, &wake, &shutdown).await {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => {
                tracing::warn!("LISTEN connection closed by the server; reconnecting");
                backoff = MIN_BACKOFF;
            }
            Err(error) => tracing::warn!(%error, retry_in = ?backoff, "LISTEN connection lost"),
        }
        let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn listen_until_closed(
    config: &tokio_postgres::Config,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    let mut listening = std::pin::pin!(client.batch_execute(&statement));
    // drive the connection while LISTEN runs; `client` must live as long as we listen
    loop {
        tokio::select! {
            done = &mut listening => { done?; break; }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
        }
    }
    tracing::debug!("listening on {CHANNEL}");
    wake.notify_one(); // anything sent while we were not listening is found by this wake-up
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match message {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => return Ok(()), // the server closed the connection
        }
    }
}
