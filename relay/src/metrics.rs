//! /healthz and Prometheus /metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use deadpool_postgres::Pool;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Metrics {
    registry: Registry,
    deliveries: IntCounterVec,
    pub duration: Histogram,
    in_flight: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub claims: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Arc<Metrics>, prometheus::Error> {
        let registry = Registry::new();
        let deliveries = IntCounterVec::new(
            Opts::new(
                "pg_webhooks_deliveries_total",
                "Deliveries handled, by outcome (released: given back unattempted)",
            ),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "pg_webhooks_delivery_duration_seconds",
                "Time per HTTP attempt",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0,
            ]),
        )?;
        let in_flight = IntGauge::new("pg_webhooks_in_flight", "HTTP requests in flight")?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "pg_webhooks_queue_depth",
                "Deliveries waiting (queued) or held for inactive webhooks",
            ),
            &["state"],
        )?;
        let claims = IntCounter::new(
            "pg_webhooks_claims_total",
            "Claims that leased at least one delivery",
        )?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(claims.clone()))?;
        Ok(Arc::new(Metrics {
            registry,
            deliveries,
            duration,
            in_flight,
            queue_depth,
            claims,
        }))
    }

    /// Counts a request in flight until the guard is dropped, however the request ends.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn count(&self, outcome: &str) {
        self.deliveries.with_label_values(&[outcome]).inc();
    }

    fn render(&self) -> String {
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "could not encode metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

pub struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    pool: Pool,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    pool: Pool,
    shutdown: CancellationToken,
) {
    let app = axum::Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(|State(shared): State<Shared>| async move { shared.metrics.render() }),
        )
        .with_state(Shared { metrics, pool });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(error) = served.await {
        tracing::warn!(%error, "metrics server stopped");
    }
}

async fn healthz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if crate::relay_api::reachable(&shared.pool).await {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
    }
}
