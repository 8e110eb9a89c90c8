//! Standard Webhooks signatures: `v1,` + base64 HMAC-SHA256 over `<id>.<timestamp>.<body>`,
//! one per secret, space-separated (two during a secret rotation).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignError {
    #[error("a webhook secret is not in the whsec_<base64> form")]
    BadSecret,
    #[error("the message id cannot be a header value")]
    BadMessageId,
}

/// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers of a request.
pub fn headers(
    secrets: &[String],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<HeaderMap, SignError> {
    let signature = signature_header(secrets, message_id, timestamp, body)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_str(message_id).map_err(|_| SignError::BadMessageId)?,
    );
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    // base64 and "v1," only: always a valid header value
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signature).map_err(|_| SignError::BadSecret)?,
    );
    Ok(headers)
}

/// The `webhook-signature` header value.
pub fn signature_header(
    secrets: &[String],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let signatures = secrets
        .iter()
        .map(|secret| sign_one(secret, message_id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

fn sign_one(
    secret: &str,
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or(SignError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError::BadSecret)?;
    mac.update(format!("{message_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
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
    fn refuses_a_malformed_secret() {
        assert_eq!(
            signature_header(&["secret".into()], "evt_1", 1, b"{}"),
            Err(SignError::BadSecret)
        );
    }
}
