//! The request for one event, in the webhook's format (sql/25_options.sql):
//!
//! - `json`: `{"type": <event>, "timestamp": <RFC 3339, UTC, microseconds>, "data": ...}`
//! - `form`: Copernica's `application/x-www-form-urlencoded` fields (`form.rs`)
//! - `query`: the same fields in the URL's query string, and no body
//!
//! With a field mapping (`mapping.rs`) the data is just the mapped values, for every format.
//! URL placeholders `__name__` are filled in from the same values.
//!
//! The data arrives as PostgreSQL's jsonb text. A `json` request without a field mapping carries
//! that text as it is, byte for byte. Mappings, placeholders and the other formats read it, with
//! numbers kept as their digits (serde_json's arbitrary_precision): nothing on the way becomes a
//! float. Data they cannot read (nested deeper than serde_json's 128 levels) fails only its own
//! delivery, with error class `render`.

mod form;
mod mapping;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::time::Duration;

pub use mapping::Field;

/// How a webhook wants its requests (the options the relay needs).
#[derive(Debug, Clone)]
pub struct Shape {
    pub format: Format,
    pub method: Method,
    pub fields: Option<Vec<Field>>,
    pub key_field: String,
    pub parameters: Option<Map<String, Value>>,
    /// The webhook's own extra headers (configure's "headers"), values marked sensitive so
    /// that no log shows them.
    pub headers: HeaderMap,
    /// The webhook's own request timeout, if it has one (else the relay's --request-timeout).
    pub request_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"type", "timestamp", "data"}` (Standard Webhooks)
    Json,
    Form,
    Query,
    /// the data alone, as PostgreSQL wrote it: receivers that own their schema (Mailingwork)
    Raw,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            format: Format::Json,
            method: Method::POST,
            fields: None,
            key_field: "email".to_owned(),
            parameters: None,
            headers: HeaderMap::new(),
            request_timeout: None,
        }
    }
}

/// One event on its way to one webhook.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The `webhook-id` header.
    pub id: &'a str,
    pub event_id: i64,
    pub event: &'a str,
    pub occurred_at: DateTime<Utc>,
    /// The event's data as JSON text (PostgreSQL's).
    pub data: &'a str,
}

/// What goes over the wire. The signature covers the body, or for the `query` format the query
/// string the relay added (a GET has no body to sign).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub signed_query: Option<String>,
}

impl Request {
    /// The bytes the signature covers.
    pub fn signed(&self) -> &[u8] {
        self.signed_query
            .as_deref()
            .map_or(&self.body, str::as_bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read the event's data: {0}")]
    Data(#[from] serde_json::Error),
    #[error("cannot encode the parameters: {0}")]
    Encode(#[from] serde_qs::Error),
    #[error(transparent)]
    Url(#[from] mapping::DotSegment),
}

pub fn request(message: &Message, url: &str, shape: &Shape) -> Result<Request, RenderError> {
    let has_placeholders = url.contains("__");
    if matches!(shape.format, Format::Json | Format::Raw)
        && shape.fields.is_none()
        && !has_placeholders
    {
        return Ok(json_request(message, shape, message.data, url.to_owned()));
    }
    let data: Value = serde_json::from_str(message.data)?;
    let values = named_values(&data);
    let mapped = shape
        .fields
        .as_ref()
        .map(|fields| mapping::mapped_values(values.as_deref(), fields, &shape.key_field));
    let url = if has_placeholders {
        mapping::fill_placeholders(url, mapped.as_ref().or(values.as_deref()))?
    } else {
        url.to_owned()
    };
    let request = match shape.format {
        Format::Json | Format::Raw => match mapped {
            Some(values) => json_request(message, shape, &Value::Object(values).to_string(), url),
            // read only for its placeholders: the body keeps PostgreSQL's text
            None => json_request(message, shape, message.data, url),
        },
        Format::Form => {
            let body = form::encode_body(&parameters(message, &data, shape, mapped))?.into_bytes();
            Request {
                method: shape.method.clone(),
                url,
                content_type: Some("application/x-www-form-urlencoded"),
                body,
                signed_query: None,
            }
        }
        Format::Query => {
            let query = form::encode_query(&parameters(message, &data, shape, mapped))?;
            let separator = if url.contains('?') { '&' } else { '?' };
            Request {
                method: shape.method.clone(),
                url: format!("{url}{separator}{query}"),
                content_type: None,
                body: Vec::new(),
                signed_query: Some(query),
            }
        }
    };
    Ok(request)
}

/// A JSON body: the data in its envelope (`json`), or alone (`raw`).
fn json_request(message: &Message, shape: &Shape, data: &str, url: String) -> Request {
    Request {
        method: shape.method.clone(),
        url,
        content_type: Some("application/json"),
        body: match shape.format {
            Format::Raw => data.as_bytes().to_vec(),
            _ => json_body(message.event, message.occurred_at, data),
        },
        signed_query: None,
    }
}

/// The `form` and `query` parameters: the mapped values, or Copernica's fields; the webhook's
/// fixed `parameters[key]` go with either.
fn parameters(
    message: &Message,
    data: &Value,
    shape: &Shape,
    mapped: Option<Map<String, Value>>,
) -> Value {
    match mapped {
        Some(mut values) => {
            if let Some(fixed) = &shape.parameters {
                values
                    .entry("parameters")
                    .or_insert_with(|| Value::Object(fixed.clone()));
            }
            Value::Object(values)
        }
        None => form::document(message, data, shape.parameters.as_ref()),
    }
}

/// The values fields and URL placeholders name: a row event's row (new, else old), with the
/// parent row's values it carries (webhooks.enrich) for columns the row does not have; an
/// application event's payload.
fn named_values(data: &Value) -> Option<Cow<'_, Map<String, Value>>> {
    let Some(row) = ["new", "old"].iter().find_map(|image| data.get(image)) else {
        return data.as_object().map(Cow::Borrowed);
    };
    let row = row.as_object()?;
    match data.get("parent").and_then(Value::as_object) {
        Some(parent) if !parent.is_empty() => {
            let mut values = parent.clone();
            values.extend(
                row.iter()
                    .map(|(column, value)| (column.clone(), value.clone())),
            );
            Some(Cow::Owned(values))
        }
        _ => Some(Cow::Borrowed(row)),
    }
}

/// The JSON body (also used for test requests), with `data` (JSON text) as it is.
pub fn json_body(event: &str, occurred_at: DateTime<Utc>, data: &str) -> Vec<u8> {
    let head = json!({
        "type": event,
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    with_data(&head, data)
}

/// `head` (a JSON object) with `"data": data` (JSON text, as it is) added last.
fn with_data(head: &Value, data: &str) -> Vec<u8> {
    let head = head.to_string();
    // `{"type":...,"timestamp":...}` + `,"data":` + data + `}`
    let mut body = Vec::with_capacity(head.len() + data.len() + 9);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"data\":");
    body.extend_from_slice(data.as_bytes());
    body.push(b'}');
    body
}

/// One request for a batch of `json` messages: a JSON array of their bodies, each with its
/// message id first (the receiver deduplicates on those), in the order given.
pub fn batch_request(messages: &[Message], url: &str, shape: &Shape) -> Request {
    let mut body = vec![b'['];
    for (n, message) in messages.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        let head = json!({
            "id": message.id,
            "type": message.event,
            "timestamp": message.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        body.extend_from_slice(&with_data(&head, message.data));
    }
    body.push(b']');
    Request {
        method: shape.method.clone(),
        url: url.to_owned(),
        content_type: Some("application/json"),
        body,
        signed_query: None,
    }
}

/// The `webhook-id` of a batch: its first event's, marked as a batch.
pub fn batch_id(first_event_id: i64) -> String {
    format!("batch_{first_event_id}")
}

/// The `webhook-id` of an event: its id, the same on every retry, so receivers can deduplicate.
pub fn message_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(super) fn at_ten() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .expect("date")
    }

    fn message(data: &str) -> Message<'_> {
        Message {
            id: "evt_42",
            event_id: 42,
            event: "profile.updated",
            occurred_at: at_ten(),
            data,
        }
    }

    #[test]
    fn a_batch_is_a_json_array_of_bodies_each_with_its_id_first() {
        let message = |id: &'static str, data: &'static str| Message {
            id,
            event_id: 1,
            event: "profile.updated",
            occurred_at: at_ten(),
            data,
        };
        let request = batch_request(
            &[message("evt_1", r#"{"n": 1.50}"#), message("evt_2", "{}")],
            "https://example.com/hook",
            &Shape::default(),
        );
        assert_eq!(
            String::from_utf8(request.body).expect("utf-8"),
            concat!(
                r#"[{"id":"evt_1","type":"profile.updated","timestamp":"2026-11-22T10:00:00.000000Z","data":{"n": 1.50}},"#,
                r#"{"id":"evt_2","type":"profile.updated","timestamp":"2026-11-22T10:00:00.000000Z","data":{}}]"#
            )
        );
        assert_eq!(request.content_type, Some("application/json"));
    }

    #[test]
    fn the_json_body_has_type_timestamp_and_data_in_that_order() {
        let data = r#"{"key":{"id":42}}"#;
        let request =
            request(&message(data), "http://h.example/", &Shape::default()).expect("renders");
        assert_eq!(
            String::from_utf8(request.body.clone()).expect("utf-8"),
            r#"{"type":"profile.updated","timestamp":"2026-11-22T10:00:00.000000Z","data":{"key":{"id":42}}}"#
        );
        assert_eq!(request.signed(), request.body);
        assert_eq!(message_id(42), "evt_42");
    }

    #[test]
    fn url_placeholders_can_name_the_parent_rows_values() {
        let data = r#"{"new": {"contact_id": 4, "tag_id": 7}, "parent": {"email": "a@b.nl"}}"#;
        let request = request(
            &message(data),
            "http://h.example/tag/__tag_id__?email=__email__",
            &Shape::default(),
        )
        .expect("renders");
        assert_eq!(request.url, "http://h.example/tag/7?email=a%40b.nl");
    }

    #[test]
    fn the_raw_format_sends_the_data_alone_byte_for_byte_and_signs_it() {
        let data = r#"{"id": 42, "amount": 1.10, "fields": [{"id": 7, "value": "Jan"}]}"#;
        let shape = Shape {
            format: Format::Raw,
            ..Shape::default()
        };
        let request = request(&message(data), "http://h.example/hook", &shape).expect("renders");
        assert_eq!(request.body, data.as_bytes());
        assert_eq!(request.signed(), data.as_bytes());
        assert_eq!(request.content_type, Some("application/json"));
    }

    #[test]
    fn the_query_format_puts_the_parameters_in_the_url_and_signs_them() {
        let data = r#"{"new": {"email": "a@b.nl", "name": "Jan & Piet"}}"#;
        let shape = Shape {
            format: Format::Query,
            method: Method::GET,
            fields: Some(vec![Field::named("name", "n", None)]),
            ..Shape::default()
        };
        let request =
            request(&message(data), "http://h.example/add?list=1", &shape).expect("renders");
        assert_eq!(
            request.url,
            "http://h.example/add?list=1&email=a@b.nl&n=Jan+%26+Piet"
        );
        assert!(request.body.is_empty());
        assert_eq!(request.signed(), b"email=a@b.nl&n=Jan+%26+Piet");
    }

    #[test]
    fn placeholders_are_filled_from_the_row_without_a_mapping() {
        let data = r#"{"new": {"email": "a+b@c.nl"}}"#;
        let request = request(
            &message(data),
            "http://h.example/u/__email__",
            &Shape::default(),
        )
        .expect("renders");
        assert_eq!(request.url, "http://h.example/u/a%2Bb%40c.nl");
    }

    #[test]
    fn json_data_is_sent_as_postgresql_wrote_it() {
        let data = r#"{"n": 123456789012345678901234567890.000000000000000001, "big": 9007199254740993, "s": "\u00e9\ud83d\ude00"}"#;
        let request =
            request(&message(data), "http://h.example/", &Shape::default()).expect("renders");
        let body = String::from_utf8(request.body).expect("utf-8");
        assert!(body.ends_with(&format!(",\"data\":{data}}}")), "{body}");
    }

    #[test]
    fn form_and_mapped_requests_keep_every_digit() {
        let data = r#"{"new": {"email": "a@b.nl", "n": 123456789012345678901234567890.000000000000000001, "big": 9007199254740993}}"#;
        let mapped = Shape {
            fields: Some(vec![
                Field::named("n", "n", None),
                Field::named("big", "big", None),
            ]),
            ..Shape::default()
        };
        let body = request(&message(data), "http://h.example/", &mapped)
            .expect("renders")
            .body;
        assert!(
            String::from_utf8_lossy(&body).ends_with(
                r#""data":{"email":"a@b.nl","n":123456789012345678901234567890.000000000000000001,"big":9007199254740993}}"#
            ),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let query = Shape {
            format: Format::Query,
            method: Method::GET,
            ..mapped
        };
        let url = request(&message(data), "http://h.example/", &query)
            .expect("renders")
            .url;
        assert_eq!(
            url,
            "http://h.example/?email=a@b.nl&n=123456789012345678901234567890.000000000000000001&big=9007199254740993"
        );
    }

    #[test]
    fn fixed_parameters_go_with_mapped_fields() {
        let data = r#"{"new": {"email": "a@b.nl", "first_name": "Jan"}}"#;
        let shape = Shape {
            format: Format::Form,
            fields: Some(vec![Field::named("first_name", "fname", None)]),
            parameters: serde_json::from_str(r#"{"list": "7"}"#).ok(),
            ..Shape::default()
        };
        let body = request(&message(data), "http://h.example/", &shape)
            .expect("renders")
            .body;
        assert_eq!(
            String::from_utf8_lossy(&body),
            "email=a%40b.nl&fname=Jan&parameters%5Blist%5D=7"
        );
    }

    #[test]
    fn data_too_deep_to_read_fails_only_its_request() {
        let data = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let data = format!(r#"{{"new": {{"tree": {data}}}}}"#);
        let form = Shape {
            format: Format::Form,
            ..Shape::default()
        };
        assert!(matches!(
            request(&message(&data), "http://h.example/", &form),
            Err(RenderError::Data(_))
        ));
        // the plain json format does not read it at all
        assert!(request(&message(&data), "http://h.example/", &Shape::default()).is_ok());
    }
}
