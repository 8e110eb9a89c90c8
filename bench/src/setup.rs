//! A fresh database per measurement, events put into its outbox, and the relay as a process.

use anyhow::Context;
use std::path::Path;
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

/// The relay with its defaults (and `extra` options), allowed to post to loopback.
pub fn start_relay(relay_bin: &Path, conninfo: &str, extra: &[&str]) -> anyhow::Result<Child> {
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
