//! The claim loop and the idle protocol.
//!
//! Busy: claim as long as work comes back and capacity remains (while events come faster than
//! claims return them, no sooner than --claim-gap after the last claim's start); after an empty
//! claim look again every --busy-poll.
//!
//! Idle: after --idle-after without work, mark this relay idle (writers then NOTIFY it), claim
//! once more at once and once after --busy-poll (a writer may have checked the flag just before
//! it flipped), then wait for a notification or --poll-interval. On a notification, claim, and
//! mark busy again once that claim found work.

use crate::acks;
use crate::deliver::{into_requests, Deliverer, Stop};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::relay_api::{self, AttemptReport, ClaimRequest, DatabaseError};
use deadpool_postgres::Pool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tunables::{CLAIM_GAP_FROM, FIRST_ERROR_PAUSE, LOOKS_AFTER_IDLE};

pub struct Timing {
    pub poll_interval: Duration,
    pub busy_poll: Duration,
    pub claim_gap: Duration,
    pub idle_after: Duration,
    pub lease: Duration,
    pub shutdown_grace: Duration,
}

pub struct Pipeline {
    pub relay: String,
    pub pool: Pool,
    pub deliverer: Arc<Deliverer>,
    pub limits: Arc<Limits>,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub timing: Timing,
    pub batch_size: usize,
    pub max_in_flight: usize,
}

#[derive(PartialEq)]
enum Woken {
    Notified,
    Freed,
    Timer,
}

struct Running {
    tasks: TaskTracker,
    stop: Stop,
    reports: mpsc::Sender<AttemptReport>,
}

