//! Backlog: a large outbox drained; the relay's peak memory, and the outbox and delivery tables
//! after retention against their size when empty (no bloat left behind).
//!
//! The events are written 8 days in the past (their day's partitions made first), so that
//! retention (7 days) may drop them once they are delivered, as it would a week later.

use crate::receiver::Receiver;
use crate::setup::{peak_rss_mib, start_relay, stop_relay, BenchDb, CpuMeter};
use crate::Options;
use anyhow::Context;
use std::time::{Duration, Instant};

const SIZE: &str = "SELECT (pg_total_relation_size(t.rel)
        + coalesce((SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
                    WHERE i.inhparent = t.rel), 0))::bigint
    FROM (SELECT $1::text::regclass AS rel) t";

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let events = options.scale(1_000_000, 10_000);
    println!(
        "Backlog: {events} events drained (goals: relay peak RSS <= 100 MiB; tables after \
         retention <= 2x their empty size)"
    );
    let receiver = Receiver::start(None).await?;
    let db = BenchDb::create(options.cluster(), "bench_backlog").await?;
    db.subscribe(&[receiver.url("/hook")]).await?;
    let empty = sizes(&db).await?;
    fill_last_week(&db, events).await?;

    let started = Instant::now();
    // maintenance only when this scenario says so, to measure the tables before retention
    let relay = start_relay(options, &db.conninfo, &["--maintain-every", "1h"])?;
    let pid = relay.id().context("relay pid")?;
    let cpu = CpuMeter::start(pid)?;
    let done = receiver
        .wait_for(events, Duration::from_secs(120 + events as u64 / 200))
        .await
        .context("the relay did not drain the backlog in time")?;
    let elapsed = (done - started).as_secs_f64();
    let queued = "SELECT count(*) FROM webhooks.deliveries WHERE state <> 'delivered'";
    while db.value_i64(queued).await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await; // the last acknowledgements
    }
    let peak = peak_rss_mib(pid)?;
    let cpu = cpu.read()?;
    stop_relay(relay).await?;
    let drained = sizes(&db).await?;
    db.client.execute("SELECT webhooks.maintain()", &[]).await?;
    let retained = sizes(&db).await?;

    println!(
        "  drained in {elapsed:.1} s ({:.0} events/s); relay peak RSS {peak:.1} MiB; relay process \
         {:.2} cores, machine {:.2} busy",
        events as f64 / elapsed,
        cpu.process_cores,
        cpu.machine_busy
    );
    for (i, table) in ["events", "deliveries", "attempts", "successes"]
        .iter()
        .enumerate()
    {
        println!(
            "  {table:<10} empty {:>8.1} MiB | drained {:>8.1} MiB | after retention {:>8.1} MiB ({:.2}x empty)",
            mib(empty[i]),
            mib(drained[i]),
            mib(retained[i]),
            retained[i] as f64 / empty[i] as f64
        );
    }
    println!(
        "  (the goal is for events and deliveries; attempts and successes are dated by when they \
         were made, today, so retention keeps them for its full period)"
    );
    Ok(())
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Total size (with indexes and TOAST, over all partitions) of events, deliveries, attempts
/// and successes.
async fn sizes(db: &BenchDb) -> anyhow::Result<[i64; 4]> {
    let mut sizes = [0; 4];
    for (i, table) in [
        "webhooks.events",
        "webhooks.deliveries",
        "webhooks.attempts",
        "webhooks.successes",
    ]
    .iter()
    .enumerate()
    {
        sizes[i] = db.client.query_one(SIZE, &[table]).await?.try_get(0)?;
    }
    Ok(sizes)
}

async fn fill_last_week(db: &BenchDb, events: usize) -> anyhow::Result<()> {
    db.client
        .batch_execute(
            "SELECT webhooks._create_partition(p, (now() AT TIME ZONE 'UTC')::date - 8)
             FROM unnest(ARRAY['events', 'deliveries']) p",
        )
        .await?;
    let mut start = 0i64;
    while start < events as i64 {
        let end = (start + 50_000).min(events as i64);
        db.client
            .execute(
                "INSERT INTO webhooks.events (created_at, event, payload)
                 SELECT now() - interval '8 days', 'bench.e0', jsonb_build_object(
                     'n', g, 'email', 'user' || g || '@example.com', 'pad', repeat('x', 200))
                 FROM generate_series($1::bigint, $2::bigint - 1) g",
                &[&start, &end],
            )
            .await?;
        start = end;
    }
    Ok(())
}
