//! Latency at a steady 50 events/s: from the moment the emitting statement is sent (so it
//! includes the insert and the commit) to the moment the receiver has the request.

use crate::receiver::Receiver;
use crate::setup::{start_relay, stop_relay, BenchDb};
use crate::stats::{percentile, spread};
use crate::Options;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const EVENTS_PER_SECOND: u64 = 50;

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let seconds = options.scale(30, 4) as u64;
    println!(
        "Latency at {EVENTS_PER_SECOND} events/s for {seconds} s, commit to receipt \
         (goal: p50 <= 5 ms, p99 <= 25 ms)"
    );
    let (mut p50s, mut p99s, mut raw_p50s) = (vec![], vec![], vec![]);
    for _ in 0..options.repeats() {
        let (p50, p99, raw_p50) = measure(options, seconds).await?;
        p50s.push(p50);
        p99s.push(p99);
        raw_p50s.push(raw_p50);
    }
    println!(
        "  p50 {} ms | p99 {} ms | plain HTTP request to the same receiver p50 {} ms",
        spread(&p50s, 2),
        spread(&p99s, 2),
        spread(&raw_p50s, 2)
    );
    Ok(())
}

/// (p50, p99 of commit to receipt, p50 of a plain request), in milliseconds.
async fn measure(options: &Options, seconds: u64) -> anyhow::Result<(f64, f64, f64)> {
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let receiver = Receiver::start(Some(arrivals_tx)).await?;
    let db = BenchDb::create(options.cluster(), "bench_latency").await?;
    db.subscribe(&[receiver.url("/hook")]).await?;
    let relay = start_relay(options, &db.conninfo, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await; // started, and idle: waiting for NOTIFY

    let emit = db
        .client
        .prepare("SELECT webhooks.emit('bench.e0', jsonb_build_object('n', $1::bigint))")
        .await?;
    let count = (EVENTS_PER_SECOND * seconds) as i64;
    let mut sent = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / EVENTS_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..count {
        tick.tick().await;
        sent.insert(n, Instant::now());
        db.client.execute(&emit, &[&n]).await?;
    }
    let mut latencies = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(15);
    while latencies.len() < count as usize && Instant::now() < give_up {
        if let Ok(Some((n, arrived))) =
            tokio::time::timeout(Duration::from_secs(1), arrivals.recv()).await
        {
            if let Some(start) = sent.get(&n) {
                latencies.push((arrived - *start).as_secs_f64() * 1000.0);
            }
        }
    }
    stop_relay(relay).await?;
    anyhow::ensure!(
        latencies.len() == count as usize,
        "only {} of {count} events arrived",
        latencies.len()
    );
    let raw = plain_request_latencies(&receiver).await?;
    Ok((
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&raw, 0.5),
    ))
}

/// 200 plain POSTs, one after the other, on a kept-alive connection (milliseconds each).
async fn plain_request_latencies(receiver: &Receiver) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for n in 0..200 {
        let started = Instant::now();
        client
            .post(receiver.url("/plain"))
            .body(format!(r#"{{"data": {{"n": {}}}}}"#, -n - 1))
            .send()
            .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}
