//! pg-webhooks-bench: delivery rate against a raw HTTP ceiling, latency at a steady rate,
//! draining a large backlog (relay memory, table sizes after retention), and isolation from an
//! endpoint that never answers. Every figure is measured beside its baseline in the same run.
//! scripts/bench.sh starts the cluster and calls this; BENCHMARKS.md has the results.

mod receiver;
mod scenarios;
mod setup;
mod stats;

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Options {
    /// libpq connection string of the cluster, without dbname (user must create databases)
    #[arg(long, required_unless_present = "sink")]
    cluster: Option<String>,
    /// The relay binary to run
    #[arg(long, required_unless_present = "sink")]
    relay_bin: Option<PathBuf>,
    /// Only serve the counting receiver on this address until killed (for scripts/bench.sh's
    /// writer and database-work figures); `GET /count` answers how many requests arrived
    #[arg(long)]
    sink: Option<std::net::SocketAddr>,
    /// Small counts and one repeat: checks that every scenario still runs (a minute or two)
    #[arg(long)]
    pub quick: bool,
    /// Repeats of each measurement (min / median / max are printed)
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// An option for every relay started (repeatable), to see what a setting is worth:
    /// --relay-arg=--max-in-flight-per-webhook=64. The published figures use the defaults.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    pub relay_args: Vec<String>,
    /// Run only these scenarios (rate, latency, backlog, isolation)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

impl Options {
    pub fn cluster(&self) -> &str {
        self.cluster.as_deref().unwrap_or_default()
    }

    pub fn relay_bin(&self) -> &std::path::Path {
        self.relay_bin
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    /// `full` normally, `quick` with --quick.
    pub fn scale(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    pub fn repeats(&self) -> usize {
        if self.quick {
            1
        } else {
            self.repeats.max(1)
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    if let Some(addr) = options.sink {
        return receiver::serve_sink(addr).await;
    }
    if options.wants("rate") {
        scenarios::rate::run(&options).await?;
    }
    if options.wants("latency") {
        scenarios::latency::run(&options).await?;
    }
    if options.wants("isolation") {
        scenarios::isolation::run(&options).await?;
    }
    if options.wants("backlog") {
        scenarios::backlog::run(&options).await?;
    }
    Ok(())
}
