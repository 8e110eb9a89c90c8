//! The request for one event, in the webhook's format (sql/25_options.sql):
//!
//! - `json`: `{"type": <event>, "timestamp": <RFC 3339, UTC, microseconds>, "data": ...}`
//! - `form`: Copernica's `application/x-www-form-urlencoded` fields (`form.rs`)
//! - `query`: the same fields in the URL's query string, and no body
//!
//! With a field mapping (`mapping.rs`) the data is just the mapped values, for every format.
//! URL placeholders `__name__` are filled in from the same values.

mod form;
mod mapping;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use mapping::Field;

/// How a webhook wants its requests (the options the relay needs).
#[derive(Debug, Clone)]
pub struct Shape {
    pub format: Format,
    pub method: Method,
    pub fields: Option<Vec<Field>>,
    pub key_field: String,
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Form,
    Query,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            format: Format::Json,
            method: Method::POST,
            fields: None,
            key_field: "email".to_owned(),
            parameters: None,
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
    pub data: &'a Value,
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
    #[error("cannot encode the parameters: {0}")]
    Encode(#[from] serde_qs::Error),
    #[error(transparent)]
    Url(#[from] mapping::DotSegment),
}

pub fn request(message: &Message, url: &str, shape: &Shape) -> Result<Request, RenderError> {
    let mapped = shape
        .fields
        .as_ref()
        .map(|fields| mapping::mapped_values(message.data, fields, &shape.key_field));
    let url = if url.contains("__") {
        mapping::fill_placeholders(url, mapped.as_ref().or(row_or_payload(message.data)))?
    } else {
        url.to_owned()
    };
    let request = match shape.format {
        Format::Json => {
            let data = mapped.map(Value::Object);
            let body = json_body(
                message.event,
                message.occurred_at,
                data.as_ref().unwrap_or(message.data),
            );
            Request {
                method: shape.method.clone(),
                url,
                content_type: Some("application/json"),
                body,
                signed_query: None,
            }
        }
        Format::Form => {
            let body = form::encode_body(&parameters(message, shape, mapped))?.into_bytes();
            Request {
                method: shape.method.clone(),
                url,
                content_type: Some("application/x-www-form-urlencoded"),
                body,
                signed_query: None,
            }
        }
        Format::Query => {
            let query = form::encode_query(&parameters(message, shape, mapped))?;
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

/// The `form` and `query` parameters: the mapped values, or Copernica's fields.
fn parameters(message: &Message, shape: &Shape, mapped: Option<Map<String, Value>>) -> Value {
    match mapped {
        Some(values) => Value::Object(values),
        None => form::document(message, shape.parameters.as_ref()),
    }
}

/// The row (new, else old) of a row event; the payload of an application event.
fn row_or_payload(data: &Value) -> Option<&Map<String, Value>> {
    ["new", "old"]
        .iter()
        .find_map(|image| data.get(image))
        .unwrap_or(data)
        .as_object()
}

/// The JSON body (also used for test requests).
pub fn json_body(event: &str, occurred_at: DateTime<Utc>, data: &Value) -> Vec<u8> {
    json!({
        "type": event,
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
    .into_bytes()
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

    fn message(data: &Value) -> Message<'_> {
        Message {
            id: "evt_42",
            event_id: 42,
            event: "profile.updated",
            occurred_at: at_ten(),
            data,
        }
    }

    #[test]
    fn the_json_body_has_type_timestamp_and_data_in_that_order() {
        let data = json!({"key": {"id": 42}});
        let request =
            request(&message(&data), "http://h.example/", &Shape::default()).expect("renders");
        assert_eq!(
            String::from_utf8(request.body.clone()).expect("utf-8"),
            r#"{"type":"profile.updated","timestamp":"2026-11-22T10:00:00.000000Z","data":{"key":{"id":42}}}"#
        );
        assert_eq!(request.signed(), request.body);
        assert_eq!(message_id(42), "evt_42");
    }

    #[test]
    fn the_query_format_puts_the_parameters_in_the_url_and_signs_them() {
        let data = json!({"new": {"email": "a@b.nl", "name": "Jan & Piet"}});
        let shape = Shape {
            format: Format::Query,
            method: Method::GET,
            fields: Some(vec![Field::named("name", "n", None)]),
            ..Shape::default()
        };
        let request =
            request(&message(&data), "http://h.example/add?list=1", &shape).expect("renders");
        assert_eq!(
            request.url,
            "http://h.example/add?list=1&email=a@b.nl&n=Jan+%26+Piet"
        );
        assert!(request.body.is_empty());
        assert_eq!(request.signed(), b"email=a@b.nl&n=Jan+%26+Piet");
    }

    #[test]
    fn placeholders_are_filled_from_the_row_without_a_mapping() {
        let data = json!({"new": {"email": "a+b@c.nl"}});
        let request = request(
            &message(&data),
            "http://h.example/u/__email__",
            &Shape::default(),
        )
        .expect("renders");
        assert_eq!(request.url, "http://h.example/u/a%2Bb%40c.nl");
    }
}