impl Pipeline {
    pub async fn run(self, shutdown: CancellationToken) {
        let (reports, acker) = acks::start(self.pool.clone(), self.relay.clone());
        let running = Running {
            tasks: TaskTracker::new(),
            stop: Stop {
                shutdown: shutdown.clone(),
                abort: CancellationToken::new(),
            },
            reports,
        };
        self.claim_until(&shutdown, &running).await;

        running.tasks.close();
        let in_flight = self.limits.total();
        if tokio::time::timeout(self.timing.shutdown_grace, running.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.limits.total(),
                "grace period over; releasing the rest"
            );
            running.stop.abort.cancel();
            running.tasks.wait().await;
        }
        drop(running.reports);
        if acker.await.is_err() {
            tracing::error!("the acknowledgement task failed");
        }
        if let Err(error) = relay_api::leave(&self.pool, &self.relay).await {
            tracing::warn!(%error, "could not deregister");
        }
        tracing::info!(finished_or_released = in_flight, "relay stopped");
    }

    async fn claim_until(&self, shutdown: &CancellationToken, running: &Running) {
        let mut idle = false;
        let mut looks_after_idle = 0;
        let mut error_pause = FIRST_ERROR_PAUSE;
        // when the next claim may start (--claim-gap)
        let mut next_claim: Option<Instant> = None;
        let mut last_work = Instant::now(); // main() registered this relay as busy
        while !shutdown.is_cancelled() {
            let room = self.max_in_flight.saturating_sub(self.limits.total());
            if room == 0 {
                tokio::select! {
                    _ = self.limits.freed.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            if let Some(at) = next_claim.take() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            let started = Instant::now();
            match self.claim_batch(room, running).await {
                Ok(0) => {}
                Ok(leased) => {
                    next_claim =
                        gap_after(leased, room.min(self.batch_size), self.timing.claim_gap)
                            .map(|gap| started + gap);
                    error_pause = FIRST_ERROR_PAUSE;
                    if idle {
                        self.mark_idle(false).await;
                        idle = false;
                    }
                    last_work = Instant::now();
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?error_pause, "claim failed");
                    tokio::select! {
                        _ = tokio::time::sleep(error_pause) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    error_pause = (error_pause * 2).min(self.timing.poll_interval);
                    continue;
                }
            }
            error_pause = FIRST_ERROR_PAUSE;
            if !idle && last_work.elapsed() >= self.timing.idle_after {
                self.mark_idle(true).await;
                idle = true;
                looks_after_idle = LOOKS_AFTER_IDLE;
                tracing::debug!("idle: waiting for NOTIFY");
                continue;
            }
            // A writer that checked the flag just before it flipped sends no NOTIFY; its event
            // is found by the looks right after going idle (one at once, then one --busy-poll
            // later for a commit still under way), else by the --poll-interval poll.
            let wait = if !idle || looks_after_idle > 0 {
                looks_after_idle = looks_after_idle.saturating_sub(1);
                self.timing.busy_poll
            } else {
                self.timing.poll_interval
            };
            let woken = tokio::select! {
                _ = self.wake.notified() => Woken::Notified,
                // a finished request frees a slot of its webhook: claim again at once rather
                // than after --busy-poll (BENCHMARKS.md: the one-endpoint delivery rate)
                _ = self.limits.freed.notified(), if self.limits.total() > 0 => Woken::Freed,
                _ = tokio::time::sleep(wait) => Woken::Timer,
                _ = shutdown.cancelled() => break,
            };
            // A notified relay claims before it says it is busy again (the claim above does
            // that once it finds work): the event's latency does not wait for that write.
            if idle && woken == Woken::Timer && wait == self.timing.poll_interval {
                self.mark_idle(true).await; // heartbeat: maintain() forgets silent relays
            }
        }
    }

    /// Lease up to `room` deliveries and start each; returns how many were leased.
    async fn claim_batch(&self, room: usize, running: &Running) -> Result<usize, DatabaseError> {
        let relay_api::Claimed {
            deliveries,
            unreadable,
        } = relay_api::claim(
            &self.pool,
            ClaimRequest {
                relay: &self.relay,
                max_deliveries: to_i32(room.min(self.batch_size)),
                per_webhook: to_i32(self.limits.default_per_webhook()),
                rooms: self.limits.claim_rooms(),
                lease: self.timing.lease,
            },
        )
        .await?;
        if !deliveries.is_empty() {
            self.metrics.claims.inc();
        }
        let leased = deliveries.len() + unreadable.len();
        for report in unreadable {
            if running.reports.send(report).await.is_err() {
                tracing::error!("acknowledgement channel closed; the lease will expire");
            }
        }
        for request in into_requests(deliveries) {
            let first = &request[0];
            let ticket = self
                .limits
                .enter(first.webhook_id, first.limits, request.len());
            let deliverer = self.deliverer.clone();
            let reports = running.reports.clone();
            let stop = running.stop.clone();
            running.tasks.spawn(async move {
                for report in deliverer.deliver(request, ticket, stop).await {
                    if reports.send(report).await.is_err() {
                        tracing::error!("acknowledgement channel closed; the lease will expire");
                    }
                }
            });
        }
        Ok(leased)
    }

    async fn mark_idle(&self, idle: bool) {
        if let Err(error) = relay_api::set_idle(&self.pool, &self.relay, idle).await {
            tracing::warn!(%error, idle, "could not update the idle flag");
        }
    }
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// How long after a claim's start the next may start, if it must wait at all: only after a
/// claim busy enough that events come faster than claims return them (CLAIM_GAP_FROM), and not
/// after one that took all it asked for (`asked`), as more is surely waiting.
fn gap_after(leased: usize, asked: usize, claim_gap: Duration) -> Option<Duration> {
    (!claim_gap.is_zero() && leased >= CLAIM_GAP_FROM && leased < asked).then_some(claim_gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(10);

    #[test]
    fn a_busy_claim_spaces_the_next_by_the_gap() {
        assert_eq!(gap_after(CLAIM_GAP_FROM, 200, GAP), Some(GAP));
    }

    #[test]
    fn a_claim_of_a_few_events_is_followed_at_once() {
        assert_eq!(gap_after(CLAIM_GAP_FROM - 1, 200, GAP), None);
    }

    #[test]
    fn a_claim_that_took_all_it_asked_for_is_followed_at_once() {
        assert_eq!(gap_after(200, 200, GAP), None);
    }

    #[test]
    fn no_gap_is_kept_when_it_is_zero() {
        assert_eq!(gap_after(100, 200, Duration::ZERO), None);
    }
}
