//! Every option of the relay, with its default, in one place. Each flag can also be set through
//! the environment variable named next to it (handy in a systemd EnvironmentFile).

use crate::retry::RetrySchedule;
use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "pg-webhooks-relay",
    version,
    about = "Delivers pg_webhooks events from PostgreSQL to HTTP receivers, signed and retried."
)]
pub struct Config {
    /// PostgreSQL connection: a URL (postgresql://...) or key=value pairs.
    #[arg(long, env = "PG_WEBHOOKS_DATABASE_URL")]
    pub database_url: String,

    /// Name of this relay in leases and logs [default: <hostname>-<pid>].
    #[arg(long, env = "PG_WEBHOOKS_RELAY_NAME")]
    pub relay_name: Option<String>,

    /// How often an idle relay looks for work even without a notification.
    #[arg(long, env = "PG_WEBHOOKS_POLL_INTERVAL", default_value = "1s", value_parser = duration)]
    pub poll_interval: Duration,

    /// How often a busy relay looks again when a claim came back empty.
    #[arg(long, env = "PG_WEBHOOKS_BUSY_POLL", default_value = "5ms", value_parser = duration)]
    pub busy_poll: Duration,

    /// How long without work before the relay declares itself idle and waits for NOTIFY.
    #[arg(long, env = "PG_WEBHOOKS_IDLE_AFTER", default_value = "200ms", value_parser = duration)]
    pub idle_after: Duration,

    /// Deliveries leased per claim, at most.
    #[arg(long, env = "PG_WEBHOOKS_BATCH_SIZE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// Requests in flight (or waiting for their webhook's turn) across all webhooks.
    #[arg(long, env = "PG_WEBHOOKS_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,

    /// Requests in flight per webhook, unless the webhook sets max_in_flight itself.
    #[arg(long, env = "PG_WEBHOOKS_MAX_IN_FLIGHT_PER_WEBHOOK", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight_per_webhook: u32,

    /// How long a claimed delivery belongs to this relay; must outlast the request timeout.
    #[arg(long, env = "PG_WEBHOOKS_LEASE", default_value = "60s", value_parser = duration)]
    pub lease: Duration,

    /// Time allowed to open a connection to a receiver.
    #[arg(long, env = "PG_WEBHOOKS_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,

    /// Time allowed for a whole attempt, response body included.
    #[arg(long, env = "PG_WEBHOOKS_REQUEST_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Bytes of a response body read at most; the rest is not read.
    #[arg(long, env = "PG_WEBHOOKS_MAX_RESPONSE_BYTES", default_value_t = 64 * 1024)]
    pub max_response_bytes: usize,

    /// Bytes of a response body kept in the attempt log.
    #[arg(
        long,
        env = "PG_WEBHOOKS_RESPONSE_EXCERPT_BYTES",
        default_value_t = 1024
    )]
    pub response_excerpt_bytes: usize,

    /// Delay before each attempt: the first entry before attempt 1, and so on; after the last
    /// attempt a failing delivery is parked as failed.
    #[arg(
        long,
        env = "PG_WEBHOOKS_RETRY_SCHEDULE",
        default_value = "0s,5s,5m,30m,2h,5h,10h,10h"
    )]
    pub retry_schedule: RetrySchedule,

    /// Random spread of each retry delay, as a fraction (0.2 = ±20%).
    #[arg(long, env = "PG_WEBHOOKS_RETRY_JITTER", default_value_t = 0.2)]
    pub retry_jitter: f64,

    /// The longest Retry-After (on 429 and 503) that is honoured.
    #[arg(long, env = "PG_WEBHOOKS_MAX_RETRY_AFTER", default_value = "1h", value_parser = duration)]
    pub max_retry_after: Duration,

    /// Address ranges that may be called although they are internal (loopback, private...).
    /// Repeat or separate with commas; empty by default.
    #[arg(long, env = "PG_WEBHOOKS_ALLOW_CIDR", value_delimiter = ',', value_parser = cidr)]
    pub allow_cidr: Vec<Option<IpNet>>,

    /// Refuse plain http:// webhook URLs.
    #[arg(long, env = "PG_WEBHOOKS_HTTPS_ONLY")]
    pub https_only: bool,

    /// Where /healthz and /metrics are served.
    #[arg(
        long,
        env = "PG_WEBHOOKS_LISTEN_ADDR",
        default_value = "127.0.0.1:9187"
    )]
    pub listen_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "PG_WEBHOOKS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// After SIGTERM, how long requests in flight may take before they are released.
    #[arg(long, env = "PG_WEBHOOKS_SHUTDOWN_GRACE", default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// How often webhooks.maintain() runs (partitions, retention).
    #[arg(long, env = "PG_WEBHOOKS_MAINTAIN_EVERY", default_value = "60s", value_parser = duration)]
    pub maintain_every: Duration,

    /// Database connections in the pool (the LISTEN connection comes on top).
    #[arg(long, env = "PG_WEBHOOKS_DATABASE_CONNECTIONS", default_value_t = 4)]
    pub database_connections: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--lease ({lease:?}) must be longer than --request-timeout ({timeout:?})")]
    LeaseTooShort { lease: Duration, timeout: Duration },
    #[error("--retry-jitter must be between 0 and 1, not {0}")]
    Jitter(f64),
    #[error("--response-excerpt-bytes ({0}) must not exceed --max-response-bytes ({1})")]
    Excerpt(usize, usize),
}

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// An empty entry means "none", so `--allow-cidr ''` clears the list.
fn cidr(text: &str) -> Result<Option<IpNet>, ipnet::AddrParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some)
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease <= self.request_timeout {
            return Err(ConfigError::LeaseTooShort {
                lease: self.lease,
                timeout: self.request_timeout,
            });
        }
        if !(0.0..=1.0).contains(&self.retry_jitter) {
            return Err(ConfigError::Jitter(self.retry_jitter));
        }
        if self.response_excerpt_bytes > self.max_response_bytes {
            return Err(ConfigError::Excerpt(
                self.response_excerpt_bytes,
                self.max_response_bytes,
            ));
        }
        Ok(())
    }

    pub fn relay_name(&self) -> String {
        self.relay_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    pub fn allowed_ranges(&self) -> Vec<IpNet> {
        self.allow_cidr.iter().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(
            ["pg-webhooks-relay", "--database-url", "host=/tmp"]
                .iter()
                .chain(args),
        )
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(config.request_timeout, Duration::from_secs(15));
        assert_eq!(config.lease, Duration::from_secs(60));
        assert_eq!(config.retry_schedule.attempts(), 8);
        assert!(config.allowed_ranges().is_empty());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn allow_cidr_takes_lists_and_an_empty_value() {
        let config =
            parse(&["--allow-cidr", "127.0.0.0/8,10.0.0.0/8", "--allow-cidr", ""]).expect("parses");
        assert_eq!(config.allowed_ranges().len(), 2);
    }

    #[test]
    fn a_lease_shorter_than_the_request_timeout_is_refused() {
        let config = parse(&["--lease", "10s", "--request-timeout", "15s"]).expect("parses");
        assert!(matches!(
            config.validate(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
    }

    #[test]
    fn bad_durations_are_refused() {
        assert!(parse(&["--poll-interval", "soon"]).is_err());
    }
}
