//! The wake-up line: a dedicated connection (never a pooled one: recycling runs UNLISTEN) that
//! LISTENs on webhooks_wakeup (new events) and webhooks_probes (verification and test requests)
//! and reconnects with backoff. Notifications can be lost while it is
//! down, so every (re)connect also wakes the relay, and the relay polls anyway.

use crate::connect::Database;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use rand::Rng;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client};
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "webhooks_wakeup";
pub const PROBES_CHANNEL: &str = "webhooks_probes";
use crate::tunables::{LISTEN_MAX_BACKOFF, LISTEN_MIN_BACKOFF};

/// A connection that is listening. The client must live as long as we listen: dropping it
/// closes the connection.
struct Session {
    _client: Client,
    messages: BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>,
}

/// Who is woken by which channel.
#[derive(Clone, Default)]
pub struct Wakeups {
    pub deliveries: Arc<Notify>,
    pub probes: Arc<Notify>,
}

impl Wakeups {
    fn wake_all(&self) {
        self.deliveries.notify_one();
        self.probes.notify_one();
    }
}

pub async fn run(database: Database, wake: Wakeups, shutdown: CancellationToken) {
    let mut backoff = LISTEN_MIN_BACKOFF;
    while !shutdown.is_cancelled() {
        match listen(&database).await {
            Ok(session) => {
                backoff = LISTEN_MIN_BACKOFF;
                tracing::debug!("listening on {CHANNEL} and {PROBES_CHANNEL}");
                wake.wake_all(); // finds whatever was sent while we were not listening
                match forward(session, &wake, &shutdown).await {
                    Ok(()) if shutdown.is_cancelled() => return,
                    Ok(()) => {
                        tracing::warn!("LISTEN connection closed by the server; reconnecting")
                    }
                    Err(error) => tracing::warn!(%error, "LISTEN connection lost; reconnecting"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "cannot open the LISTEN connection")
            }
        }
        // jitter, so relays that lost the database together do not return in lockstep
        let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(LISTEN_MAX_BACKOFF);
    }
}

/// Connect (with the same TLS as the pool) and run LISTEN, driving the connection while the
/// command runs.
async fn listen(database: &Database) -> Result<Session, tokio_postgres::Error> {
    let (client, mut connection) = database.config.connect(database.tls.clone()).await?;
    // fused: polled again after its end, it stays ended instead of touching a closed connection
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx))
        .fuse()
        .boxed();
    let statement = format!("LISTEN {CHANNEL}; LISTEN {PROBES_CHANNEL}");
    {
        let mut listening = std::pin::pin!(client.batch_execute(&statement));
        loop {
            tokio::select! {
                done = &mut listening => break done,
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    // the connection ended: the pending LISTEN fails and says why
                    None => break (&mut listening).await,
                },
            }
        }
    }?;
    Ok(Session {
        _client: client,
        messages,
    })
}

/// Turn notifications into wake-ups until the connection ends (Ok when the server closed it
/// or we are shutting down).
async fn forward(
    mut session: Session,
    wake: &Wakeups,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    loop {
        let message = tokio::select! {
            message = session.messages.next() => message,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match message {
            Some(Ok(AsyncMessage::Notification(note))) if note.channel() == PROBES_CHANNEL => {
                wake.probes.notify_one()
            }
            Some(Ok(AsyncMessage::Notification(_))) => wake.deliveries.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error),
            None => return Ok(()),
        }
    }
}
