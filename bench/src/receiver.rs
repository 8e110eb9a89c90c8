//! The receiver every scenario sends to: answers 204 at once, counts events (a request, or each
//! element of a batch's JSON array), and hands the
//! `data.n` of each body with its arrival time to whoever listens (the latency scenario). And an
//! endpoint that accepts connections and never answers.

use axum::body::Bytes;
use axum::http::StatusCode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Clone)]
struct State {
    count: Arc<AtomicUsize>,
    arrivals: Option<mpsc::UnboundedSender<(i64, Instant)>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    /// A counting receiver; with `arrivals`, each request's `data.n` and arrival time are sent.
    pub async fn start(
        arrivals: Option<mpsc::UnboundedSender<(i64, Instant)>>,
    ) -> anyhow::Result<Receiver> {
        let count = Arc::new(AtomicUsize::new(0));
        let state = State {
            count: count.clone(),
            arrivals,
        };
        let app = axum::Router::new().fallback(answer).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { addr, count })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Wait (polling every millisecond) until `n` events have arrived; returns when the last
    /// one did, or None after `limit`.
    pub async fn wait_for(&self, n: usize, limit: std::time::Duration) -> Option<Instant> {
        let give_up = Instant::now() + limit;
        while Instant::now() < give_up {
            if self.count() >= n {
                return Some(Instant::now());
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        None
    }
}

async fn answer(
    axum::extract::State(state): axum::extract::State<State>,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    let events = if body.first() == Some(&b'[') {
        serde_json::from_slice::<Vec<serde_json::Value>>(&body).map_or(1, |batch| batch.len())
    } else {
        1
    };
    state.count.fetch_add(events, Ordering::Relaxed);
    if let Some(arrivals) = &state.arrivals {
        let n = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"]["n"].as_i64());
        if let Some(n) = n {
            let _ = arrivals.send((n, arrived));
        }
    }
    StatusCode::NO_CONTENT
}

/// The counting receiver on `addr`, until the process is killed; `GET /count` answers the
/// number of requests that arrived before it (and is not counted itself).
pub async fn serve_sink(addr: SocketAddr) -> anyhow::Result<()> {
    let state = State {
        count: Arc::new(AtomicUsize::new(0)),
        arrivals: None,
    };
    let app = axum::Router::new()
        .route("/count", axum::routing::get(count))
        .fallback(answer)
        .with_state(state);
    let listener = TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn count(axum::extract::State(state): axum::extract::State<State>) -> String {
    state.count.load(Ordering::Relaxed).to_string()
}

/// An endpoint that accepts every connection and never answers (the connections stay open
/// until the relay gives up on them).
pub async fn never_answering() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(addr)
}
