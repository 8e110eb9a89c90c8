//! Isolation between webhooks: a per-webhook concurrency limit (a slow or dead endpoint cannot
//! take every slot), an optional per-webhook rate limit, and the global in-flight count.
//! Deliveries in hand may exceed the concurrency for an endpoint that answers quickly: they are
//! claimed ahead and wait for a slot, so a claim round trip is not paid per few requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::tunables::{MAX_SPACING, REMEMBER_SPEED_FOR};

/// What one webhook may have: how many requests at once, how many in hand, how fast.
struct WebhookSlots {
    /// Deliveries in hand: sending, or waiting for their turn.
    in_hand: usize,
    concurrency: usize,
    /// Deliveries one request carries (configure's "batch"; 1 without).
    batch: usize,
    /// How long its attempts take (a moving average), once known.
    typical_duration: Option<Duration>,
    last_answer: Option<Instant>,
    semaphore: Arc<Semaphore>,
    /// Minimum spacing between request starts, from the webhook's rate limit.
    spacing: Option<Duration>,
    /// When the next request may start. Held across the wait, so waiters queue in order and
    /// one that gives up (shutdown, lease at risk) leaves no reservation behind.
    next_start: Arc<AsyncMutex<Instant>>,
}

impl WebhookSlots {
    fn new(concurrency: usize) -> WebhookSlots {
        WebhookSlots {
            in_hand: 0,
            concurrency,
            batch: 1,
            typical_duration: None,
            last_answer: None,
            semaphore: Arc::new(Semaphore::new(concurrency)),
            spacing: None,
            next_start: Arc::new(AsyncMutex::new(Instant::now())),
        }
    }

    /// Deliveries it may have in hand: no more than surely start within the window. A
    /// rate-limited webhook gets as many as its rate starts in the window; an endpoint of known
    /// speed up to `claim_ahead` rounds of its concurrency, with half the window to spare; one
    /// of unknown speed (new, or forgotten when idle) one round. A request that carries a batch
    /// counts as that many deliveries.
    fn capacity(&self, start_window: Duration, claim_ahead: usize) -> usize {
        self.requests_in_window(start_window, claim_ahead)
            .saturating_mul(self.batch)
    }

    fn requests_in_window(&self, start_window: Duration, claim_ahead: usize) -> usize {
        let startable = |every: Duration| start_window.as_secs_f64() / every.as_secs_f64();
        // float-to-int casts saturate; at least one, or the webhook would starve
        match (self.spacing, self.typical_duration) {
            (Some(spacing), _) if !spacing.is_zero() => {
                (startable(spacing).floor() as usize).clamp(1, self.concurrency)
            }
            (_, Some(typical)) => {
                let rounds = (startable(typical * 2).floor() as usize).clamp(1, claim_ahead);
                self.concurrency * rounds
            }
            _ => self.concurrency,
        }
    }

    /// How many more deliveries it can use now: none when it has its capacity in hand, or its
    /// rate limit lets the next request start only after a delivery claimed now would have
    /// to be released.
    fn room(&self, now: Instant, start_window: Duration, claim_ahead: usize) -> usize {
        let spaced_out = self
            .next_start
            .try_lock()
            .is_ok_and(|next_start| *next_start > now + start_window);
        if spaced_out {
            return 0;
        }
        self.capacity(start_window, claim_ahead)
            .saturating_sub(self.in_hand)
    }

