//! One HTTP attempt: POST the signed body, read at most a capped part of the answer.

use crate::render::Request;
use crate::ssrf::{AddressPolicy, GuardedResolver, LookupFailed, Refusal};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct SendOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    pub response_excerpt_bytes: usize,
    pub max_idle_connections_per_host: usize,
    /// A PEM file of CAs trusted beside the public ones (webpki-roots).
    pub receiver_ca_file: Option<PathBuf>,
}

pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_response_bytes: usize,
    excerpt_bytes: usize,
    refusals: RefusalLog,
}

/// Refusals by the address policy are logged as warnings once per URL per
/// REFUSAL_LOG_EVERY: a webhook aimed at an internal address would otherwise write a line for
/// every event (each attempt's error class is in webhooks.delivery_log anyway).
#[derive(Default)]
struct RefusalLog {
    last: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

use crate::tunables::REFUSAL_LOG_EVERY;

impl RefusalLog {
    fn log(&self, url: &str, reason: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.len() > 1000 {
            last.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        let due = last
            .get(url)
            .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY);
        if due {
            last.insert(url.to_owned(), now);
            tracing::warn!(url, reason = %reason, "refused by the address policy");
        } else {
            tracing::debug!(url, reason = %reason, "refused by the address policy");
        }
    }
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
pub enum ClientError {
    #[error("could not build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error("cannot read --receiver-ca-file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// The CA certificates of --receiver-ca-file.
fn receiver_cas(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let unreadable = |reason: String| ClientError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(unreadable("it holds no certificate".into()));
    }
    Ok(certificates)
}

impl Sender {
    pub fn new(policy: Arc<AddressPolicy>, options: &SendOptions) -> Result<Sender, ClientError> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &options.receiver_ca_file {
            for certificate in receiver_cas(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .no_proxy() // a proxy would hide the address actually connected to
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(options.max_idle_connections_per_host)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Sender {
            client,
            policy,
            max_response_bytes: options.max_response_bytes,
            excerpt_bytes: options.response_excerpt_bytes,
            refusals: RefusalLog::default(),
        })
    }

    /// Send a rendered request with its headers (the webhook's own and the signature's), in at
    /// most `timeout` (the client's own timeout is the relay's --request-timeout).
    pub async fn send(&self, request: Request, mut headers: HeaderMap, timeout: Duration) -> Reply {
        if let Some(content_type) = request.content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        self.exchange(&request.url, headers, |client, target| {
            let builder = client.request(request.method, target).timeout(timeout);
            match request.content_type {
                Some(_) => builder.body(request.body),
                None => builder,
            }
        })
        .await
    }

    /// A GET under the same address policy (for verification files), with the webhook's own
    /// headers: a receiver that wants its API key on every request gets it here too.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Reply {
        self.exchange(url, headers, |client, target| client.get(target))
            .await
    }

    async fn exchange(
        &self,
        url: &str,
        mut headers: HeaderMap,
        request: impl FnOnce(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Reply {
        let started = Instant::now();
        let target = match self.policy.check_url(url) {
            Ok(target) => target,
            Err(refusal) => {
                self.refusals.log(url, &refusal);
                return Reply::failed(refusal.error_class(), started.elapsed());
            }
        };
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("pg-webhooks-relay/", env!("CARGO_PKG_VERSION"))),
        );
        let request = request(&self.client, target).headers(headers);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let class = error_class(&error);
                if class == "refused_address" {
                    // a name that resolved to internal addresses; the reason is in the chain
                    self.refusals.log(url, &error_chain(&error));
                }
                return Reply::failed(class, started.elapsed());
            }
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
            excerpt: (!read.is_empty()).then(|| excerpt_text(&read)),
            duration: started.elapsed(),
        }
    }
}

/// A response's first bytes as text PostgreSQL can store: invalid UTF-8 and NUL (which no
/// PostgreSQL text or jsonb value may hold) become U+FFFD.
fn excerpt_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
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

/// An error and its causes, "a: b: c".
fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

/// A short, stable name for why no answer arrived.
fn error_class(error: &reqwest::Error) -> &'static str {
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(class) = known_cause(current) {
            return class;
        }
        // an io::Error's source() skips the error it wraps (rustls puts its own there)
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => current.source(),
        };
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

