//! Delivery rate: a pre-filled outbox drained by the relay (fan-out, claim, render, sign, send,
//! acknowledge), against the raw ceiling: a plain HTTP client sending the same bodies to the
//! same receiver with the same concurrency, in the same run.

use crate::receiver::Receiver;
use crate::setup::{start_relay, stop_relay, BenchDb, CpuMeter};
use crate::stats::spread;
use crate::Options;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The relay's defaults: 256 requests in flight, 16 per webhook.
fn relay_concurrency(endpoints: usize) -> usize {
    (16 * endpoints).min(256)
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let events = options.scale(100_000, 3_000);
    println!(
        "Delivery rate: {events} pre-filled events, signed, against a plain HTTP client sending \
         the same bodies (goal: ratio >= 0.6)"
    );
    // the last: one endpoint taking batches of BATCH events per request (configure's "batch"),
    // against the same plain client sending one event per request
    for (endpoints, batch) in [(1, None), (100, None), (1, Some(BATCH))] {
        let (mut relay_rates, mut raw_rates, mut ratios) = (vec![], vec![], vec![]);
        let (mut relay_cores, mut machine_busy) = (vec![], vec![]);
        for _ in 0..options.repeats() {
            let run = measure(options, events, endpoints, batch).await?;
            relay_rates.push(run.relay_rate);
            raw_rates.push(run.raw_rate);
            ratios.push(run.relay_rate / run.raw_rate);
            relay_cores.push(run.relay_cores);
            machine_busy.push(run.machine_busy);
        }
        let batches = batch.map_or(String::new(), |n| format!(", batches of {n}"));
        println!(
            "  {endpoints:>3} endpoint(s){batches}: relay {} events/s | raw client {} requests/s | ratio {}",
            spread(&relay_rates, 0),
            spread(&raw_rates, 0),
            spread(&ratios, 2)
        );
        println!(
            "        while the relay drained: relay process {} cores, machine {} busy",
            spread(&relay_cores, 2),
            spread(&machine_busy, 2)
        );
    }
    Ok(())
}

struct Run {
    relay_rate: f64,
    raw_rate: f64,
    /// cores the relay process kept busy during its drain
    relay_cores: f64,
    /// share of the machine's CPU time that was busy during the drain (everything: PostgreSQL,
    /// relay, receiver)
    machine_busy: f64,
}

/// Events per request in the batch run.
const BATCH: usize = 50;

async fn measure(
    options: &Options,
    events: usize,
    endpoints: usize,
    batch: Option<usize>,
) -> anyhow::Result<Run> {
    let receiver = Receiver::start(None).await?;
    let urls: Vec<String> = (0..endpoints)
        .map(|i| receiver.url(&format!("/e{i}")))
        .collect();
    let db = BenchDb::create(options.cluster(), "bench_rate").await?;
    db.subscribe(&urls).await?;
    if let Some(batch) = batch {
        db.client
            .execute(
                "SELECT webhooks.configure(id, jsonb_build_object('batch', $1::integer))
                 FROM webhooks.webhooks",
                &[&i32::try_from(batch)?],
            )
            .await?;
    }
    db.fill(events, endpoints).await?;
    let limit = Duration::from_secs(60 + events as u64 / 100);

    let started = Instant::now();
    let relay = start_relay(options, &db.conninfo, &[])?;
    let cpu = CpuMeter::start(relay.id().context("relay pid")?)?;
    let done = receiver
        .wait_for(events, limit)
        .await
        .context("the relay did not deliver every event in time")?;
    let relay_rate = events as f64 / (done - started).as_secs_f64();
    let cpu = cpu.read()?;
    stop_relay(relay).await?;

    let raw_rate = raw_client(&receiver, &urls, events, relay_concurrency(endpoints)).await?;
    Ok(Run {
        relay_rate,
        raw_rate,
        relay_cores: cpu.process_cores,
        machine_busy: cpu.machine_busy,
    })
}

/// Send `count` bodies shaped like the relay's (same size, headers without a real signature)
/// round-robin to `urls`, `concurrency` at a time; requests per second.
async fn raw_client(
    receiver: &Receiver,
    urls: &[String],
    count: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let already = receiver.count();
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut requests = JoinSet::new();
    let started = Instant::now();
    for n in 0..count {
        let permit = slots.clone().acquire_owned().await?;
        let request = client
            .post(&urls[n % urls.len()])
            .header("content-type", "application/json")
            .header("webhook-id", format!("evt_{n}"))
            .header("webhook-timestamp", "1795341600")
            .header(
                "webhook-signature",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            )
            .body(body(n));
        requests.spawn(async move {
            let result = request.send().await;
            drop(permit);
            result.map(drop)
        });
        while let Some(done) = requests.try_join_next() {
            done??;
        }
    }
    while let Some(done) = requests.join_next().await {
        done??;
    }
    receiver
        .wait_for(already + count, Duration::from_secs(10))
        .await
        .context("the raw client's requests did not all arrive")?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The body the relay sends for event n of BenchDb::fill.
fn body(n: usize) -> String {
    serde_json::json!({
        "type": "bench.e0",
        "timestamp": "2026-11-22T10:00:00.000000Z",
        "data": {"n": n, "pad": "x".repeat(200), "email": format!("user{n}@example.com")},
    })
    .to_string()
}
