//! pg-webhooks-relay: delivers pg_webhooks events from PostgreSQL to HTTP receivers.
//!
//! An event's way through the modules: `listen` (wake-up) → `pipeline` (claim loop) →
//! `relay_api::claim` (lease in SQL) → `deliver` (per delivery: `limits`, `render`, `sign`,
//! `send`, `retry`) → `acks` (batched outcomes back through `relay_api::acknowledge`).
//! `relay_api` is every SQL call the relay makes, with the rows and reports they carry.
//! `probe` runs verification and test requests admins ask for. `config` holds every option
//! and default, `tunables` the fixed numbers, `connect` the connection string and TLS to
//! PostgreSQL, `lifecycle` signals and upkeep, `ssrf` the address policy, `metrics` /healthz
//! and /metrics.

mod acks;
mod config;
mod connect;
mod deliver;
mod lifecycle;
mod limits;
mod listen;
mod metrics;
mod pipeline;
mod probe;
mod relay_api;
mod render;
mod retry;
mod send;
mod sign;
mod ssrf;
mod tunables;

use config::{Config, ConfigError, LogFormat};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DatabaseUrl(#[from] connect::ConnectError),
    #[error("cannot start against the database: {0}")]
    Database(#[from] relay_api::DatabaseError),
    #[error("cannot build the database pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] send::ClientError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

impl StartError {
    fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_)
            | StartError::DatabaseUrl(_)
            | StartError::Client(send::ClientError::CaFile { .. }) => 2,
            StartError::Database(_) => 3,
            StartError::Listen { .. } => 4,
            _ => 1,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::load().unwrap_or_else(|error| error.exit()); // usage errors exit 2
    init_logging(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: Config) -> Result<(), StartError> {
    config.validate()?;
    let relay = config.relay_name();
    let mut database = connect::Database::parse(&config.database_url)?;
    if database.config.get_application_name().is_none() {
        database.config.application_name("pg-webhooks-relay"); // visible in pg_stat_activity
    }
    let pool = database.pool(config.database_connections as usize)?;
    relay_api::check_extension_version(&pool).await?;
    relay_api::set_idle(&pool, &relay, false).await?;

    let shutdown = CancellationToken::new();
    lifecycle::cancel_on_signals(shutdown.clone()).map_err(StartError::Signals)?;
    let metrics = metrics::Metrics::new()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen_addr,
            source,
        })?;
    let metrics_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen_addr,
        source,
    })?;
    tokio::spawn(metrics::serve(
        listener,
        metrics.clone(),
        pool.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(lifecycle::upkeep(
        pool.clone(),
        config.maintain_every,
        metrics.clone(),
        shutdown.clone(),
    ));
    let wake = listen::Wakeups::default();
    tokio::spawn(listen::run(
        database.clone(),
        wake.clone(),
        shutdown.clone(),
    ));

    let policy = Arc::new(ssrf::AddressPolicy {
        allowed: config.allowed_ranges(),
        https_only: config.https_only,
    });
    let sender = Arc::new(send::Sender::new(
        policy,
        &send::SendOptions {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
            response_excerpt_bytes: config.response_excerpt_bytes,
            // every request in flight may go to one host (the webhooks of one receiver); with
            // fewer idle connections kept, each request past that count opens a new one
            max_idle_connections_per_host: config.max_in_flight as usize,
            receiver_ca_file: config.receiver_ca_file.clone(),
        },
    )?);
    let timeouts = deliver::Timeouts {
        lease: config.lease,
        request: config.request_timeout,
    };
    tokio::spawn(
        probe::Prober {
            pool: pool.clone(),
            relay: relay.clone(),
            sender: sender.clone(),
            timeouts,
            poll_interval: config.poll_interval,
        }
        .run(wake.probes.clone(), shutdown.clone()),
    );
    let deliverer = Arc::new(deliver::Deliverer {
        sender,
        policy: retry::RetryPolicy {
            schedule: config.retry_schedule.clone(),
            jitter: config.retry_jitter,
            max_retry_after: config.max_retry_after,
        },
        metrics: metrics.clone(),
        timeouts,
    });
    tracing::info!(
        relay, %metrics_addr, attempts = config.retry_schedule.attempts(),
        sslmode = database.mode.name(),
        config_file = ?config.config, "relay started"
    );
    pipeline::Pipeline {
        relay,
        pool,
        deliverer,
        limits: limits::Limits::new(
            config.max_in_flight_per_webhook as usize,
            config.claim_ahead as usize,
            config.start_window(),
        ),
        wake: wake.deliveries,
        metrics,
        timing: pipeline::Timing {
            poll_interval: config.poll_interval,
            busy_poll: config.busy_poll,
            claim_gap: config.claim_gap,
            idle_after: config.idle_after,
            lease: config.lease,
            shutdown_grace: config.shutdown_grace,
        },
        batch_size: config.batch_size as usize,
        max_in_flight: config.max_in_flight as usize,
    }
    .run(shutdown)
    .await;
    Ok(())
}
