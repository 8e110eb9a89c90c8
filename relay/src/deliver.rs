//! One delivery from lease to report: wait for the webhook's turn, render, sign, send, decide.

use crate::claim::{AttemptReport, Delivery};
use crate::limits::Ticket;
use crate::metrics::Metrics;
use crate::retry::{parse_retry_after, Answer, Decision, RetryPolicy};
use crate::send::{Reply, Sender};
use crate::{render, sign};
use chrono::Utc;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Deliverer {
    pub sender: Sender,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
}

impl Deliverer {
    /// Deliver, unless `abort` fires first: then the lease is released untouched.
    pub async fn deliver(
        &self,
        delivery: Delivery,
        ticket: Ticket,
        abort: CancellationToken,
    ) -> AttemptReport {
        tokio::select! {
            report = self.attempt(&delivery, &ticket) => report,
            _ = abort.cancelled() => AttemptReport::released(&delivery),
        }
    }

    async fn attempt(&self, delivery: &Delivery, ticket: &Ticket) -> AttemptReport {
        let _turn = ticket.wait_turn(delivery.rate_limit_per_second).await;
        let started_at = Utc::now();
        let body = render::body(delivery);
        let reply = match signature_headers(delivery, started_at.timestamp(), &body) {
            Ok(headers) => {
                self.metrics.in_flight.inc();
                let reply = self.sender.post(&delivery.url, headers, body).await;
                self.metrics.in_flight.dec();
                reply
            }
            Err(error) => {
                tracing::error!(webhook = delivery.webhook_id, %error, "cannot sign");
                Reply::failed("bad_secret", Duration::ZERO)
            }
        };
        let decision = self.policy.decide(
            delivery.attempt,
            &answer(&reply),
            Utc::now(),
            rand::rng().random_range(-1.0..=1.0),
        );
        self.metrics.observe(decision.outcome(), reply.duration);
        tracing::debug!(
            delivery = delivery.delivery_id, webhook = delivery.webhook_id, attempt = delivery.attempt,
            status = ?reply.status, error = ?reply.error, outcome = decision.outcome(), "attempt"
        );
        AttemptReport {
            delivery_id: delivery.delivery_id,
            attempt: delivery.attempt,
            outcome: decision.outcome(),
            retry_at: match decision {
                Decision::Retry { at } => Some(at),
                _ => None,
            },
            status: reply.status,
            error: reply.error,
            response: reply.excerpt,
            started_at,
            duration_ms: i64::try_from(reply.duration.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// A status counts even if the body broke off afterwards, except for a success: a 2xx whose
/// body could not be read in time still counts as delivered (the receiver said yes).
fn answer(reply: &Reply) -> Answer {
    match reply.status {
        Some(code) if reply.error.is_none() || (200..300).contains(&code) => Answer::Status {
            code,
            retry_after: reply
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, Utc::now())),
        },
        _ => Answer::NoResponse,
    }
}

fn signature_headers(
    delivery: &Delivery,
    timestamp: i64,
    body: &[u8],
) -> Result<HeaderMap, SignatureError> {
    let id = render::message_id(delivery);
    let signature = sign::signature_header(&delivery.secrets, &id, timestamp, body)?;
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(&id)?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", HeaderValue::from_str(&signature)?);
    Ok(headers)
}

#[derive(Debug, thiserror::Error)]
enum SignatureError {
    #[error(transparent)]
    Sign(#[from] sign::SignError),
    #[error("header value: {0}")]
    Header(#[from] reqwest::header::InvalidHeaderValue),
}
