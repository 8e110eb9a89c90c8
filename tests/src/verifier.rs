//! Independent verifiers of our signatures, run over recorded requests: the official Standard
//! Webhooks library (the `standardwebhooks` PyPI package) and, for v1a (ed25519), the PyPI
//! `cryptography` package; both are installed into a venv by scripts/test.sh.

use crate::Received;
use std::io::Write;
use std::process::{Command, Stdio};

/// The official `standardwebhooks` PyPI package, installed into a venv by scripts/test.sh:
/// "ok" or "rejected: <reason>" per request.
pub fn verify_with_official_library(secret: &str, requests: &[Received]) -> Vec<String> {
    verify_signed_payloads(secret, &signed_payloads(requests))
}

/// What the verifiers read of recorded requests: the signature headers and the body.
fn signed_payloads(requests: &[Received]) -> Vec<serde_json::Value> {
    requests
        .iter()
        .map(|r| {
            signed_payload(
                r.header("webhook-id"),
                r.header("webhook-timestamp"),
                r.header("webhook-signature"),
                &String::from_utf8_lossy(&r.body),
            )
        })
        .collect()
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
    run_python(
        "verify_standard_webhooks.py",
        &serde_json::json!({"secret": secret, "requests": signed}),
    )
}

/// Standard Webhooks `v1a` (ed25519) checked by the PyPI `cryptography` package against a
/// `whpk_` public key (tests/python/verify_ed25519.py): "ok" or "rejected: <reason>" per request.
pub fn verify_ed25519(public_key: &str, requests: &[Received]) -> Vec<String> {
    run_python(
        "verify_ed25519.py",
        &serde_json::json!({"public_key": public_key, "requests": signed_payloads(requests)}),
    )
}

/// Run one of tests/python's scripts with a JSON job on stdin; its output lines.
fn run_python(script: &str, job: &serde_json::Value) -> Vec<String> {
    let python = std::env::var("PG_WEBHOOKS_TEST_PYTHON")
        .expect("PG_WEBHOOKS_TEST_PYTHON: run the tests through scripts/test.sh");
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(&script)
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
    assert!(output.status.success(), "{script} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
