//! Isolation: ten healthy endpoints beside one that accepts connections and never answers. The
//! healthy ones' rate with it, against their rate without it, in the same run.

use crate::receiver::{never_answering, Receiver};
use crate::setup::{start_relay, stop_relay, BenchDb};
use crate::stats::spread;
use crate::Options;
use anyhow::Context;
use std::time::{Duration, Instant};

const HEALTHY: usize = 10;

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let events = options.scale(20_000, 2_000);
    println!(
        "Isolation: {events} events for {HEALTHY} healthy endpoints, beside one that never answers \
         (it gets a tenth as many) and without it (goal: ratio >= 0.9)"
    );
    let (mut with_rates, mut without_rates, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..options.repeats() {
        let without = healthy_rate(options, events, false).await?;
        let with = healthy_rate(options, events, true).await?;
        without_rates.push(without);
        with_rates.push(with);
        ratios.push(with / without);
    }
    println!(
        "  healthy endpoints: {} events/s alone | {} events/s beside the silent one | ratio {}",
        spread(&without_rates, 0),
        spread(&with_rates, 0),
        spread(&ratios, 2)
    );
    Ok(())
}

/// Events per second reaching the healthy endpoints.
async fn healthy_rate(options: &Options, events: usize, with_silent: bool) -> anyhow::Result<f64> {
    let receiver = Receiver::start(None).await?;
    let mut urls: Vec<String> = (0..HEALTHY)
        .map(|i| receiver.url(&format!("/e{i}")))
        .collect();
    let mut total = events;
    if with_silent {
        urls.push(format!("http://{}/silent", never_answering().await?));
        total = events + events / HEALTHY; // round-robin: the silent one gets events / HEALTHY
    }
    let db = BenchDb::create(options.cluster(), "bench_isolation").await?;
    db.subscribe(&urls).await?;
    db.fill(total, urls.len()).await?;
    let started = Instant::now();
    let relay = start_relay(options, &db.conninfo, &["--shutdown-grace", "1s"])?;
    let done = receiver
        .wait_for(events, Duration::from_secs(60 + events as u64 / 100))
        .await
        .context("the healthy endpoints did not get every event in time")?;
    stop_relay(relay).await?;
    Ok(events as f64 / (done - started).as_secs_f64())
}
