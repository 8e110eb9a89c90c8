//! The official Standard Webhooks verifier (the `standardwebhooks` PyPI package, installed into
//! a venv by scripts/test.sh), run over recorded requests.

use crate::Received;
use std::io::Write;
use std::process::{Command, Stdio};

/// The official `standardwebhooks` PyPI package, installed into a venv by scripts/test.sh:
/// "ok" or "rejected: <reason>" per request.
pub fn verify_with_official_library(secret: &str, requests: &[Received]) -> Vec<String> {
    let signed: Vec<_> = requests
        .iter()
        .map(|r| {
            signed_payload(
                r.header("webhook-id"),
                r.header("webhook-timestamp"),
                r.header("webhook-signature"),
                &String::from_utf8_lossy(&r.body),
            )
        })
        .collect();
    verify_signed_payloads(secret, &signed)
}

/// The three signature headers and the signed content of one request, as the verifier reads
/// them (the content is the body, or the query string of a GET).
pub fn signed_payload(
    id: &str,
    timestamp: &str,
    signature: &str,
    content: &str,
) -> serde_json::Value {
    serde_json::json!({
        "headers": {
            "webhook-id": id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        },
        "body": content,
    })
}

pub fn verify_signed_payloads(secret: &str, signed: &[serde_json::Value]) -> Vec<String> {
    let python = std::env::var("PG_WEBHOOKS_TEST_PYTHON")
        .expect("PG_WEBHOOKS_TEST_PYTHON: run the tests through scripts/test.sh");
    let job = serde_json::json!({"secret": secret, "requests": signed});
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
