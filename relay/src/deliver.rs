//! One request from lease to reports: wait for the webhook's turn, render, sign, send, decide.
//! A request carries one delivery, or a batch of one webhook's (configure's "batch").

use crate::limits::Ticket;
use crate::metrics::Metrics;
use crate::relay_api::{AttemptReport, Delivery};
use crate::render::{Message, Request, Shape};
use crate::retry::{parse_retry_after, Answer, Decision, RetryPolicy};
use crate::send::{Reply, Sender};
use crate::{render, sign};
use chrono::Utc;
use rand::Rng;
use std::collections::HashMap;
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
    /// Deliver one request's deliveries: one, or a batch of one webhook's (`into_requests`).
    pub async fn deliver(
        &self,
        request: Vec<Delivery>,
        ticket: Ticket,
        stop: Stop,
    ) -> Vec<AttemptReport> {
        let Some(first) = request.first() else {
            return Vec::new();
        };
        let start_by = first.claimed_at + self.timeouts.start_window(&first.shape);
        let _turn = tokio::select! {
            turn = ticket.wait_turn() => turn,
            _ = tokio::time::sleep_until(start_by) => {
                return self.release(&request, "no turn before the lease runs out");
            }
            _ = stop.shutdown.cancelled() => return self.release(&request, "shutting down"),
        };
        tokio::select! {
            reports = self.attempt(&request) => {
                // timeouts and failures count too: they hold a slot as long
                let took = reports.first().map_or(0, |report| report.duration_ms);
                ticket.attempt_took(Duration::from_millis(took.unsigned_abs().into()));
                reports
            }
            _ = stop.abort.cancelled() => self.release(&request, "shutdown grace period over"),
        }
    }

    fn release(&self, request: &[Delivery], why: &'static str) -> Vec<AttemptReport> {
        request
            .iter()
            .map(|delivery| {
                tracing::debug!(
                    delivery = delivery.delivery_id,
                    webhook = delivery.webhook_id,
                    why,
                    "released unattempted"
                );
                self.metrics.count("released");
                AttemptReport::released(delivery)
            })
            .collect()
    }

    /// Send the request, then decide each delivery's outcome from the one answer (a batch's
    /// deliveries may be on different attempts, so each has its own decision).
    async fn attempt(&self, request: &[Delivery]) -> Vec<AttemptReport> {
        let ids: Vec<String> = request
            .iter()
            .map(|delivery| render::message_id(delivery.event_id))
            .collect();
        let messages: Vec<Message> = request
            .iter()
            .zip(&ids)
            .map(|(delivery, id)| Message {
                id,
                event_id: delivery.event_id,
                event: &delivery.event,
                occurred_at: delivery.occurred_at,
                data: &delivery.data,
            })
            .collect();
        let first = &request[0];
        let timeout = self.timeouts.request_for(&first.shape);
        let reply = {
            let _in_flight = self.metrics.in_flight();
            match messages.as_slice() {
                [message] => {
                    send_message(
                        &self.sender,
                        message,
                        &first.url,
                        &first.shape,
                        &first.secrets,
                        timeout,
                    )
                    .await
                }
                batch => {
                    let id = render::batch_id(first.event_id);
                    let body = render::batch_request(batch, &first.url, &first.shape);
                    sign_and_send(
                        &self.sender,
                        &id,
                        body,
                        &first.shape,
                        &first.secrets,
                        timeout,
                    )
                    .await
                }
            }
        };
        self.metrics.duration.observe(reply.duration.as_secs_f64());
        let answer = answer(&reply);
        request
            .iter()
            .map(|delivery| self.report(delivery, &reply, &answer))
            .collect()
    }

    fn report(&self, delivery: &Delivery, reply: &Reply, answer: &Answer) -> AttemptReport {
        let decision = self.policy.decide(
            delivery.retry_schedule.as_ref(),
            delivery.attempt,
            answer,
            rand::rng().random_range(-1.0..=1.0),
        );
        self.metrics.count(decision.outcome().name());
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
            response: reply.excerpt.clone(),
            duration_ms: i32::try_from(reply.duration.as_millis()).unwrap_or(i32::MAX),
        }
    }
}

/// The requests a claim's deliveries make, in claim order: one each, but a batching webhook's
/// (configure's "batch") go together, up to its batch size per request.
pub fn into_requests(deliveries: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut requests: Vec<Vec<Delivery>> = Vec::new();
    // the request still filling, per batching webhook
    let mut filling: HashMap<i64, usize> = HashMap::new();
    for delivery in deliveries {
        let batch = delivery.limits.deliveries_per_request();
        if batch > 1 {
            if let Some(&open) = filling.get(&delivery.webhook_id) {
                if requests[open].len() < batch {
                    requests[open].push(delivery);
                    continue;
                }
            }
            filling.insert(delivery.webhook_id, requests.len());
        }
        requests.push(vec![delivery]);
    }
    requests
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
    match render::request(message, url, shape) {
        Ok(request) => sign_and_send(sender, message.id, request, shape, secrets, timeout).await,
        Err(error) => {
            tracing::error!(message = message.id, %error, "cannot render");
            Reply::failed("render", Duration::ZERO)
        }
    }
}

/// Sign a rendered request as message `id` and send it with the webhook's own headers.
async fn sign_and_send(
    sender: &Sender,
    id: &str,
    request: Request,
    shape: &Shape,
    secrets: &[String],
    timeout: Duration,
) -> Reply {
    match sign::headers(secrets, id, Utc::now(), &request) {
        Ok(signature) => {
            // the signature's headers win over the webhook's own (SQL refuses those names anyway)
            let mut headers = shape.headers.clone();
            headers.extend(signature);
            sender.send(request, headers, timeout).await
        }
        Err(error) => {
            tracing::error!(message = id, %error, "cannot sign");
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
    use crate::limits::WebhookLimits;

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

    fn claimed(webhook_id: i64, event_id: i64, batch_size: Option<i32>) -> Delivery {
        Delivery {
            delivery_id: event_id,
            attempt: 1,
            webhook_id,
            url: "https://example.com/hook".to_owned(),
            secrets: Vec::new(),
            event_id,
            event: "profile.updated".to_owned(),
            occurred_at: Utc::now(),
            data: "{}".to_owned(),
            limits: WebhookLimits {
                batch_size,
                ..WebhookLimits::default()
            },
            shape: Shape::default(),
            retry_schedule: None,
            claimed_at: tokio::time::Instant::now(),
        }
    }

    #[test]
    fn a_batching_webhooks_deliveries_share_requests_up_to_its_batch_size_in_claim_order() {
        let deliveries = vec![
            claimed(1, 1, Some(2)),
            claimed(2, 2, None),
            claimed(1, 3, Some(2)),
            claimed(1, 4, Some(2)),
            claimed(2, 5, None),
        ];
        let requests: Vec<Vec<i64>> = into_requests(deliveries)
            .iter()
            .map(|request| request.iter().map(|d| d.event_id).collect())
            .collect();
        assert_eq!(requests, [vec![1, 3], vec![2], vec![4], vec![5]]);
    }

    #[test]
    fn a_webhooks_own_timeout_is_cut_to_half_the_lease() {
        let patient = shape_with_timeout(Some(600));
        assert_eq!(TIMEOUTS.request_for(&patient), Duration::from_secs(30));
        assert_eq!(TIMEOUTS.start_window(&patient), Duration::from_secs(30));
    }
}
