//! The SQL relay API as the relay calls it, and the only module that sends SQL (the LISTEN
//! connection in `listen` aside): one function per SQL function, with the rows each returns
//! and the reports each takes, written once here.
//!
//!   webhooks.claim, ack, relay_idle, relay_leave   sql/40_relay.sql  claim, acknowledge, set_idle, leave
//!   webhooks.claim_probes, finish_probe            sql/45_probes.sql claim_probes, finish_probe
//!   webhooks.maintain, queue_depth                 sql/50_retention.sql, 40_relay.sql
//!   pg_extension                                   check_extension_version

use crate::limits::{ClaimRooms, WebhookLimits};
use crate::render::{Field, Shape};
use crate::retry::RetrySchedule;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;
use tokio_postgres::types::Json;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("no database connection: {}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("unexpected {what} from the database: {value}")]
    Unexpected { what: &'static str, value: String },
    #[error(
        "pg_webhooks is not installed in this database: run CREATE EXTENSION pg_webhooks in it"
    )]
    NotInstalled,
    #[error(
        "pg_webhooks {installed} is installed in this database, and this relay speaks {speaks}: \
         install the extension's {speaks} files and run ALTER EXTENSION pg_webhooks UPDATE, or \
         run the relay that came with {installed}"
    )]
    OtherVersion {
        installed: String,
        speaks: &'static str,
    },
}

/// The extension version this relay's calls are written for: the project's one version.
pub const EXTENSION_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Refuse an extension version whose relay API may differ from the one this relay calls.
pub async fn check_extension_version(pool: &Pool) -> Result<(), DatabaseError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'",
            &[],
        )
        .await?;
    let installed: String = row.ok_or(DatabaseError::NotInstalled)?.try_get(0)?;
    if installed != EXTENSION_VERSION {
        return Err(DatabaseError::OtherVersion {
            installed,
            speaks: EXTENSION_VERSION,
        });
    }
    Ok(())
}

impl DatabaseError {
    /// PostgreSQL refused the statement for what it holds (a data exception, a constraint, a
    /// limit: SQLSTATE classes 22, 23, 54): sending the same again would fail again. Connection
    /// trouble and shutdowns are not refusals.
    pub fn is_refusal(&self) -> bool {
        let DatabaseError::Query(error) = self else {
            return false;
        };
        error.as_db_error().is_some_and(|db| {
            ["22", "23", "54"]
                .iter()
                .any(|class| db.code().code().starts_with(class))
        })
    }
}

/// PostgreSQL's own words when it sent an error (tokio-postgres shows only "db error"), with
/// its SQLSTATE, detail and hint.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            for (label, part) in [
                ("detail", db.detail()),
                ("hint", db.hint()),
                ("where", db.where_()),
            ] {
                if let Some(part) = part {
                    text.push_str(&format!("; {label}: {part}"));
                }
            }
            text
        }
        // the cause says what went wrong ("error performing TLS handshake: invalid peer
        // certificate: UnknownIssuer"); tokio-postgres's own text names only the stage
        None => {
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                text.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            text
        }
    }
}

fn describe_pool(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => describe(error),
        other => other.to_string(),
    }
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
    /// The event's data as PostgreSQL's jsonb text: read only where a format needs to.
    pub data: String,
    pub limits: WebhookLimits,
    pub shape: Shape,
    /// The webhook's own retry schedule, if it has one (else the relay's).
    pub retry_schedule: Option<RetrySchedule>,
    /// Taken just before the claim was sent, so the lease surely ends after `claimed_at + lease`.
    pub claimed_at: Instant,
}

pub struct ClaimRequest<'a> {
    pub relay: &'a str,
    pub max_deliveries: i32,
    pub per_webhook: i32,
    pub rooms: ClaimRooms,
    pub lease: Duration,
}

/// What a claim leased: the deliveries to send, and reports parking those whose row could not be
/// read (one unreadable row fails only its own delivery).
#[derive(Default)]
pub struct Claimed {
    pub deliveries: Vec<Delivery>,
    pub unreadable: Vec<AttemptReport>,
}

pub async fn claim(pool: &Pool, request: ClaimRequest<'_>) -> Result<Claimed, DatabaseError> {
    let (room_webhooks, room_sizes): (Vec<i64>, Vec<i32>) = request
        .rooms
        .room
        .iter()
        .map(|&(webhook, room)| (webhook, i32::try_from(room).unwrap_or(i32::MAX)))
        .unzip();
    let client = pool.get().await?;
    let claimed_at = Instant::now();
    let statement = client
        .prepare_cached(
            "SELECT delivery_id, attempt, webhook_id, url, secrets, event_id, event, occurred_at, \
                    data::text AS data, max_in_flight, rate_limit_per_second, \
                    format, method, fields, key_field, parameters, headers, \
                    retry_schedule_ms, request_timeout_ms, batch_size \
             FROM webhooks.claim($1, $2, $3, $4, make_interval(secs => $5), $6, $7)",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &request.relay,
                &request.max_deliveries,
                &request.per_webhook,
                &request.rooms.skip,
                &request.lease.as_secs_f64(),
                &room_webhooks,
                &room_sizes,
            ],
        )
        .await?;
    let mut claimed = Claimed::default();
    for row in &rows {
        match delivery_from_row(row, claimed_at) {
            Ok(delivery) => claimed.deliveries.push(delivery),
            Err(error) => match unreadable_report(row) {
                Some(report) => {
                    tracing::error!(%error, delivery = report.delivery_id, "cannot read a claimed delivery; parking it");
                    claimed.unreadable.push(report);
                }
                None => {
                    tracing::error!(%error, "cannot read a claimed delivery; its lease will expire")
                }
            },
        }
    }
    Ok(claimed)
}

