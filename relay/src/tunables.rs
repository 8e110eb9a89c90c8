//! The relay's fixed tunables: numbers that are not options (config.rs holds every option and
//! its default), each with the reason for its value. Kept in one place so that what the relay
//! does on its own can be read and changed without hunting through the modules.

use std::time::Duration;

/// Acknowledgements (acks.rs): outcomes are gathered for this long, or until this many are
/// waiting, then recorded in one `webhooks.ack()` call; a failing call is tried this often
/// before the relay gives up on the batch (its leases then run out and are claimed again).
pub const ACK_BATCH: usize = 500;
pub const ACK_GATHER_FOR: Duration = Duration::from_millis(5);
pub const ACK_TRIES: u32 = 5;

/// Claims (pipeline.rs): after a failed claim (the database restarted, a session was killed)
/// the relay tries again this soon, doubling up to --poll-interval.
pub const FIRST_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Claims a relay makes at --busy-poll after marking itself idle, before it relies on NOTIFY.
pub const LOOKS_AFTER_IDLE: u32 = 1;
/// --claim-gap applies after a claim that leased at least this many deliveries: events then
/// arrive faster than claims return them, and each claim's fixed cost in PostgreSQL is what
/// writers lose (BENCHMARKS.md, "Claims spaced while busy"). After a smaller claim (events
/// coming one at a time) the next starts at once: a gap there would only add latency.
pub const CLAIM_GAP_FROM: usize = 16;

/// Probes (probe.rs) taken per claim; they are rare, and each takes at most two requests.
pub const PROBES_PER_CLAIM: i32 = 16;

/// Limits (limits.rs): how long a webhook's speed is remembered after its last answer while
/// it has nothing in hand.
pub const REMEMBER_SPEED_FOR: Duration = Duration::from_secs(10);
/// The longest spacing a rate limit makes: that of the slowest rate SQL accepts (0.001 per
/// second, webhooks._check_limits). A slower one arriving anyway is treated as this.
pub const MAX_SPACING: Duration = Duration::from_secs(1000);

/// LISTEN connection (listen.rs): reconnects wait this long at first, doubling up to the most.
pub const LISTEN_MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Metrics (lifecycle.rs): how often the queue depth gauge is read from the database.
pub const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Logs (send.rs): a webhook whose address the SSRF policy refuses is logged at most this often.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(600);
