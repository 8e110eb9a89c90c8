//! The request body: `{"type": <event>, "timestamp": <RFC 3339, UTC, microseconds>, "data": ...}`.

use crate::claim::Delivery;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

pub fn body(delivery: &Delivery) -> Vec<u8> {
    event_body(&delivery.event, delivery.occurred_at, &delivery.data)
}

/// The body for an event that is not (yet) a delivery, such as a test request.
pub fn event_body(event: &str, occurred_at: DateTime<Utc>, data: &serde_json::Value) -> Vec<u8> {
    json!({
        "type": event,
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
    .into_bytes()
}

/// The `webhook-id`: the event's id, the same on every retry, so receivers can deduplicate.
pub fn message_id(delivery: &Delivery) -> String {
    format!("evt_{}", delivery.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_body_has_type_timestamp_and_data_in_that_order() {
        let delivery = Delivery {
            delivery_id: 1,
            attempt: 1,
            webhook_id: 2,
            url: "http://example.com/".into(),
            secrets: vec![],
            event_id: 42,
            event: "profile.updated".into(),
            occurred_at: Utc
                .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
                .single()
                .expect("date"),
            data: json!({"key": {"id": 42}}),
            limits: Default::default(),
            claimed_at: tokio::time::Instant::now(),
        };
        assert_eq!(
            String::from_utf8(body(&delivery)).expect("utf-8"),
            r#"{"type":"profile.updated","timestamp":"2026-11-22T10:00:00.000000Z","data":{"key":{"id":42}}}"#
        );
        assert_eq!(message_id(&delivery), "evt_42");
    }
}
