//! The official Standard Webhooks verifier (the `standardwebhooks` PyPI package, installed into
//! a venv by scripts/test.sh), run over recorded requests.

use crate::Received;
use std::io::Write;
use std::process::{Command, Stdio};

/// The official `standardwebhooks` PyPI package, installed into a venv by scripts/test.sh.
pub fn verify_with_official_library(secret: &str, requests: &[Received]) -> Vec<String> {
    let python = std::env::var("PG_WEBHOOKS_TEST_PYTHON")
        .expect("PG_WEBHOOKS_TEST_PYTHON: run the tests through scripts/test.sh");
    let job = serde_json::json!({
        "secret": secret,
        "requests": requests.iter().map(|r| serde_json::json!({
            "headers": {
                "webhook-id": r.header("webhook-id"),
                "webhook-timestamp": r.header("webhook-timestamp"),
                "webhook-signature": r.header("webhook-signature"),
            },
            "body": String::from_utf8_lossy(&r.body),
        })).collect::<Vec<_>>(),
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/verify_standard_webhooks.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the Python verifier");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(job.to_string().as_bytes())
        .expect("write the job");
    let output = child.wait_with_output().expect("verifier output");
    assert!(output.status.success(), "the verifier failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
