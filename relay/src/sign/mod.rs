//! Signatures, by the webhook's scheme (configure's "signature"), told apart by the form of its
//! keys:
//! - `whsec_<base64>`: Standard Webhooks `v1`, base64 HMAC-SHA256 over `<id>.<timestamp>.<body>`;
//! - `ed25519:<key id>:<base64 PKCS#8>`: Standard Webhooks `v1a`, an ed25519 signature of the same;
//! - `rsa-sha256:<key id>:<base64 PKCS#8>:<account>`: HTTP Signatures laid out as Copernica's
//!   (http_signature.rs).
//!
//! The Standard Webhooks schemes send one signature per key, space-separated (two during a
//! rotation). Every request carries `webhook-id` and `webhook-timestamp`, which receivers also
//! use to drop repeats.

mod http_signature;

use crate::render::Request;
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue};
use ring::signature::Ed25519KeyPair;
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignError {
    #[error("a webhook secret is not in the whsec_<base64> form")]
    Secret,
    #[error("a webhook's signing key cannot be read")]
    Key,
    #[error("the message id cannot be a header value")]
    MessageId,
    #[error("the request's URL cannot be read for its signature")]
    Url,
}

/// The signature headers of a request sent as message `message_id` at `now`.
pub fn headers(
    keys: &[String],
    message_id: &str,
    now: DateTime<Utc>,
    request: &Request,
) -> Result<HeaderMap, SignError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_str(message_id).map_err(|_| SignError::MessageId)?,
    );
    headers.insert("webhook-timestamp", HeaderValue::from(now.timestamp()));
    match keys.first() {
        Some(key) if key.starts_with(http_signature::PREFIX) => {
            headers.extend(http_signature::headers(key, now, request)?);
        }
        _ => {
            let signature = signature_header(keys, message_id, now.timestamp(), request.signed())?;
            // base64, "v1," and "v1a," only: always a valid header value
            headers.insert(
                "webhook-signature",
                HeaderValue::from_str(&signature).map_err(|_| SignError::Secret)?,
            );
        }
    }
    Ok(headers)
}

/// The `webhook-signature` header value (Standard Webhooks `v1` and `v1a`).
pub fn signature_header(
    keys: &[String],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let prefix = format!("{message_id}.{timestamp}.");
    let signatures = keys
        .iter()
        .map(|key| sign_one(key, prefix.as_bytes(), body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// One signature over `prefix` then `body`; HMAC reads them in turn, without copying the body.
fn sign_one(key: &str, prefix: &[u8], body: &[u8]) -> Result<String, SignError> {
    if let Some(ed25519) = key.strip_prefix("ed25519:") {
        let (_key_id, encoded) = ed25519.split_once(':').ok_or(SignError::Key)?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8(encoded)?).map_err(|_| SignError::Key)?;
        let signature = pair.sign(&[prefix, body].concat());
        return Ok(format!("v1a,{}", STANDARD.encode(signature)));
    }
    let secret = key
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or(SignError::Secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret).map_err(|_| SignError::Secret)?;
    mac.update(prefix);
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The PKCS#8 bytes of a stored key's base64 part.
fn pkcs8(encoded: &str) -> Result<Vec<u8>, SignError> {
    STANDARD.decode(encoded).map_err(|_| SignError::Key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn matches_the_standard_webhooks_example() {
        let header = signature_header(
            &[SPEC_SECRET.into()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            header,
            Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into())
        );
    }

    #[test]
    fn signs_with_every_secret_in_order() {
        let other = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNl".to_string();
        let header = signature_header(&[SPEC_SECRET.into(), other.clone()], "evt_1", 1, b"{}")
            .expect("signs");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[1],
            signature_header(&[other], "evt_1", 1, b"{}").expect("signs")
        );
    }

    #[test]
    fn an_ed25519_key_signs_v1a_over_the_same_content() {
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&random).expect("key");
        let key = format!("ed25519:abc:{}", STANDARD.encode(pkcs8.as_ref()));
        let header = signature_header(&[key], "evt_1", 7, b"{}").expect("signs");
        let signature = STANDARD
            .decode(header.strip_prefix("v1a,").expect("v1a"))
            .expect("base64");
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            ring::signature::KeyPair::public_key(&public).as_ref(),
        )
        .verify(b"evt_1.7.{}", &signature)
        .expect("verifies");
    }

    #[test]
    fn refuses_a_malformed_secret() {
        assert_eq!(
            signature_header(&["secret".into()], "evt_1", 1, b"{}"),
            Err(SignError::Secret)
        );
    }
}
