//! One delivery from lease to report: wait for the webhook's turn, render, sign, send, decide.

use crate::limits::Ticket;
use crate::metrics::Metrics;
use crate::relay_api::{AttemptReport, Delivery};
use crate::render::{Message, Shape};
use crate::retry::{parse_retry_after, Answer, Decision, RetryPolicy};
use crate::send::{Reply, Sender};
use crate::{render, sign};
use chrono::Utc;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Deliverer {
    pub sender: Arc<Sender>,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub timeouts: Timeouts,
}

/// The relay's lease and request timeout, and what they allow a webhook's own timeout.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub lease: Duration,
    pub request: Duration,
}

impl Timeouts {
    /// How long one request to this webhook may take: its own timeout, cut to half the lease so
    /// that enough of the lease is left to start in, or else the relay's.
    pub fn request_for(&self, shape: &Shape) -> Duration {
        shape
            .request_timeout
            .map_or(self.request, |own| own.min(self.lease / 2))
    }

    /// How long after its claim a delivery may still start: its attempt must end while the
    /// lease holds, or another relay may send it too.
    fn start_window(&self, shape: &Shape) -> Duration {
        self.lease.saturating_sub(self.request_for(shape))
    }
}

/// When a delivery stops: `shutdown` gives back those still waiting for their turn, `abort`
/// (after the grace period) also those in flight.
#[derive(Clone)]
pub struct Stop {
    pub shutdown: CancellationToken,
    pub abort: CancellationToken,
}

impl Deliverer {
    pub async fn deliver(&self, delivery: Delivery, ticket: Ticket, stop: Stop) -> AttemptReport {
        let start_by = delivery.claimed_at + self.timeouts.start_window(&delivery.shape);
        let _turn = tokio::select! {
            turn = ticket.wait_turn() => turn,
            _ = tokio::time::sleep_until(start_by) => {
                return self.release(&delivery, "no turn before the lease runs out");
            }
            _ = stop.shutdown.cancelled() => return self.release(&delivery, "shutting down"),
        };
        tokio::select! {
            report = self.attempt(&delivery) => {
                // timeouts and failures count too: they hold a slot as long
                ticket.attempt_took(Duration::from_millis(report.duration_ms.unsigned_abs().into()));
                report
            }
            _ = stop.abort.cancelled() => self.release(&delivery, "shutdown grace period over"),
        }
    }

    fn release(&self, delivery: &Delivery, why: &'static str) -> AttemptReport {
        tracing::debug!(
            delivery = delivery.delivery_id,
            webhook = delivery.webhook_id,
            why,
            "released unattempted"
        );
        self.metrics.count("released");
        AttemptReport::released(delivery)
    }

    async fn attempt(&self, delivery: &Delivery) -> AttemptReport {
        let id = render::message_id(delivery.event_id);
        let message = Message {
            id: &id,
            event_id: delivery.event_id,
            event: &delivery.event,
            occurred_at: delivery.occurred_at,
            data: &delivery.data,
        };
        let reply = {
            let _in_flight = self.metrics.in_flight();
            send_message(
                &self.sender,
                &message,
                &delivery.url,
                &delivery.shape,
                &delivery.secrets,
                self.timeouts.request_for(&delivery.shape),
            )
            .await
        };
        let decision = self.policy.decide(
            delivery.retry_schedule.as_ref(),
            delivery.attempt,
            &answer(&reply),
            rand::rng().random_range(-1.0..=1.0),
        );
        self.metrics.count(decision.outcome().name());
        self.metrics.duration.observe(reply.duration.as_secs_f64());
        tracing::debug!(
            delivery = delivery.delivery_id, webhook = delivery.webhook_id, attempt = delivery.attempt,
            status = ?reply.status, error = ?reply.error, outcome = decision.outcome().name(), "attempt"
        );
        AttemptReport {
            delivery_id: delivery.delivery_id,
            attempt: delivery.attempt,
            outcome: decision.outcome(),
            retry_after_ms: match decision {
                Decision::Retry { after } => {
                    Some(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
                }
                _ => None,
            },
            status: reply.status,
            error: reply.error,
            response: reply.excerpt,
            duration_ms: i32::try_from(reply.duration.as_millis()).unwrap_or(i32::MAX),
        }
    }
}

/// Render a message in the webhook's shape, sign it with its secrets (the signature's timestamp
/// is now) and send it, waiting at most `timeout` for the whole exchange. Deliveries and test
/// requests go this same way.
pub async fn send_message(
    sender: &Sender,
    message: &Message<'_>,
    url: &str,
    shape: &Shape,
    secrets: &[String],
    timeout: Duration,
) -> Reply {
    let request = match render::request(message, url, shape) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(message = message.id, %error, "cannot render");
            return Reply::failed("render", Duration::ZERO);
        }
    };
    match sign::headers(
        secrets,
        message.id,
        Utc::now().timestamp(),
        request.signed(),
    ) {
        Ok(signature) => {
            // the signature's headers win over the webhook's own (SQL refuses those names anyway)
            let mut headers = shape.headers.clone();
            headers.extend(signature);
            sender.send(request, headers, timeout).await
        }
        Err(error) => {
            tracing::error!(message = message.id, %error, "cannot sign");
            Reply::failed("bad_secret", Duration::ZERO)
        }
    }
}

/// Error classes of requests that could not be made: the same on every attempt.
const UNSENDABLE: [&str; 2] = ["render", "bad_secret"];

/// A status counts even if reading the body broke off afterwards: the receiver has answered,
/// and the body only feeds the excerpt.
fn answer(reply: &Reply) -> Answer {
    if reply.error.is_some_and(|class| UNSENDABLE.contains(&class)) {
        return Answer::Unsendable;
    }
    match reply.status {
        Some(code) => Answer::Status {
            code,
            retry_after: reply
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, Utc::now())),
        },
        None => Answer::NoResponse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        lease: Duration::from_secs(60),
        request: Duration::from_secs(15),
    };

    fn shape_with_timeout(seconds: Option<u64>) -> Shape {
        Shape {
            request_timeout: seconds.map(Duration::from_secs),
            ..Shape::default()
        }
    }

    #[test]
    fn a_webhooks_own_timeout_replaces_the_relays_and_narrows_its_start_window() {
        let slow = shape_with_timeout(Some(25));
        assert_eq!(TIMEOUTS.request_for(&slow), Duration::from_secs(25));
        assert_eq!(TIMEOUTS.start_window(&slow), Duration::from_secs(35));
        let plain = shape_with_timeout(None);
        assert_eq!(TIMEOUTS.request_for(&plain), Duration::from_secs(15));
        assert_eq!(TIMEOUTS.start_window(&plain), Duration::from_secs(45));
    }

    #[test]
    fn a_webhooks_own_timeout_is_cut_to_half_the_lease() {
        let patient = shape_with_timeout(Some(600));
        assert_eq!(TIMEOUTS.request_for(&patient), Duration::from_secs(30));
        assert_eq!(TIMEOUTS.start_window(&patient), Duration::from_secs(30));
    }
}
