//! A receiver written in PHP, run by PHP's built-in web server: it sees requests the way the
//! seed platforms' customers' scripts do (`$_POST`, `$_GET`, nested `fields[...]` keys).
//! tests/php/receiver.php records what PHP decoded, one JSON line per request.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct PhpReceiver {
    pub addr: SocketAddr,
    log: PathBuf,
    _server: Child,
}

impl PhpReceiver {
    pub async fn start() -> PhpReceiver {
        PhpReceiver::start_script("receiver.php", &[]).await
    }

    /// Another script of tests/php, with these environment variables.
    pub async fn start_script(script: &str, env: &[(&str, &str)]) -> PhpReceiver {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port");
        let log = std::env::temp_dir().join(format!(
            "pg_webhooks_php_{}_{}.log",
            std::process::id(),
            addr.port()
        ));
        let _ = std::fs::remove_file(&log);
        let script = format!("{}/php/{script}", env!("CARGO_MANIFEST_DIR"));
        let server = Command::new("php")
            .args(["-S", &addr.to_string(), &script])
            .env("PG_WEBHOOKS_PHP_LOG", &log)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run php -S (scripts/lib/deps.sh installs php-cli)");
        crate::wait_for("php -S to listen", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(drop)
        })
        .await;
        PhpReceiver {
            addr,
            log,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What PHP decoded of each request so far: method, path, get, post, query_string, body,
    /// content_type and the webhook-* headers.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line from receiver.php"))
            .collect()
    }

    pub async fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        crate::wait_for(
            &format!("{n} requests at PHP {}", self.addr),
            limit,
            || async {
                let requests = self.requests();
                (requests.len() >= n).then_some(requests)
            },
        )
        .await
    }
}

impl Drop for PhpReceiver {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}
