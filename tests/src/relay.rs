//! The real relay binary as a child process.

use crate::TestDb;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub struct Relay {
    child: Child,
    log: watch::Receiver<String>,
}

fn relay_binary() -> PathBuf {
    std::env::var_os("PG_WEBHOOKS_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/pg-webhooks-relay")
        })
}

/// Options every test relay gets: loopback receivers allowed, quick polling, a short schedule.
/// A test's own `args` come later and win.
const TEST_DEFAULTS: &[&str] = &[
    "--allow-cidr",
    "127.0.0.0/8",
    "--poll-interval",
    "500ms",
    "--retry-schedule",
    "0s,1s,1s",
    "--retry-jitter",
    "0",
    "--request-timeout",
    "5s",
    "--lease",
    "30s",
    "--listen-addr",
    "127.0.0.1:0",
    "--shutdown-grace",
    "5s",
];

/// The test defaults whose flag the test does not set itself.
fn defaults_not_in(args: &[&str]) -> Vec<&'static str> {
    TEST_DEFAULTS
        .chunks(2)
        .filter(|pair| !args.contains(&pair[0]))
        .flatten()
        .copied()
        .collect()
}

/// The relay binary with the test defaults and `args`, logging at info, or as
/// PG_WEBHOOKS_TEST_RELAY_LOG says (a RUST_LOG filter, "debug" to see every delivery's way).
fn command(conninfo: &str, name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(relay_binary());
    command
        .arg("--database-url")
        .arg(conninfo)
        .arg("--relay-name")
        .arg(name)
        .args(defaults_not_in(args))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("PG_WEBHOOKS_TEST_RELAY_LOG").unwrap_or_else(|_| "info".into()),
        );
    command
}

impl Relay {
    /// Start a relay against `db` and wait until it logs that it has started.
    pub async fn start(db: &TestDb, name: &str, args: &[&str]) -> Relay {
        Relay::start_with_conninfo(&db.conninfo(), name, args).await
    }

    /// The same with another connection string (another role, say).
    pub async fn start_with_conninfo(conninfo: &str, name: &str, args: &[&str]) -> Relay {
        Relay::start_with_env(conninfo, name, args, &[]).await
    }

    /// The same with extra environment variables (a skewed clock through libfaketime, say).
    pub async fn start_with_env(
        conninfo: &str,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Relay {
        let mut child = command(conninfo, name, args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the relay binary (built by scripts/test.sh)");
        let (sender, log) = watch::channel(String::new());
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[relay] {line}");
                    sender.send_modify(|log| {
                        log.push_str(&line);
                        log.push('\n');
                    });
                }
            });
        }
        let mut relay = Relay { child, log };
        relay
            .wait_for_log("relay started", Duration::from_secs(20))
            .await;
        relay
    }

    /// Run a relay that is expected not to start: wait for it to exit and return its exit code
    /// and everything it logged.
    pub async fn run_until_exit(
        conninfo: &str,
        name: &str,
        args: &[&str],
        limit: Duration,
    ) -> (Option<i32>, String) {
        let run = command(conninfo, name, args).kill_on_drop(true).output();
        let output = tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| panic!("the relay did not exit within {limit:?}"))
            .expect("run the relay binary");
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        eprintln!("[relay] {log}");
        (output.status.code(), log)
    }

    /// The address of /healthz and /metrics, as the relay logged it at start.
    pub fn metrics_addr(&self) -> String {
        let log = self.log();
        let after = log
            .split("metrics_addr=")
            .nth(1)
            .expect("the start line names metrics_addr");
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Everything the relay has logged so far.
    pub fn log(&self) -> String {
        self.log.borrow().clone()
    }

    pub async fn wait_for_log(&mut self, text: &str, limit: Duration) {
        let found = tokio::time::timeout(limit, self.log.wait_for(|log| log.contains(text)))
            .await
            .is_ok_and(|seen| seen.is_ok());
        assert!(
            found,
            "the relay did not log {text:?} within {limit:?}; log:\n{}",
            self.log()
        );
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("relay is running") as i32)
    }

    /// SIGTERM, then wait for the exit; returns the exit code.
    pub async fn terminate(mut self, limit: Duration) -> Option<i32> {
        kill(self.pid(), Signal::SIGTERM).expect("send SIGTERM");
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the relay exits after SIGTERM")
            .expect("wait for the relay");
        status.code()
    }

    /// SIGKILL: a crash, nothing gets cleaned up.
    pub async fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("send SIGKILL");
        let _ = self.child.wait().await;
    }
}