    fn attempt_took(&mut self, took: Duration) {
        self.last_answer = Some(Instant::now());
        self.typical_duration = Some(match self.typical_duration {
            Some(typical) => typical.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
    }

    /// Nothing here that a fresh entry would not recreate: no delivery in hand, no rate limit
    /// still spacing the next start, and no recent answer whose speed is worth remembering.
    fn forgettable(&self, now: Instant) -> bool {
        self.in_hand == 0
            && self
                .last_answer
                .is_none_or(|at| now.duration_since(at) > REMEMBER_SPEED_FOR)
            && self
                .next_start
                .try_lock()
                .is_ok_and(|next_start| *next_start <= now)
    }
}

pub struct Limits {
    default_per_webhook: usize,
    /// In hand per webhook, at most, in multiples of its concurrency (--claim-ahead).
    claim_ahead: usize,
    /// How long after its claim a delivery may still start (lease minus request timeout).
    start_window: Duration,
    webhooks: Mutex<HashMap<i64, WebhookSlots>>,
    total: AtomicUsize,
    /// Signalled whenever a delivery finishes: capacity may have come free.
    pub freed: Notify,
}

/// A request's place in line, for the deliveries it carries; dropping it frees the place.
pub struct Ticket {
    limits: Arc<Limits>,
    webhook_id: i64,
    deliveries: usize,
}

/// What the next claim may take: nothing from `skip`, and from the webhooks in `room` at most
/// their number (instead of the default per webhook).
#[derive(Debug, Default, PartialEq)]
pub struct ClaimRooms {
    pub skip: Vec<i64>,
    pub room: Vec<(i64, usize)>,
}

/// A webhook's own settings, from its claim row.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookLimits {
    pub max_in_flight: Option<i32>,
    pub rate_limit_per_second: Option<f64>,
    /// Deliveries per request (configure's "batch"), if more than one.
    pub batch_size: Option<i32>,
}

impl WebhookLimits {
    /// How many deliveries one request to this webhook may carry: its batch size, or 1.
    pub fn deliveries_per_request(&self) -> usize {
        self.batch_size
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .max(1)
    }
}

impl Limits {
    pub fn new(
        default_per_webhook: usize,
        claim_ahead: usize,
        start_window: Duration,
    ) -> Arc<Limits> {
        Arc::new(Limits {
            default_per_webhook,
            claim_ahead: claim_ahead.max(1),
            start_window,
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

    /// How much each webhook in use can take in the next claim.
    pub fn claim_rooms(&self) -> ClaimRooms {
        let now = Instant::now();
        let mut rooms = ClaimRooms::default();
        let mut webhooks = self.lock();
        webhooks.retain(|_, slots| !slots.forgettable(now));
        for (&id, slots) in webhooks.iter() {
            match slots.room(now, self.start_window, self.claim_ahead) {
                0 => rooms.skip.push(id),
                room => rooms.room.push((id, room)),
            }
        }
        rooms
    }

    pub fn default_per_webhook(&self) -> usize {
        self.default_per_webhook
    }

    /// Take on one request's deliveries (one, or a batch) for a webhook; its own settings (the
    /// newest claim row's) win over the defaults.
    pub fn enter(
        self: &Arc<Self>,
        webhook_id: i64,
        own: WebhookLimits,
        deliveries: usize,
    ) -> Ticket {
        let concurrency = own
            .max_in_flight
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(self.default_per_webhook);
        let spacing = own
            .rate_limit_per_second
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .and_then(|rate| Duration::try_from_secs_f64(1.0 / rate).ok())
            .map(|spacing| spacing.min(MAX_SPACING));
        let mut webhooks = self.lock();
        let slots = webhooks
            .entry(webhook_id)
            .or_insert_with(|| WebhookSlots::new(concurrency));
        if slots.concurrency != concurrency {
            // Changed in SQL: a fresh semaphore applies it from now on; requests already
            // holding a slot of the old one finish undisturbed.
            slots.concurrency = concurrency;
            slots.semaphore = Arc::new(Semaphore::new(concurrency));
        }
        slots.spacing = spacing;
        slots.batch = own.deliveries_per_request();
        slots.in_hand += deliveries;
        self.total.fetch_add(deliveries, Ordering::AcqRel);
        Ticket {
            limits: self.clone(),
            webhook_id,
            deliveries,
        }
    }
}

impl Ticket {
    /// How long an attempt took: how many of this webhook's deliveries to claim ahead.
    pub fn attempt_took(&self, took: Duration) {
        if let Some(slots) = self.limits.lock().get_mut(&self.webhook_id) {
            slots.attempt_took(took);
        }
    }

    /// Wait for a free slot of this webhook, and for its rate limit.
    pub async fn wait_turn(&self) -> Option<OwnedSemaphorePermit> {
        let (semaphore, spacing, next_start) = {
            let webhooks = self.limits.lock();
            let slots = webhooks.get(&self.webhook_id)?;
            (
                slots.semaphore.clone(),
                slots.spacing,
                slots.next_start.clone(),
            )
        };
        let permit = semaphore.acquire_owned().await.ok()?;
        if let Some(spacing) = spacing {
            let mut next_start = next_start.lock().await;
            tokio::time::sleep_until(*next_start).await;
            *next_start = Instant::now() + spacing;
        }
        Some(permit)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut webhooks = self.limits.lock();
            if let Some(slots) = webhooks.get_mut(&self.webhook_id) {
                slots.in_hand = slots.in_hand.saturating_sub(self.deliveries);
                // Forget idle webhooks, so `claim_rooms` only walks the ones in use.
                if slots.forgettable(Instant::now()) {
                    webhooks.remove(&self.webhook_id);
                }
            }
        }
        self.limits
            .total
            .fetch_sub(self.deliveries, Ordering::AcqRel);
        self.limits.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(45);
    const AHEAD: usize = 8;

    fn limited(max_in_flight: i32) -> WebhookLimits {
        WebhookLimits {
            max_in_flight: Some(max_in_flight),
            ..WebhookLimits::default()
        }
    }

    fn rate(per_second: f64) -> WebhookLimits {
        WebhookLimits {
            rate_limit_per_second: Some(per_second),
            ..WebhookLimits::default()
        }
    }

    #[test]
    fn a_webhook_at_its_limit_is_saturated_until_a_delivery_finishes() {
        let limits = Limits::new(2, AHEAD, WINDOW);
        let first = limits.enter(7, WebhookLimits::default(), 1);
        let _second = limits.enter(7, WebhookLimits::default(), 1);
        let _other = limits.enter(8, WebhookLimits::default(), 1);
        assert_eq!(limits.claim_rooms().skip, vec![7]);
        assert_eq!(limits.total(), 3);
        drop(first);
        assert!(limits.claim_rooms().skip.is_empty());
        assert_eq!(limits.total(), 2);
    }

    #[test]
    fn a_webhooks_own_limit_wins() {
        let limits = Limits::new(16, AHEAD, WINDOW);
        let _only = limits.enter(1, limited(1), 1);
        assert_eq!(limits.claim_rooms().skip, vec![1]);
    }

    #[test]
    fn a_slow_rate_limit_caps_deliveries_in_hand() {
        // one start every 20 s: only two fit in a 45 s window
        let limits = Limits::new(16, AHEAD, WINDOW);
        let _first = limits.enter(1, rate(0.05), 1);
        assert!(limits.claim_rooms().skip.is_empty());
        let _second = limits.enter(1, rate(0.05), 1);
        assert_eq!(limits.claim_rooms().skip, vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_webhook_whose_next_start_is_beyond_the_window_is_saturated() {
        // one start every 100 s: after a send, nothing claimed for 55 s could start in time
        let limits = Limits::new(16, AHEAD, WINDOW);
        let ticket = limits.enter(1, rate(0.01), 1);
        drop(ticket.wait_turn().await);
        drop(ticket);
        assert_eq!(limits.claim_rooms().skip, vec![1]);
        tokio::time::advance(Duration::from_secs(56)).await;
        assert!(limits.claim_rooms().skip.is_empty());
    }

    #[test]
    fn idle_webhooks_are_forgotten() {
        let limits = Limits::new(2, AHEAD, WINDOW);
        drop(limits.enter(7, WebhookLimits::default(), 1));
        assert!(limits.lock().is_empty());
    }

    #[test]
    fn rates_too_slow_to_represent_are_capped_instead_of_panicking() {
        let limits = Limits::new(4, AHEAD, WINDOW);
        for slow in [1e-20, f64::MIN_POSITIVE, 5e-324] {
            let _ticket = limits.enter(1, rate(slow), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_starts() {
        let limits = Limits::new(10, AHEAD, WINDOW);
        let start = Instant::now();
        let tickets: Vec<Ticket> = (0..3).map(|_| limits.enter(1, rate(10.0), 1)).collect();
        for ticket in &tickets {
            let _permit = ticket.wait_turn().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_webhook_is_remembered_until_its_spacing_passes() {
        let limits = Limits::new(10, AHEAD, WINDOW);
        let ticket = limits.enter(1, rate(1.0), 1);
        drop(ticket.wait_turn().await);
        drop(ticket);
        assert_eq!(limits.lock().len(), 1, "the next start is still spaced");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_no_reservation() {
        let limits = Limits::new(10, AHEAD, WINDOW);
        let first = limits.enter(1, rate(1.0), 1);
        let second = limits.enter(1, rate(1.0), 1);
        let third = limits.enter(1, rate(1.0), 1);
        drop(first.wait_turn().await);
        // the second gives up while waiting for its start
        let gave_up = tokio::time::timeout(Duration::from_millis(100), second.wait_turn()).await;
        assert!(gave_up.is_err());
        let before = Instant::now();
        drop(third.wait_turn().await);
        assert!(before.elapsed() <= Duration::from_secs(1));
    }

    #[test]
    fn a_webhook_of_unknown_speed_gets_one_round_of_its_concurrency() {
        let limits = Limits::new(16, AHEAD, WINDOW);
        let _first = limits.enter(1, WebhookLimits::default(), 1);
        assert_eq!(limits.claim_rooms().room, vec![(1, 15)]);
    }

    #[test]
    fn a_quick_webhook_is_claimed_ahead() {
        let limits = Limits::new(16, AHEAD, WINDOW);
        let first = limits.enter(1, WebhookLimits::default(), 1);
        first.attempt_took(Duration::from_millis(2));
        assert_eq!(limits.claim_rooms().room, vec![(1, 16 * AHEAD - 1)]);
    }

    #[test]
    fn a_slow_webhook_gets_only_what_starts_within_the_window() {
        // 10 s a request, with half the window to spare: two rounds of 16
        let limits = Limits::new(16, AHEAD, WINDOW);
        let first = limits.enter(1, WebhookLimits::default(), 1);
        first.attempt_took(Duration::from_secs(10));
        assert_eq!(limits.claim_rooms().room, vec![(1, 2 * 16 - 1)]);
        first.attempt_took(Duration::from_secs(60));
        first.attempt_took(Duration::from_secs(60));
        assert_eq!(limits.claim_rooms().room, vec![(1, 16 - 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_webhooks_speed_is_remembered_for_a_while_after_its_last_answer() {
        let limits = Limits::new(16, AHEAD, WINDOW);
        let ticket = limits.enter(1, WebhookLimits::default(), 1);
        ticket.attempt_took(Duration::from_millis(2));
        drop(ticket);
        assert_eq!(limits.claim_rooms().room, vec![(1, 16 * AHEAD)]);
        tokio::time::advance(REMEMBER_SPEED_FOR + Duration::from_secs(1)).await;
        assert_eq!(limits.claim_rooms(), ClaimRooms::default());
    }

    #[test]
    fn a_batch_counts_every_delivery_it_carries_and_widens_its_webhooks_room() {
        let limits = Limits::new(2, AHEAD, WINDOW);
        let batched = WebhookLimits {
            batch_size: Some(10),
            ..WebhookLimits::default()
        };
        let ticket = limits.enter(1, batched, 10);
        assert_eq!(limits.total(), 10);
        // speed unknown: one round of its 2 requests at once, of 10 deliveries each
        assert_eq!(limits.claim_rooms().room, vec![(1, 10)]);
        drop(ticket);
        assert_eq!(limits.total(), 0);
    }
}
