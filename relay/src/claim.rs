//! Leasing due deliveries (webhooks.claim) and recording attempt outcomes (webhooks.ack).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::types::Json;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// One leased delivery: an event on its way to one webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivery_id: i64,
    pub attempt: i32,
    pub webhook_id: i64,
    pub url: String,
    pub secrets: Vec<String>,
    pub event_id: i64,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
    pub max_in_flight: Option<i32>,
    pub rate_limit_per_second: Option<f64>,
}

pub struct ClaimRequest<'a> {
    pub relay: &'a str,
    pub max_deliveries: i32,
    pub per_webhook: i32,
    pub skip_webhooks: Vec<i64>,
    pub lease: Duration,
}

pub async fn claim(pool: &Pool, request: ClaimRequest<'_>) -> Result<Vec<Delivery>, DatabaseError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT delivery_id, attempt, webhook_id, url, secrets, event_id, event, occurred_at, \
                    data, max_in_flight, rate_limit_per_second \
             FROM webhooks.claim($1, $2, $3, $4, make_interval(secs => $5))",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &request.relay,
                &request.max_deliveries,
                &request.per_webhook,
                &request.skip_webhooks,
                &request.lease.as_secs_f64(),
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Delivery {
            delivery_id: row.get(0),
            attempt: row.get(1),
            webhook_id: row.get(2),
            url: row.get(3),
            secrets: row.get(4),
            event_id: row.get(5),
            event: row.get(6),
            occurred_at: row.get(7),
            data: row.get(8),
            max_in_flight: row.get(9),
            rate_limit_per_second: row.get(10),
        })
        .collect())
}

/// The outcome of one attempt, in the shape webhooks.ack() reads.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub delivery_id: i64,
    pub attempt: i32,
    pub outcome: &'static str,
    pub retry_at: Option<DateTime<Utc>>,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub response: Option<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

impl AttemptReport {
    /// Give a lease back without counting an attempt (shutdown).
    pub fn released(delivery: &Delivery) -> AttemptReport {
        AttemptReport {
            delivery_id: delivery.delivery_id,
            attempt: delivery.attempt,
            outcome: "released",
            retry_at: None,
            status: None,
            error: None,
            response: None,
            started_at: Utc::now(),
            duration_ms: 0,
        }
    }
}

pub async fn acknowledge(
    pool: &Pool,
    relay: &str,
    reports: &[AttemptReport],
) -> Result<i32, DatabaseError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached("SELECT webhooks.ack($1, $2::jsonb)")
        .await?;
    Ok(client
        .query_one(&statement, &[&relay, &Json(reports)])
        .await?
        .get(0))
}

/// Tell writers whether to NOTIFY this relay (idle) or not (busy, polling).
pub async fn set_idle(pool: &Pool, relay: &str, idle: bool) -> Result<(), DatabaseError> {
    let client = pool.get().await?;
    client
        .execute("SELECT webhooks.relay_idle($1, $2)", &[&relay, &idle])
        .await?;
    Ok(())
}

pub async fn leave(pool: &Pool, relay: &str) -> Result<(), DatabaseError> {
    let client = pool.get().await?;
    client
        .execute("SELECT webhooks.relay_leave($1)", &[&relay])
        .await?;
    Ok(())
}
