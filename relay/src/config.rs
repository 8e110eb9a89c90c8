//! Every option of the relay, with its default, in one place. Each flag can also be set through
//! the environment variable named next to it (handy in a systemd EnvironmentFile), or in a TOML
//! file given with --config (keys are the flag names: `retry-schedule = "0s,5s"`). A flag wins
//! over its variable, which wins over the file, which wins over the default.

use crate::retry::RetrySchedule;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use ipnet::IpNet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "pg-webhooks-relay",
    version,
    about = "Delivers pg_webhooks events from PostgreSQL to HTTP receivers, signed and retried."
)]
pub struct Config {
    /// A TOML file of options (keys are the flag names without the dashes in front).
    #[arg(long, env = "PG_WEBHOOKS_CONFIG")]
    pub config: Option<PathBuf>,

    /// PostgreSQL connection: a URL (postgresql://...) or key=value pairs; TLS with libpq's
    /// sslmode (disable, prefer [default], require, verify-ca, verify-full) and sslrootcert.
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

    /// While events come faster than claims return them (a claim leased 16 or more), the least
    /// time between the starts of two claims (0: claim again as soon as a claim found work or a
    /// request finished). Each claim costs PostgreSQL a fixed part whatever it finds: 10ms gave
    /// writers beside the relay 4% more (median of 4 rounds), and cut the rate of draining a backlog into one
    /// webhook by a quarter (BENCHMARKS.md, "Claims spaced while busy"), so off by default. A
    /// claim that took all it asked for is followed at once.
    #[arg(long, env = "PG_WEBHOOKS_CLAIM_GAP", default_value = "0s", value_parser = duration)]
    pub claim_gap: Duration,

    /// How long without work before the relay declares itself idle and waits for NOTIFY.
    /// Short, because a NOTIFY wakes the relay at once while a busy relay finds new work only
    /// at its next poll; a busy relay is not notified, as NOTIFY serialises writers' commits.
    #[arg(long, env = "PG_WEBHOOKS_IDLE_AFTER", default_value = "10ms", value_parser = duration)]
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

    /// Deliveries a quickly answering webhook may have in hand (claimed, waiting for a slot),
    /// in multiples of its in-flight limit: fewer claims per request. Only as many as surely
    /// start before their lease runs out; 1 turns claiming ahead off.
    #[arg(long, env = "PG_WEBHOOKS_CLAIM_AHEAD", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub claim_ahead: u32,

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

    /// CA certificates (a PEM file) trusted for HTTPS receivers besides the public ones, for
    /// receivers whose certificates come from a private CA.
    #[arg(long, env = "PG_WEBHOOKS_RECEIVER_CA_FILE")]
    pub receiver_ca_file: Option<PathBuf>,

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

    /// Database connections in the pool (the LISTEN connection comes on top). At least two:
    /// claims and acknowledgements run side by side.
    #[arg(long, env = "PG_WEBHOOKS_DATABASE_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_connections: u32,
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
    #[error("--{0} must be longer than zero")]
    Zero(&'static str),
    #[error("--{name} ({value:?}) must be at most {limit:?}")]
    TooLong {
        name: &'static str,
        value: Duration,
        limit: Duration,
    },
}

/// The longest any duration option may be (a week), and a retry schedule's entries (30 days):
/// longer ones are surely typing errors, and past what PostgreSQL intervals and timers take.
const LONGEST_SETTING: Duration = Duration::from_secs(7 * 86_400);
const LONGEST_RETRY_DELAY: Duration = Duration::from_secs(30 * 86_400);

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

/// The --config path (flag or environment variable), looked up before the real parse because
/// the file's values become that parse's defaults.
fn config_file_named_in(args: &[OsString]) -> Option<PathBuf> {
    Config::command()
        .ignore_errors(true)
        .try_get_matches_from(args)
        .ok()?
        .get_one::<PathBuf>("config")
        .cloned()
}

/// The file's options as (argument id, value) pairs; a list becomes a comma-separated value.
fn read_config_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .map(|items| items.join(",")),
                other => scalar(other),
            }
            .ok_or_else(|| {
                format!(
                    "{}: {key} must be a string, number, boolean, or a list of them",
                    path.display()
                )
            })?;
            Ok((key.replace('-', "_"), value))
        })
        .collect()
}

fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

impl Config {
    /// Reads the options from the command line, the environment and the --config file.
    pub fn load() -> Result<Config, clap::Error> {
        Config::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Config::command();
        if let Some(path) = config_file_named_in(&args) {
            let options = read_config_file(&path)
                .map_err(|message| command.error(ErrorKind::InvalidValue, message))?;
            for (id, value) in options {
                if id == "config" || !command.get_arguments().any(|arg| arg.get_id() == &id) {
                    let message = format!("{}: unknown option {id:?}", path.display());
                    return Err(command.error(ErrorKind::UnknownArgument, message));
                }
                // the file's values become defaults, so flags and variables still win; a
                // default does not count as given, so a required option is required no more
                command = command.mut_arg(id, |arg| arg.default_value(value).required(false));
            }
        }
        let matches = command.try_get_matches_from_mut(args)?;
        Config::from_arg_matches(&matches)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("poll-interval", self.poll_interval),
            ("connect-timeout", self.connect_timeout),
            ("request-timeout", self.request_timeout),
            ("maintain-every", self.maintain_every),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        for (name, value, limit) in [
            ("poll-interval", self.poll_interval, LONGEST_SETTING),
            ("busy-poll", self.busy_poll, LONGEST_SETTING),
            ("claim-gap", self.claim_gap, LONGEST_SETTING),
            ("idle-after", self.idle_after, LONGEST_SETTING),
            ("lease", self.lease, LONGEST_SETTING),
            ("connect-timeout", self.connect_timeout, LONGEST_SETTING),
            ("request-timeout", self.request_timeout, LONGEST_SETTING),
            ("max-retry-after", self.max_retry_after, LONGEST_SETTING),
            ("shutdown-grace", self.shutdown_grace, LONGEST_SETTING),
            ("maintain-every", self.maintain_every, LONGEST_SETTING),
            (
                "retry-schedule",
                self.retry_schedule.longest(),
                LONGEST_RETRY_DELAY,
            ),
        ] {
            if value > limit {
                return Err(ConfigError::TooLong { name, value, limit });
            }
        }
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
            let host = nix::unistd::gethostname().unwrap_or_default();
            format!("{}-{}", host.to_string_lossy(), std::process::id())
        })
    }

    /// How long after its claim a delivery may still start: the attempt must end before the
    /// lease does, or another relay could send it as well.
    pub fn start_window(&self) -> Duration {
        self.lease.saturating_sub(self.request_timeout)
    }

    pub fn allowed_ranges(&self) -> Vec<IpNet> {
        self.allow_cidr.iter().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::load_from(
            ["pg-webhooks-relay", "--database-url", "host=/tmp"]
                .iter()
                .chain(args),
        )
    }

    /// A config file in a fresh temporary directory, removed when the guard is dropped.
    struct ConfigFile(PathBuf);

    impl ConfigFile {
        fn new(name: &str, text: &str) -> ConfigFile {
            let dir = std::env::temp_dir().join(format!(
                "pg-webhooks-relay-test-{}-{name}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temporary directory");
            let path = dir.join("relay.toml");
            std::fs::write(&path, text).expect("write the config file");
            ConfigFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temporary path")
        }
    }

    impl Drop for ConfigFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
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

    #[test]
    fn zero_intervals_are_refused() {
        let config = parse(&["--maintain-every", "0s"]).expect("parses");
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Zero("maintain-every"))
        ));
    }

    #[test]
    fn durations_past_their_limit_and_a_jitter_of_nan_are_refused() {
        for (flag, value) in [
            ("--lease", "30days"),
            ("--poll-interval", "8days"),
            ("--retry-schedule", "0s,31days"),
            ("--retry-jitter", "NaN"),
            ("--retry-jitter", "inf"),
        ] {
            let config = parse(&[flag, value]).expect("parses");
            assert!(config.validate().is_err(), "{flag} {value}");
        }
        let config = parse(&["--retry-schedule", "0s,30days"]).expect("parses");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_config_file_sets_defaults_that_flags_override() {
        let file = ConfigFile::new(
            "defaults",
            r#"
                batch-size = 50
                retry_schedule = ["0s", "1m"]
                https-only = true
                allow-cidr = ["10.0.0.0/8", "192.168.0.0/16"]
                request-timeout = "30s"
                lease = "2m"
            "#,
        );
        let config = parse(&["--config", file.arg(), "--batch-size", "7"]).expect("parses");
        assert_eq!(config.batch_size, 7);
        assert_eq!(config.retry_schedule.attempts(), 2);
        assert!(config.https_only);
        assert_eq!(config.allowed_ranges().len(), 2);
        assert_eq!(config.start_window(), Duration::from_secs(90));
    }

    #[test]
    fn the_config_file_may_hold_the_database_url() {
        let file = ConfigFile::new("url", r#"database-url = "host=/run/postgresql""#);
        let config =
            Config::load_from(["pg-webhooks-relay", "--config", file.arg()]).expect("parses");
        assert_eq!(config.database_url, "host=/run/postgresql");
    }

    #[test]
    fn unknown_keys_and_unreadable_files_are_refused() {
        let file = ConfigFile::new("unknown", "batch-sise = 50");
        let error = parse(&["--config", file.arg()]).expect_err("refused");
        assert!(error.to_string().contains("batch_sise"), "{error}");
        assert!(parse(&["--config", "/nonexistent/relay.toml"]).is_err());
    }

    const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pg-webhooks-relay.toml");

    /// The options a file may set (all but --config, --help and --version), as file keys.
    fn file_options() -> Vec<(String, Option<String>)> {
        Config::command()
            .get_arguments()
            .filter(|arg| !["config", "help", "version"].contains(&arg.get_id().as_str()))
            .map(|arg| {
                let default = arg
                    .get_default_values()
                    .iter()
                    .map(|value| value.to_string_lossy().into_owned())
                    .reduce(|all, value| format!("{all},{value}"))
                    // a switch (--https-only) is off unless given
                    .or_else(|| (!arg.get_action().takes_values()).then(|| "false".to_owned()));
                (arg.get_id().as_str().replace('_', "-"), default)
            })
            .collect()
    }

    #[test]
    fn the_sample_config_file_sets_every_option_with_a_default_to_that_default() {
        let set: std::collections::HashMap<_, _> = read_config_file(Path::new(SAMPLE))
            .expect("the sample file reads")
            .into_iter()
            .collect();
        for (key, default) in file_options() {
            if let Some(default) = default {
                assert_eq!(
                    set.get(&key.replace('-', "_")),
                    Some(&default),
                    "{key} in {SAMPLE}"
                );
            }
        }
    }

    #[test]
    fn the_sample_config_file_shows_every_option_without_a_default_commented_out() {
        let text = std::fs::read_to_string(SAMPLE).expect("the sample file");
        for (key, default) in file_options() {
            if default.is_none() {
                assert!(
                    text.lines()
                        .any(|line| line.starts_with(&format!("# {key} = "))),
                    "{key} is missing from {SAMPLE}"
                );
            }
        }
    }

    #[test]
    fn the_sample_config_file_is_a_working_config() {
        let config = parse(&["--config", SAMPLE]).expect("the sample file loads");
        let defaults = parse(&[]).expect("defaults");
        assert_eq!(
            format!("{config:?}"),
            format!("{defaults:?}").replace(
                "config: None",
                &format!("config: Some({:?})", PathBuf::from(SAMPLE))
            )
        );
    }
}