/// A report that parks a claimed row the relay could not read, if its id can be read.
fn unreadable_report(row: &tokio_postgres::Row) -> Option<AttemptReport> {
    Some(AttemptReport {
        delivery_id: row.try_get("delivery_id").ok()?,
        attempt: row.try_get("attempt").ok()?,
        outcome: AttemptOutcome::Failed,
        retry_after_ms: None,
        status: None,
        error: Some("unreadable"),
        response: None,
        duration_ms: 0,
    })
}

fn delivery_from_row(
    row: &tokio_postgres::Row,
    claimed_at: Instant,
) -> Result<Delivery, DatabaseError> {
    Ok(Delivery {
        delivery_id: row.try_get("delivery_id")?,
        attempt: row.try_get("attempt")?,
        webhook_id: row.try_get("webhook_id")?,
        url: row.try_get("url")?,
        secrets: row.try_get("secrets")?,
        event_id: row.try_get("event_id")?,
        event: row.try_get("event")?,
        occurred_at: row.try_get("occurred_at")?,
        data: row.try_get("data")?,
        limits: WebhookLimits {
            max_in_flight: row.try_get("max_in_flight")?,
            rate_limit_per_second: row.try_get("rate_limit_per_second")?,
            batch_size: row.try_get("batch_size")?,
        },
        shape: shape_from_row(row)?,
        retry_schedule: match row.try_get::<_, Option<Vec<i64>>>("retry_schedule_ms")? {
            Some(delays) => Some(RetrySchedule::from_millis(&delays).ok_or_else(|| {
                DatabaseError::Unexpected {
                    what: "retry schedule",
                    value: format!("{delays:?}"),
                }
            })?),
            None => None,
        },
        claimed_at,
    })
}

/// A webhook's request options, from the columns claim() and claim_probes() return.
pub fn shape_from_row(row: &tokio_postgres::Row) -> Result<Shape, DatabaseError> {
    let format: String = row.try_get("format")?;
    let method: String = row.try_get("method")?;
    let fields: Option<Json<Vec<Field>>> = row.try_get("fields")?;
    let parameters: Option<Json<serde_json::Map<String, serde_json::Value>>> =
        row.try_get("parameters")?;
    Ok(Shape {
        format: serde_json::from_value(serde_json::Value::String(format.clone())).map_err(
            |_| DatabaseError::Unexpected {
                what: "format",
                value: format,
            },
        )?,
        method: Method::from_bytes(method.as_bytes()).map_err(|_| DatabaseError::Unexpected {
            what: "method",
            value: method.clone(),
        })?,
        fields: fields.map(|Json(fields)| fields),
        key_field: row.try_get("key_field")?,
        parameters: parameters.map(|Json(parameters)| parameters),
        headers: headers_from_row(row)?,
        request_timeout: row
            .try_get::<_, Option<i32>>("request_timeout_ms")?
            .map(|ms| Duration::from_millis(ms.unsigned_abs().into())),
    })
}

