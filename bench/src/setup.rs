//! A fresh database per measurement, events put into its outbox, and the relay as a process.

use crate::Options;
use anyhow::Context;
use std::process::Stdio;
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

pub struct BenchDb {
    pub conninfo: String,
    pub client: Client,
}

async fn connect(conninfo: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .with_context(|| format!("connect {conninfo}"))?;
    tokio::spawn(connection);
    Ok(client)
}

impl BenchDb {
    /// Drop and create database `name` with pg_webhooks; its webhooks need no verification.
    pub async fn create(cluster: &str, name: &str) -> anyhow::Result<BenchDb> {
        let admin = connect(&format!("{cluster} dbname=postgres")).await?;
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&statement).await?;
        }
        let conninfo = format!("{cluster} dbname={name}");
        let client = connect(&conninfo).await?;
        client
            .batch_execute(
                "CREATE EXTENSION pg_webhooks;
                 INSERT INTO webhooks.settings (require_verification) VALUES (false);",
            )
            .await?;
        client
            .batch_execute(include_str!("../kept_days.sql"))
            .await?;
        Ok(BenchDb { conninfo, client })
    }

    /// One webhook per URL, subscribed to `bench.e<i>`.
    pub async fn subscribe(&self, urls: &[String]) -> anyhow::Result<()> {
        for (i, url) in urls.iter().enumerate() {
            self.client
                .execute(
                    "SELECT webhooks.create('bench', $1, $2)",
                    &[&format!("bench.e{i}"), url],
                )
                .await?;
        }
        Ok(())
    }

    /// `count` events spread round-robin over `webhooks` event names, each with a body of a
    /// few hundred bytes, written in transactions of 10,000 (as a busy application would).
    pub async fn fill(&self, count: usize, webhooks: usize) -> anyhow::Result<()> {
        let mut start = 0;
        while start < count {
            let end = (start + 10_000).min(count);
            self.client
                .execute(
                    "SELECT count(webhooks.emit('bench.e' || (g % $3), jsonb_build_object(
                         'n', g, 'email', 'user' || g || '@example.com', 'pad', repeat('x', 200))))
                     FROM generate_series($1::bigint, $2::bigint - 1) g",
                    &[&(start as i64), &(end as i64), &(webhooks as i64)],
                )
                .await?;
            start = end;
        }
        Ok(())
    }

    pub async fn value_i64(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.client.query_one(sql, &[]).await?.try_get(0)?)
    }
}

/// The relay with its defaults (and the scenario's `extra` options, then --relay-arg ones),
/// allowed to post to loopback.
pub fn start_relay(options: &Options, conninfo: &str, extra: &[&str]) -> anyhow::Result<Child> {
    let relay_bin = options.relay_bin();
    Command::new(relay_bin)
        .args([
            "--database-url",
            conninfo,
            "--allow-cidr",
            "127.0.0.1/32",
            "--listen-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .args(&options.relay_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", relay_bin.display()))
}

/// Stop the relay (SIGTERM, as systemd would) and wait for it.
pub async fn stop_relay(mut relay: Child) -> anyhow::Result<()> {
    if let Some(pid) = relay.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    relay.wait().await?;
    Ok(())
}

/// The peak resident memory of a process so far (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

/// CPU use over an interval, from /proc (both in the kernel's clock ticks, so no tick rate is
/// needed): how busy the whole machine was, and how many cores one process kept busy. Tells a
/// relay that waits (on the database, on claims) from one that runs out of CPU.
pub struct CpuMeter {
    pid: u32,
    machine: MachineTicks,
    process: u64,
}

#[derive(Clone, Copy)]
struct MachineTicks {
    busy: u64,
    total: u64,
    cores: u64,
}

/// Machine busy share (0..1) and the process's cores (0..cores) over the interval.
pub struct CpuUse {
    pub machine_busy: f64,
    pub process_cores: f64,
}

impl CpuMeter {
    pub fn start(pid: u32) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            pid,
            machine: machine_ticks()?,
            process: process_ticks(pid)?,
        })
    }

    pub fn read(&self) -> anyhow::Result<CpuUse> {
        let machine = machine_ticks()?;
        let total = machine.total.saturating_sub(self.machine.total).max(1) as f64;
        let busy = machine.busy.saturating_sub(self.machine.busy) as f64;
        let process = process_ticks(self.pid)?.saturating_sub(self.process) as f64;
        Ok(CpuUse {
            machine_busy: busy / total,
            process_cores: process / (total / machine.cores as f64),
        })
    }
}

/// The "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal ...
fn machine_ticks() -> anyhow::Result<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let mut lines = stat.lines();
    let ticks: Vec<u64> = lines
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    anyhow::ensure!(ticks.len() >= 5, "short cpu line in /proc/stat");
    let idle = ticks[3] + ticks[4];
    let total: u64 = ticks.iter().take(8).sum();
    let cores = lines.filter(|line| line.starts_with("cpu")).count().max(1) as u64;
    Ok(MachineTicks {
        busy: total - idle,
        total,
        cores,
    })
}

/// utime + stime of a process (fields 14 and 15 of /proc/PID/stat, counted after the
/// parenthesised command name, which may contain spaces).
fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
    };
    // after ")" the fields start at 3 (state), so utime (14) and stime (15) are at 11 and 12
    Ok(tick(11)? + tick(12)?)
}
