//! An HTTP receiver on loopback that records every request and answers as told.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The client's address: one per connection.
    pub peer: SocketAddr,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How to answer a request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: String::new(),
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }
}

/// Decides the reply from the request and how many requests came before it.
type Behaviour = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct State {
    received: Mutex<Vec<Received>>,
    behaviour: Box<Behaviour>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    scheme: &'static str,
}

/// The shared state and the app that records every request and answers as `behaviour` says.
fn recording(
    behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
) -> (Arc<State>, axum::Router) {
    let state = Arc::new(State {
        received: Mutex::new(Vec::new()),
        behaviour: Box::new(behaviour),
    });
    let app = axum::Router::new()
        .fallback(record_and_answer)
        .with_state(state.clone());
    (state, app)
}

impl Receiver {
    /// A receiver that answers 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::answering(|_, _| Reply::ok()).await
    }

    pub async fn answering(
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let (state, app) = recording(behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            state,
            scheme: "http",
        }
    }

    /// The same over HTTPS with this certificate (tests/src/tls.rs issues one for 127.0.0.1).
    pub async fn answering_over_tls(
        certificate: &crate::tls::ServerCert,
        behaviour: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (state, app) = recording(behaviour);
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(
            &certificate.cert_file,
            &certificate.key_file,
        )
        .await
        .expect("the receiver's certificate and key");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener, as tokio wants it");
        let addr = listener.local_addr().expect("local address");
        let server = axum_server::from_tcp_rustls(listener, tls).expect("an HTTPS listener");
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { server.serve(app).await });
        Receiver {
            addr,
            state,
            scheme: "https",
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("receiver lock").clone()
    }

    /// What arrived, ordered by event id (from `webhook-id: evt_<id>`): requests to one
    /// webhook run concurrently, so arrival order is not event order.
    pub fn received_in_event_order(&self) -> Vec<Received> {
        let mut requests = self.received();
        requests.sort_by_key(|r| {
            r.header("webhook-id")
                .trim_start_matches("evt_")
                .parse::<i64>()
                .unwrap_or_default()
        });
        requests
    }

    /// How many connections the requests so far came over.
    pub fn connections(&self) -> usize {
        let received = self.state.received.lock().expect("receiver lock");
        let peers: std::collections::HashSet<SocketAddr> =
            received.iter().map(|r| r.peer).collect();
        peers.len()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().expect("receiver lock").len()
    }

    /// Wait until `n` requests have arrived, then return them all.
    pub async fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<Received> {
        crate::wait_for(&format!("{n} requests at {}", self.addr), limit, || async {
            (self.count() >= n).then_some(())
        })
        .await;
        self.received()
    }
}

async fn record_and_answer(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Received {
        method: method.to_string(),
        // HTTP/2 (over TLS) gives the whole URL; the path and query are what a receiver routes on
        path: uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |path| path.to_string()),
        headers,
        body,
        at: Instant::now(),
        peer,
    };
    let reply = {
        let mut received = state.received.lock().expect("receiver lock");
        let reply = (state.behaviour)(&request, received.len());
        received.push(request);
        reply
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).expect("a valid status"),
        reply.body,
    )
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("a valid header value"));
    }
    response
}
