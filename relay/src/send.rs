//! One HTTP attempt: POST the signed body, read at most a capped part of the answer.

use crate::ssrf::{AddressPolicy, GuardedResolver, LookupFailed, Refusal};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct SendOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    pub response_excerpt_bytes: usize,
    pub max_connections_per_host: usize,
}

pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
    excerpt_bytes: usize,
}

/// What came back from one attempt.
#[derive(Debug)]
pub struct Reply {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub error: Option<&'static str>,
    pub excerpt: Option<String>,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Sender {
    pub fn new(policy: Arc<AddressPolicy>, options: &SendOptions) -> Result<Sender, ClientError> {
        let client = reqwest::Client::builder()
            .no_proxy() // a proxy would hide the address actually connected to
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(options.max_connections_per_host)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Sender {
            client,
            policy,
            max_response_bytes: options.max_response_bytes,
            excerpt_bytes: options.response_excerpt_bytes,
        })
    }

    pub async fn post(&self, url: &str, signature_headers: HeaderMap, body: Vec<u8>) -> Reply {
        let started = Instant::now();
        let target = match self.policy.check_url(url) {
            Ok(target) => target,
            Err(refusal) => return Reply::failed(refusal.error_class(), started.elapsed()),
        };
        let request = self
            .client
            .post(target)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                concat!("pg-webhooks-relay/", env!("CARGO_PKG_VERSION")),
            )
            .headers(signature_headers)
            .body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Reply::failed(error_class(&error), started.elapsed()),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut read = Vec::new();
        let mut body_error = None;
        while read.len() < self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(error) => {
                    body_error = Some(error_class(&error));
                    break;
                }
            }
        }
        read.truncate(self.excerpt_bytes);
        Reply {
            status: Some(status),
            retry_after,
            error: body_error,
            excerpt: (!read.is_empty()).then(|| String::from_utf8_lossy(&read).into_owned()),
            duration: started.elapsed(),
        }
    }
}

impl Reply {
    pub fn failed(error: &'static str, duration: Duration) -> Reply {
        Reply {
            status: None,
            retry_after: None,
            error: Some(error),
            excerpt: None,
            duration,
        }
    }
}

/// A short, stable name for why no answer arrived.
fn error_class(error: &reqwest::Error) -> &'static str {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return refusal.error_class();
        }
        if cause.is::<LookupFailed>() {
            return "dns";
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "other"
    }
}
