//! Isolation between webhooks: a per-webhook concurrency limit (a slow or dead endpoint cannot
//! take every slot), an optional per-webhook rate limit, and the global in-flight count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

struct WebhookSlots {
    limit: usize,
    queued: usize,
    semaphore: Arc<Semaphore>,
    next_send: Instant,
}

pub struct Limits {
    default_per_webhook: usize,
    webhooks: Mutex<HashMap<i64, WebhookSlots>>,
    total: AtomicUsize,
    /// Signalled whenever a delivery finishes: capacity may have come free.
    pub freed: Notify,
}

/// A delivery's place in line; dropping it frees the place.
pub struct Ticket {
    limits: Arc<Limits>,
    webhook_id: i64,
}

impl Limits {
    pub fn new(default_per_webhook: usize) -> Arc<Limits> {
        Arc::new(Limits {
            default_per_webhook,
            webhooks: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, WebhookSlots>> {
        self.webhooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deliveries taken on and not finished yet, across all webhooks.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Webhooks with as many deliveries in hand as they may have in flight: claim none for them.
    pub fn saturated(&self) -> Vec<i64> {
        self.lock()
            .iter()
            .filter(|(_, slots)| slots.queued >= slots.limit)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn default_per_webhook(&self) -> usize {
        self.default_per_webhook
    }

    /// Take on a delivery for a webhook (whose own limit, if set, wins over the default).
    pub fn enter(self: &Arc<Self>, webhook_id: i64, own_limit: Option<i32>) -> Ticket {
        let limit = own_limit
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(self.default_per_webhook);
        let mut webhooks = self.lock();
        let slots = webhooks.entry(webhook_id).or_insert_with(|| WebhookSlots {
            limit,
            queued: 0,
            semaphore: Arc::new(Semaphore::new(limit)),
            next_send: Instant::now(),
        });
        if slots.limit != limit {
            // the webhook's limit was changed in SQL: a fresh semaphore takes it from now on
            slots.limit = limit;
            slots.semaphore = Arc::new(Semaphore::new(limit));
        }
        slots.queued += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Ticket {
            limits: self.clone(),
            webhook_id,
        }
    }
}

impl Ticket {
    /// Wait for a free slot of this webhook, and for its rate limit.
    pub async fn wait_turn(
        &self,
        rate_limit_per_second: Option<f64>,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = self
            .limits
            .lock()
            .get(&self.webhook_id)
            .map(|slots| slots.semaphore.clone())?;
        let permit = semaphore.acquire_owned().await.ok()?;
        if let Some(rate) = rate_limit_per_second.filter(|rate| *rate > 0.0) {
            let spacing = Duration::from_secs_f64(1.0 / rate);
            let send_at = {
                let mut webhooks = self.limits.lock();
                let slots = webhooks.get_mut(&self.webhook_id)?;
                let send_at = slots.next_send.max(Instant::now());
                slots.next_send = send_at + spacing;
                send_at
            };
            tokio::time::sleep_until(send_at).await;
        }
        Some(permit)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(slots) = self.limits.lock().get_mut(&self.webhook_id) {
            slots.queued = slots.queued.saturating_sub(1);
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        self.limits.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_at_its_limit_is_saturated_until_a_delivery_finishes() {
        let limits = Limits::new(2);
        let first = limits.enter(7, None);
        let _second = limits.enter(7, None);
        let _other = limits.enter(8, None);
        assert_eq!(limits.saturated(), vec![7]);
        assert_eq!(limits.total(), 3);
        drop(first);
        assert!(limits.saturated().is_empty());
        assert_eq!(limits.total(), 2);
    }

    #[test]
    fn a_webhooks_own_limit_wins() {
        let limits = Limits::new(16);
        let _only = limits.enter(1, Some(1));
        assert_eq!(limits.saturated(), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_sends() {
        let limits = Limits::new(10);
        let start = Instant::now();
        for _ in 0..3 {
            let ticket = limits.enter(1, None);
            let _permit = ticket.wait_turn(Some(10.0)).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
