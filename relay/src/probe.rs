//! Probes: the one-off requests an admin asks for in SQL (sql/45_probes.sql). `verify` fetches
//! the webhook's verification file and compares its content; `test` sends one signed request.
//! Neither retries: the admin reads the result with webhooks.probe() and asks again.

use crate::deliver::{send_message, Timeouts};
use crate::relay_api::{self, DatabaseError, Kind, Probe, ProbeOutcome};
use crate::render::{Message, Shape};
use crate::send::{Reply, Sender};
use chrono::Utc;
use deadpool_postgres::Pool;
use reqwest::header::HeaderMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::tunables::PROBES_PER_CLAIM;

pub struct Prober {
    pub pool: Pool,
    pub relay: String,
    pub sender: Arc<Sender>,
    /// Longer than two requests: a probe whose relay died is taken over after it.
    pub timeouts: Timeouts,
    pub poll_interval: Duration,
}

impl Prober {
    /// Run probes when woken (NOTIFY webhooks_probes) or every poll interval.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(error) = self.run_open_probes().await {
                tracing::warn!(%error, "probes failed");
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn run_open_probes(&self) -> Result<(), DatabaseError> {
        loop {
            let probes = relay_api::claim_probes(
                &self.pool,
                &self.relay,
                PROBES_PER_CLAIM,
                self.timeouts.lease,
            )
            .await?;
            if probes.is_empty() {
                return Ok(());
            }
            let outcomes =
                futures_util::future::join_all(probes.iter().map(|probe| self.execute(probe)))
                    .await;
            for (probe, outcome) in probes.iter().zip(outcomes) {
                tracing::info!(
                    probe = probe.id, success = outcome.success, result = %outcome.result, "probe done"
                );
                match relay_api::finish_probe(&self.pool, probe.id, &outcome).await {
                    // one outcome PostgreSQL refuses must not cost the others theirs
                    Err(error) if error.is_refusal() => {
                        tracing::error!(%error, probe = probe.id, "probe outcome refused")
                    }
                    other => other?,
                }
            }
        }
    }

    async fn execute(&self, probe: &Probe) -> ProbeOutcome {
        match &probe.kind {
            Kind::Verify {
                file_urls,
                content,
                headers,
            } => self.verify(file_urls, content, headers).await,
            Kind::Test {
                secrets,
                event,
                payload,
                shape,
            } => {
                let id = format!("test_{}", probe.id);
                let message = Message {
                    id: &id,
                    event_id: 0,
                    event,
                    occurred_at: Utc::now(),
                    data: payload,
                };
                self.test(probe, &message, shape, secrets).await
            }
            Kind::Unreadable(reason) => ProbeOutcome::from_reply(
                false,
                format!("the relay could not read this probe: {reason}"),
                Reply::failed("unreadable", Duration::ZERO),
            ),
        }
    }

    /// Try each place the file may be; the first with the right content verifies.
    async fn verify(
        &self,
        file_urls: &[String],
        content: &str,
        headers: &HeaderMap,
    ) -> ProbeOutcome {
        let mut misses = Vec::new();
        let mut last_reply = None;
        for url in file_urls {
            let reply = self.sender.get(url, headers.clone()).await;
            match file_check(&reply, content) {
                Ok(()) => return ProbeOutcome::from_reply(true, format!("found at {url}"), reply),
                Err(miss) => misses.push(format!("{url}: {miss}")),
            }
            last_reply = Some(reply);
        }
        let result = format!("verification file not found: {}", misses.join("; "));
        match last_reply {
            Some(reply) => ProbeOutcome::from_reply(false, result, reply),
            None => {
                ProbeOutcome::from_reply(false, result, Reply::failed("no_url", Duration::ZERO))
            }
        }
    }

    async fn test(
        &self,
        probe: &Probe,
        message: &Message<'_>,
        shape: &Shape,
        secrets: &[String],
    ) -> ProbeOutcome {
        let timeout = self.timeouts.request_for(shape);
        let reply = send_message(&self.sender, message, &probe.url, shape, secrets, timeout).await;
        let result = match (reply.status, reply.error) {
            (Some(status), _) => format!("HTTP {status}"),
            (None, Some(error)) => format!("no answer: {error}"),
            (None, None) => "no answer".to_owned(),
        };
        let delivered = reply
            .status
            .is_some_and(|status| (200..300).contains(&status));
        ProbeOutcome::from_reply(delivered, result, reply)
    }
}

/// Is this the verification file? A 200 whose body, without surrounding white space, is the
/// expected content.
fn file_check(reply: &Reply, content: &str) -> Result<(), String> {
    match (reply.status, reply.error) {
        (Some(200), _) => {
            let body = reply.excerpt.as_deref().unwrap_or("");
            if body.trim() == content {
                Ok(())
            } else {
                Err("the content does not match".to_owned())
            }
        }
        (Some(status), _) => Err(format!("HTTP {status}")),
        (None, Some(error)) => Err(format!("no answer ({error})")),
        (None, None) => Err("no answer".to_owned()),
    }
}

impl ProbeOutcome {
    fn from_reply(success: bool, result: String, reply: Reply) -> ProbeOutcome {
        ProbeOutcome {
            success,
            result,
            status: reply.status,
            error: reply.error,
            response: reply.excerpt,
            duration_ms: i32::try_from(reply.duration.as_millis()).unwrap_or(i32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: Option<u16>, body: Option<&str>) -> Reply {
        Reply {
            status,
            retry_after: None,
            error: status.is_none().then_some("connect"),
            excerpt: body.map(str::to_owned),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn the_file_verifies_with_its_content_and_a_trailing_newline() {
        assert_eq!(file_check(&reply(Some(200), Some("abc\n")), "abc"), Ok(()));
    }

    #[test]
    fn other_content_does_not_verify() {
        assert_eq!(
            file_check(&reply(Some(200), Some("<html>welcome</html>")), "abc"),
            Err("the content does not match".to_owned())
        );
    }

    #[test]
    fn a_missing_file_says_its_status() {
        assert_eq!(
            file_check(&reply(Some(404), Some("abc")), "abc"),
            Err("HTTP 404".to_owned())
        );
    }

    #[test]
    fn no_answer_says_why() {
        assert_eq!(
            file_check(&reply(None, None), "abc"),
            Err("no answer (connect)".to_owned())
        );
    }
}
