//! A PostgreSQL cluster of a test's own, for faults that would disturb every other test on the
//! suite's cluster (restarts, crashes). Started and stopped with scripts/lib/cluster.sh; the
//! extension is already installed system-wide by scripts/test.sh.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

pub struct OwnCluster {
    dir: PathBuf,
    port: u16,
}

/// Starts with the tries a cluster gets: the free port found may be taken by another test
/// (a receiver binding port 0) before PostgreSQL binds it.
const START_TRIES: usize = 5;

fn run_cluster_script(command: &str) -> bool {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    Command::new("bash")
        .arg("-c")
        .arg(format!(". {repo}/scripts/lib/cluster.sh && {command}"))
        .status()
        .expect("run bash")
        .success()
}

fn cluster_script(command: &str) {
    assert!(run_cluster_script(command), "{command} failed");
}

impl OwnCluster {
    pub fn start(name: &str) -> OwnCluster {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.tmp/clusters"))
            .join(format!("{name}_{}", std::process::id()));
        std::fs::create_dir_all(dir.parent().expect("parent")).expect("clusters directory");
        for _ in 0..START_TRIES {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            // the port is written into the cluster's configuration when it is made
            let _ = std::fs::remove_dir_all(&dir);
            if run_cluster_script(&format!("cluster_start {} {port}", dir.display())) {
                return OwnCluster { dir, port };
            }
        }
        panic!(
            "could not start a cluster in {} in {START_TRIES} tries",
            dir.display()
        );
    }

    /// `host=... port=... user=postgres`, for TestDb::create_on and the relay.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// The directory of this cluster's files, for a test's own files beside them.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The port it accepts TCP connections on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on TCP connections only over TLS with this certificate, and with a password;
    /// the Unix socket (conninfo()) stays open without one. Restarts the cluster.
    pub fn require_tls(&self, server: &crate::tls::ServerCert) {
        cluster_script(&format!(
            "cluster_require_tls {} {} {}",
            self.dir.display(),
            server.cert_file.display(),
            server.key_file.display()
        ));
    }

    /// pg_ctl restart in `mode` (fast: sessions are ended cleanly; immediate: a crash, recovery
    /// on start). Returns when the server accepts connections again.
    pub fn restart(&self, mode: &str) {
        cluster_script(&format!(
            "as_cluster_owner \"$PG_BIN/pg_ctl\" -D {}/data -m {mode} -w -t 60 restart \
             -l {}/postgres.log >/dev/null",
            self.dir.display(),
            self.dir.display()
        ));
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        cluster_script(&format!("cluster_stop {}", self.dir.display()));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
