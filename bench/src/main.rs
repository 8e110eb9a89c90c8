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
    #[arg(long)]
    pub cluster: String,
    /// The relay binary to run
    #[arg(long)]
    pub relay_bin: PathBuf,
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