fn known_cause(cause: &(dyn Error + 'static)) -> Option<&'static str> {
    if let Some(refusal) = cause.downcast_ref::<Refusal>() {
        Some(refusal.error_class())
    } else if cause.is::<LookupFailed>() {
        Some("dns")
    } else if cause.is::<rustls::Error>() {
        Some("tls")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    const EXCERPT: usize = 16;

    fn sender(allowed: &[&str]) -> Sender {
        let policy = AddressPolicy {
            allowed: allowed
                .iter()
                .map(|net| net.parse().expect("cidr"))
                .collect(),
            https_only: false,
        };
        Sender::new(
            Arc::new(policy),
            &SendOptions {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_millis(500),
                max_response_bytes: 1024,
                response_excerpt_bytes: EXCERPT,
                max_idle_connections_per_host: 1,
                receiver_ca_file: None,
            },
        )
        .expect("client")
    }

    fn loopback_sender() -> Sender {
        sender(&["127.0.0.0/8"])
    }

    async fn post(sender: &Sender, url: &str) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("evt_1"));
        let request = Request {
            method: reqwest::Method::POST,
            url: url.to_owned(),
            content_type: Some("application/json"),
            body: b"{}".to_vec(),
            signed_query: None,
        };
        sender
            .send(request, headers, Duration::from_millis(500))
            .await
    }

    /// Accepts one connection, reads the request head, answers `response` and hands back
    /// the head it read.
    async fn answer_once(response: &'static [u8]) -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buffer = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buffer[..n]);
            }
            // the relay may stop reading early, so a failed write is no failure here
            let _ = stream.write_all(response).await;
            String::from_utf8_lossy(&head).into_owned()
        });
        (addr, server)
    }

    #[tokio::test]
    async fn posts_json_with_our_headers_and_keeps_an_excerpt() {
        let (addr, server) = answer_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 34\r\n\r\nthank you, this is a long response",
        )
        .await;
        let reply = post(&loopback_sender(), &format!("http://{addr}/hook")).await;
        assert_eq!(reply.status, Some(200));
        assert_eq!(reply.error, None);
        assert_eq!(reply.excerpt.as_deref(), Some("thank you, this "));
        let head = server.await.expect("server").to_lowercase();
        assert!(head.starts_with("post /hook http/1.1"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("user-agent: pg-webhooks-relay/"), "{head}");
        assert!(head.contains("webhook-id: evt_1"), "{head}");
    }

    #[tokio::test]
    async fn nul_bytes_and_broken_utf8_in_an_answer_become_replacement_characters() {
        let (addr, _server) =
            answer_once(b"HTTP/1.1 500 Oops\r\ncontent-length: 6\r\n\r\nab\0c\xffd").await;
        let reply = post(&loopback_sender(), &format!("http://{addr}/hook")).await;
        assert_eq!(reply.excerpt.as_deref(), Some("ab\u{FFFD}c\u{FFFD}d"));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (addr, _server) = answer_once(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let reply = post(&loopback_sender(), &format!("http://{addr}/")).await;
        assert_eq!(reply.status, Some(302));
    }

    #[tokio::test]
    async fn retry_after_is_passed_on() {
        let (addr, _server) = answer_once(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let reply = post(&loopback_sender(), &format!("http://{addr}/")).await;
        assert_eq!(reply.status, Some(429));
        assert_eq!(reply.retry_after.as_deref(), Some("120"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let reply = post(&loopback_sender(), &format!("http://{addr}/")).await;
        assert_eq!((reply.status, reply.error), (None, Some("connect")));
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _silent = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(stream);
        });
        let reply = post(&loopback_sender(), &format!("http://{addr}/")).await;
        assert_eq!((reply.status, reply.error), (None, Some("timeout")));
    }

    #[tokio::test]
    async fn a_failed_handshake_is_a_tls_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _plain_http = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let reply = post(&loopback_sender(), &format!("https://{addr}/")).await;
        assert_eq!((reply.status, reply.error), (None, Some("tls")));
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_by_literal_and_by_name() {
        let (addr, _server) = answer_once(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let guarded = sender(&[]);
        for url in [
            format!("http://{addr}/"),
            format!("http://localhost:{}/", addr.port()),
        ] {
            let reply = post(&guarded, &url).await;
            assert_eq!(
                (reply.status, reply.error),
                (None, Some("refused_address")),
                "{url}"
            );
        }
    }
}
