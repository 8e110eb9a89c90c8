//! The outcome policy: what an attempt's result means for the delivery. Pure functions.
//!
//!   2xx                      delivered
//!   410 Gone                 gone: the webhook is disabled at once
//!   429, 503 + Retry-After   retry no earlier than Retry-After (capped), nor than the schedule
//!   anything else, no reply  retry after the schedule's next delay, ± jitter
//!   ... after the last scheduled attempt: failed (parked, redeliverable from SQL)
//!   unsendable               failed at once: the request cannot be made (its data cannot be
//!                            rendered, its secret is unusable), and would not be on a retry
//! 3xx counts as a failure: redirects are never followed (they could lead anywhere).

use crate::relay_api::AttemptOutcome;
use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::time::Duration;

/// The delay before each attempt; its length is the number of attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(Vec<Duration>);

impl FromStr for RetrySchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let delays = text
            .split(',')
            .map(|part| {
                humantime::parse_duration(part.trim()).map_err(|e| format!("{part:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the schedule needs at least one entry".into());
        }
        Ok(RetrySchedule(delays))
    }
}

impl RetrySchedule {
    /// A webhook's own schedule as claim() returns it (validated in SQL); None if it is empty
    /// or holds a negative delay.
    pub fn from_millis(delays: &[i64]) -> Option<RetrySchedule> {
        let delays = delays
            .iter()
            .map(|&ms| u64::try_from(ms).ok().map(Duration::from_millis))
            .collect::<Option<Vec<_>>>()?;
        (!delays.is_empty()).then_some(RetrySchedule(delays))
    }

    pub fn attempts(&self) -> usize {
        self.0.len()
    }

    /// Its longest delay.
    pub fn longest(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    /// The delay before attempt `attempt + 1`, if there is one.
    fn delay_after(&self, attempt: i32) -> Option<Duration> {
        usize::try_from(attempt)
            .ok()
            .and_then(|n| self.0.get(n))
            .copied()
    }
}

/// What an attempt produced, as far as the policy cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    NoResponse,
    /// The request could not be made, and no retry would change that.
    Unsendable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    Gone,
    /// Try again this long after the acknowledgement (the database adds it to its own clock).
    Retry {
        after: Duration,
    },
    Failed,
}

impl Decision {
    pub fn outcome(&self) -> AttemptOutcome {
        match self {
            Decision::Delivered => AttemptOutcome::Delivered,
            Decision::Gone => AttemptOutcome::Gone,
            Decision::Retry { .. } => AttemptOutcome::Retry,
            Decision::Failed => AttemptOutcome::Failed,
        }
    }
}

pub struct RetryPolicy {
    pub schedule: RetrySchedule,
    pub jitter: f64,
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// `own_schedule` is the webhook's, if it has one (else the relay's applies); `attempt` is
    /// the 1-based number of the attempt that produced `answer`; `spread` is a random number in
    /// [-1, 1] (the caller's dice, so this stays testable).
    pub fn decide(
        &self,
        own_schedule: Option<&RetrySchedule>,
        attempt: i32,
        answer: &Answer,
        spread: f64,
    ) -> Decision {
        let retry_after = match answer {
            Answer::Status { code, .. } if (200..300).contains(code) => return Decision::Delivered,
            Answer::Status { code: 410, .. } => return Decision::Gone,
            Answer::Unsendable => return Decision::Failed,
            Answer::Status {
                code: 429 | 503,
                retry_after,
            } => *retry_after,
            _ => None,
        };
        let schedule = own_schedule.unwrap_or(&self.schedule);
        let Some(scheduled) = schedule.delay_after(attempt) else {
            return Decision::Failed;
        };
        let jittered = scheduled.mul_f64((1.0 + self.jitter * spread.clamp(-1.0, 1.0)).max(0.0));
        let delay = match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        };
        Decision::Retry { after: delay }
    }
}

/// Retry-After as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value.trim())
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok().or(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &str) -> RetryPolicy {
        RetryPolicy {
            schedule: schedule.parse().expect("schedule"),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(3600),
        }
    }

    fn status(code: u16) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    fn retry_in(decision: Decision) -> Duration {
        match decision {
            Decision::Retry { after } => after,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn any_2xx_is_delivered() {
        for code in [200, 201, 204, 299] {
            assert_eq!(
                policy("0s,5s").decide(None, 1, &status(code), 0.0),
                Decision::Delivered
            );
        }
    }

    #[test]
    fn gone_is_gone_whatever_the_attempt() {
        assert_eq!(
            policy("0s,5s").decide(None, 1, &status(410), 0.0),
            Decision::Gone
        );
    }

    #[test]
    fn a_request_that_cannot_be_made_is_parked_at_once() {
        assert_eq!(
            policy("0s,5s,5m").decide(None, 1, &Answer::Unsendable, 0.0),
            Decision::Failed
        );
    }

    #[test]
    fn redirects_client_and_server_errors_follow_the_schedule() {
        for code in [301, 302, 400, 404, 500, 502] {
            assert_eq!(
                retry_in(policy("0s,5s,5m").decide(None, 1, &status(code), 0.0)),
                Duration::from_secs(5)
            );
        }
        assert_eq!(
            retry_in(policy("0s,5s,5m").decide(None, 2, &Answer::NoResponse, 0.0)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn after_the_last_attempt_the_delivery_fails() {
        assert_eq!(
            policy("0s,5s").decide(None, 2, &status(500), 0.0),
            Decision::Failed
        );
        assert_eq!(
            policy("0s").decide(None, 1, &Answer::NoResponse, 0.0),
            Decision::Failed
        );
    }

    #[test]
    fn a_webhooks_own_schedule_replaces_the_relays() {
        let own = RetrySchedule::from_millis(&[0, 60_000, 3_600_000]).expect("a schedule");
        let relays = policy("0s,5s");
        assert_eq!(
            retry_in(relays.decide(Some(&own), 1, &status(500), 0.0)),
            Duration::from_secs(60)
        );
        // three attempts, not the relay's two
        assert_eq!(
            retry_in(relays.decide(Some(&own), 2, &status(500), 0.0)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            relays.decide(Some(&own), 3, &status(500), 0.0),
            Decision::Failed
        );
        assert_eq!(RetrySchedule::from_millis(&[]), None);
        assert_eq!(RetrySchedule::from_millis(&[0, -1]), None);
    }

    #[test]
    fn jitter_spreads_the_delay_within_its_fraction() {
        assert_eq!(
            retry_in(policy("0s,100s").decide(None, 1, &status(500), 1.0)),
            Duration::from_secs(120)
        );
        assert_eq!(
            retry_in(policy("0s,100s").decide(None, 1, &status(500), -1.0)),
            Duration::from_secs(80)
        );
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_but_capped() {
        let asked = |secs| Answer::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            retry_in(policy("0s,5s").decide(None, 1, &asked(60), 0.0)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_in(policy("0s,5s").decide(None, 1, &asked(1), 0.0)),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_in(policy("0s,5s").decide(None, 1, &asked(86_400), 0.0)),
            Duration::from_secs(3600)
        );
        let unavailable = Answer::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            retry_in(policy("0s,5s").decide(None, 1, &unavailable, 0.0)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:01:00 GMT", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn schedules_need_an_entry_and_valid_durations() {
        assert!("".parse::<RetrySchedule>().is_err());
        assert!("5s,later".parse::<RetrySchedule>().is_err());
        assert_eq!(
            "0s, 5s".parse::<RetrySchedule>().map(|s| s.attempts()),
            Ok(2)
        );
    }
}
