//! Probes: the one-off requests an admin asks for in SQL (sql/45_probes.sql). `verify` fetches
//! the webhook's verification file and compares its content; `test` sends one signed request.
//! Neither retries: the admin reads the result with webhooks.probe() and asks again.

use crate::claim::{headers_from_row, shape_from_row, DatabaseError};
use crate::deliver::{send_message, Timeouts};
use crate::render::{Message, Shape};
use crate::send::{Reply, Sender};
use chrono::Utc;
use deadpool_postgres::Pool;
use reqwest::header::HeaderMap;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::types::Json;
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

enum Kind {
    Verify {
        file_urls: Vec<String>,
        content: String,
        headers: HeaderMap,
    },
    Test {
        secrets: Vec<String>,
        event: String,
        /// JSON text, as PostgreSQL wrote it.
        payload: String,
        shape: Box<Shape>,
    },
    /// Its row could not be read: it fails, with the reason, and nothing is sent.
    Unreadable(String),
}

struct Probe {
    id: i64,
    url: String,
    kind: Kind,
}

/// What webhooks.finish_probe() records.
#[derive(Debug, Serialize, PartialEq)]
struct Outcome {
    success: bool,
    result: String,
    status: Option<u16>,
    error: Option<&'static str>,
    response: Option<String>,
    duration_ms: i32,
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
            let probes = self.claim().await?;
            if probes.is_empty() {
                return Ok(());
            }
            let outcomes =
                futures_util::future::join_all(probes.iter().map(|probe| self.execute(probe)))
                    .await;
            let client = self.pool.get().await?;
            for (probe, outcome) in probes.iter().zip(outcomes) {
                tracing::info!(
                    probe = probe.id, success = outcome.success, result = %outcome.result, "probe done"
                );
                let finished = client
                    .execute(
                        "SELECT webhooks.finish_probe($1, $2)",
                        &[&probe.id, &Json(&outcome)],
                    )
                    .await
                    .map_err(DatabaseError::from);
                match finished {
                    // one outcome PostgreSQL refuses must not cost the others theirs
                    Err(error) if error.is_refusal() => {
                        tracing::error!(%error, probe = probe.id, "probe outcome refused")
                    }
                    other => {
                        other?;
                    }
                }
            }
        }
    }

    async fn claim(&self) -> Result<Vec<Probe>, DatabaseError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT probe_id, kind, url, secrets, event, payload::text AS payload, file_urls, \
                        file_content, \
                        format, method, fields, key_field, parameters, headers, request_timeout_ms \
                 FROM webhooks.claim_probes($1, $2, make_interval(secs => $3))",
                &[
                    &self.relay,
                    &PROBES_PER_CLAIM,
                    &self.timeouts.lease.as_secs_f64(),
                ],
            )
            .await?;
        let mut probes = Vec::with_capacity(rows.len());
        for row in &rows {
            match probe_from_row(row) {
                Ok(probe) => probes.push(probe),
                Err(error) => match row.try_get("probe_id") {
                    Ok(id) => probes.push(Probe {
                        id,
                        url: String::new(),
                        kind: Kind::Unreadable(error.to_string()),
                    }),
                    Err(_) => {
                        tracing::error!(%error, "cannot read a claimed probe; its lease will expire")
                    }
                },
            }
        }
        Ok(probes)
    }

    async fn execute(&self, probe: &Probe) -> Outcome {
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
            Kind::Unreadable(reason) => Outcome::from_reply(
                false,
                format!("the relay could not read this probe: {reason}"),
                Reply::failed("unreadable", Duration::ZERO),
            ),
        }
    }

    /// Try each place the file may be; the first with the right content verifies.
    async fn verify(&self, file_urls: &[String], content: &str, headers: &HeaderMap) -> Outcome {
        let mut misses = Vec::new();
        let mut last_reply = None;
        for url in file_urls {
            let reply = self.sender.get(url, headers.clone()).await;
            match file_check(&reply, content) {
                Ok(()) => return Outcome::from_reply(true, format!("found at {url}"), reply),
                Err(miss) => misses.push(format!("{url}: {miss}")),
            }
            last_reply = Some(reply);
        }
        let result = format!("verification file not found: {}", misses.join("; "));
        match last_reply {
            Some(reply) => Outcome::from_reply(false, result, reply),
            None => Outcome::from_reply(false, result, Reply::failed("no_url", Duration::ZERO)),
        }
    }

    async fn test(
        &self,
        probe: &Probe,
        message: &Message<'_>,
        shape: &Shape,
        secrets: &[String],
    ) -> Outcome {
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
        Outcome::from_reply(delivered, result, reply)
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

impl Outcome {
    fn from_reply(success: bool, result: String, reply: Reply) -> Outcome {
        Outcome {
            success,
            result,
            status: reply.status,
            error: reply.error,
            response: reply.excerpt,
            duration_ms: i32::try_from(reply.duration.as_millis()).unwrap_or(i32::MAX),
        }
    }
}

fn probe_from_row(row: &tokio_postgres::Row) -> Result<Probe, DatabaseError> {
    let kind: &str = row.try_get("kind")?;
    let kind = if kind == "verify" {
        Kind::Verify {
            file_urls: row.try_get("file_urls")?,
            content: row.try_get("file_content")?,
            headers: headers_from_row(row)?,
        }
    } else {
        Kind::Test {
            secrets: row.try_get("secrets")?,
            event: row.try_get("event")?,
            payload: row
                .try_get::<_, Option<String>>("payload")?
                .unwrap_or_else(|| "{}".to_owned()),
            shape: Box::new(shape_from_row(row)?),
        }
    };
    Ok(Probe {
        id: row.try_get("probe_id")?,
        url: row.try_get("url")?,
        kind,
    })
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