/// A webhook's own request headers, from the `headers` column claim() and claim_probes()
/// return. SQL checks them (webhooks._headers_problem); one that still does not parse makes the
/// row unreadable, and the error names the header, never its value.
pub fn headers_from_row(row: &tokio_postgres::Row) -> Result<HeaderMap, DatabaseError> {
    // read as any JSON first: a typed read's error would quote the value
    let stored: Option<Json<serde_json::Value>> = row.try_get("headers")?;
    let stored = match stored.map(|Json(value)| value) {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => {
            return Err(DatabaseError::Unexpected {
                what: "headers",
                value: "not a JSON object".to_owned(),
            })
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in stored {
        let bad = || DatabaseError::Unexpected {
            what: "header",
            value: name.clone(),
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let mut header_value = value
            .as_str()
            .and_then(|text| HeaderValue::from_str(text).ok())
            .ok_or_else(bad)?;
        header_value.set_sensitive(true);
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

/// What an attempt came to, in webhooks.ack()'s words (its `outcome IN (...)` list) and in the
/// relay's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// a 2xx
    Delivered,
    /// again after retry_after_ms
    Retry,
    /// parked: the schedule is used up, or the request cannot be made
    Failed,
    /// 410 Gone: parked, and the webhook is disabled
    Gone,
    /// given back unattempted (shutdown, or no turn before the lease would end)
    Released,
}

impl AttemptOutcome {
    pub fn name(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Gone => "gone",
            AttemptOutcome::Released => "released",
        }
    }
}

/// The outcome of one attempt, in the shape webhooks.ack() reads.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub delivery_id: i64,
    pub attempt: i32,
    pub outcome: AttemptOutcome,
    /// How long after the acknowledgement to try again: the database adds this to its own
    /// clock, so a relay whose clock is off cannot move retries or disabling.
    pub retry_after_ms: Option<i64>,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub response: Option<String>,
    pub duration_ms: i32,
}

impl AttemptReport {
    /// Give a lease back without counting an attempt (shutdown, or no turn before the lease
    /// would run out).
    pub fn released(delivery: &Delivery) -> AttemptReport {
        AttemptReport {
            delivery_id: delivery.delivery_id,
            attempt: delivery.attempt,
            outcome: AttemptOutcome::Released,
            retry_after_ms: None,
            status: None,
            error: None,
            response: None,
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
        .try_get(0)?)
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

/// A probe an admin asked for (webhooks.verify, webhooks.test), as webhooks.claim_probes()
/// returns it.
pub enum Kind {
    Verify {
        file_urls: Vec<String>,
        content: String,
        headers: HeaderMap,
    },
    Test {
        secrets: Vec<String>,
        event: String,
        /// JSON text, as PostgreSQL wrote it.
        payload: String,
        shape: Box<Shape>,
    },
    /// Its row could not be read: it fails, with the reason, and nothing is sent.
    Unreadable(String),
}

pub struct Probe {
    pub id: i64,
    pub url: String,
    pub kind: Kind,
}

/// What webhooks.finish_probe() records.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProbeOutcome {
    pub success: bool,
    pub result: String,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub response: Option<String>,
    pub duration_ms: i32,
}

/// Lease up to `max` open probes for `lease`; a row that cannot be read comes back as an
/// unreadable probe, which fails alone.
pub async fn claim_probes(
    pool: &Pool,
    relay: &str,
    max: i32,
    lease: Duration,
) -> Result<Vec<Probe>, DatabaseError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT probe_id, kind, url, secrets, event, payload::text AS payload, file_urls, \
                    file_content, \
                    format, method, fields, key_field, parameters, headers, request_timeout_ms \
             FROM webhooks.claim_probes($1, $2, make_interval(secs => $3))",
            &[&relay, &max, &lease.as_secs_f64()],
        )
        .await?;
    let mut probes = Vec::with_capacity(rows.len());
    for row in &rows {
        match probe_from_row(row) {
            Ok(probe) => probes.push(probe),
            Err(error) => match row.try_get("probe_id") {
                Ok(id) => probes.push(Probe {
                    id,
                    url: String::new(),
                    kind: Kind::Unreadable(error.to_string()),
                }),
                Err(_) => {
                    tracing::error!(%error, "cannot read a claimed probe; its lease will expire")
                }
            },
        }
    }
    Ok(probes)
}

fn probe_from_row(row: &tokio_postgres::Row) -> Result<Probe, DatabaseError> {
    let kind: &str = row.try_get("kind")?;
    let kind = if kind == "verify" {
        Kind::Verify {
            file_urls: row.try_get("file_urls")?,
            content: row.try_get("file_content")?,
            headers: headers_from_row(row)?,
        }
    } else {
        Kind::Test {
            secrets: row.try_get("secrets")?,
            event: row.try_get("event")?,
            payload: row
                .try_get::<_, Option<String>>("payload")?
                .unwrap_or_else(|| "{}".to_owned()),
            shape: Box::new(shape_from_row(row)?),
        }
    };
    Ok(Probe {
        id: row.try_get("probe_id")?,
        url: row.try_get("url")?,
        kind,
    })
}

pub async fn finish_probe(
    pool: &Pool,
    probe: i64,
    outcome: &ProbeOutcome,
) -> Result<(), DatabaseError> {
    let client = pool.get().await?;
    client
        .execute(
            "SELECT webhooks.finish_probe($1, $2)",
            &[&probe, &Json(outcome)],
        )
        .await?;
    Ok(())
}

/// Run webhooks.maintain(): (action, object) of each thing it did.
pub async fn maintain(pool: &Pool) -> Result<Vec<(String, String)>, DatabaseError> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT action, object FROM webhooks.maintain()", &[])
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("action")?, row.try_get("object")?)))
        .collect()
}

/// (queued, held) deliveries, from webhooks.queue_depth().
pub async fn queue_depth(pool: &Pool) -> Result<(i64, i64), DatabaseError> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT queued, held FROM webhooks.queue_depth()", &[])
        .await?;
    Ok((row.try_get("queued")?, row.try_get("held")?))
}

/// Can the pool reach the database at all (/healthz)?
pub async fn reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
