//! Copernica-style parameters, as a PHP receiver reads them from `$_POST` (or `$_GET`).
//!
//! Row events: `type` (create, update, delete), `profile`, `database`, `timestamp`
//! (`YYYY-MM-DD HH:MM:SS`, UTC), `time` (unix seconds), `created`, `modified`, `fields[column]`,
//! `interests[]` (from an array column named `interests`), `parameters[key]`; rows of a child
//! table (a collection) add `subprofile` and `collection`, and have no `interests`; delete events
//! have no `created`, `modified` or `interests`.
//! `created` and `modified` come from `created_at`/`created` and `updated_at`/`modified` columns
//! in Copernica's `YYYY-MM-DD HH:MM:SS` (UTC), else are the event's time.
//! Application events: their payload's keys, with `id` (the payload's own, else the event id), `type` (Copernica's name for email
//! events: `open`, `click`, `bounce`, `failure`, `delivery`, `unsubscribe`, `abuse`; otherwise
//! the event name), `timestamp` and `time`.

use super::Message;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

/// Keyed arrays as `fields[email]=...`, plain arrays as `interests[]=...`.
fn config(form_encoding: bool) -> serde_qs::Config {
    serde_qs::Config::new()
        .use_form_encoding(form_encoding)
        .array_format(serde_qs::ArrayFormat::EmptyIndexed)
}

/// An `application/x-www-form-urlencoded` body (brackets percent-encoded, as browsers send them).
pub fn encode_body(parameters: &Value) -> Result<String, serde_qs::Error> {
    config(true).serialize_string(&numbers_as_text(parameters))
}

/// A query string (brackets left readable, as PHP's http_build_query output is usually written).
pub fn encode_query(parameters: &Value) -> Result<String, serde_qs::Error> {
    config(false).serialize_string(&numbers_as_text(parameters))
}

/// Numbers as their digits: a form carries text anyway, and serde_qs would otherwise see the
/// private shape arbitrary-precision numbers serialize as.
fn numbers_as_text(value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::String(number.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_text).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(name, member)| (name.clone(), numbers_as_text(member)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn document(message: &Message, data: &Value, parameters: Option<&Map<String, Value>>) -> Value {
    let mut document = if data.get("entity").is_some() {
        row_event(message, data)
    } else {
        application_event(message, data)
    };
    for (name, value) in [
        ("timestamp", json!(copernica_time(message.occurred_at))),
        ("time", json!(message.occurred_at.timestamp())),
    ] {
        document.insert(name.to_owned(), value);
    }
    if let Some(parameters) = parameters {
        document.insert("parameters".to_owned(), Value::Object(parameters.clone()));
    }
    Value::Object(document)
}

fn row_event(message: &Message, data: &Value) -> Map<String, Value> {
    let kind = match message.event.rsplit('.').next() {
        Some("created") => "create",
        Some("deleted") => "delete",
        _ => "update",
    };
    let image = data
        .get(if kind == "delete" { "old" } else { "new" })
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let key = key_text(data.get("key"));
    let in_collection = data.get("collection").is_some();
    let mut document = Map::new();
    document.insert("type".to_owned(), json!(kind));
    if in_collection {
        document.insert("profile".to_owned(), data["profile"].clone());
        document.insert("database".to_owned(), data["database"].clone());
        document.insert("collection".to_owned(), data["collection"].clone());
        document.insert("subprofile".to_owned(), json!(key));
    } else {
        document.insert("profile".to_owned(), json!(key));
        // the identifier webhooks.identify() gave the table, else its name
        let database = data.get("database").unwrap_or(&data["table"]);
        document.insert("database".to_owned(), database.clone());
    }
    if kind != "delete" {
        let when = copernica_time(message.occurred_at);
        for (name, columns) in [
            ("created", ["created_at", "created"]),
            ("modified", ["updated_at", "modified"]),
        ] {
            let value = columns
                .iter()
                .find_map(|c| image.get(*c))
                .map(as_copernica_time);
            document.insert(name.to_owned(), value.unwrap_or_else(|| json!(when)));
        }
    }
    let mut fields = image;
    let interests = fields.remove("interests");
    document.insert("fields".to_owned(), Value::Object(fields));
    if let Some(interests @ Value::Array(_)) = interests {
        if kind != "delete" && !in_collection {
            document.insert("interests".to_owned(), interests);
        }
    }
    document
}

/// Copernica's `YYYY-MM-DD HH:MM:SS`, in UTC.
fn copernica_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A timestamp column's value as Copernica writes times: PostgreSQL's JSON gives
/// `2026-11-22T10:00:00.123456+00:00` (timestamptz, made UTC) or `2026-11-22T10:00:00.123456`
/// (timestamp, taken as it is). Anything else (a date, a text column) is sent unchanged.
fn as_copernica_time(value: &Value) -> Value {
    let Some(text) = value.as_str() else {
        return value.clone();
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return json!(copernica_time(at.with_timezone(&Utc)));
    }
    match NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        Ok(at) => json!(at.format("%Y-%m-%d %H:%M:%S").to_string()),
        Err(_) => value.clone(),
    }
}

/// A primary key as one value: the value of a one-column key, else the values joined by commas.
fn key_text(key: Option<&Value>) -> String {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match key.and_then(Value::as_object) {
        Some(columns) => columns.values().map(text).collect::<Vec<_>>().join(","),
        None => String::new(),
    }
}

fn application_event(message: &Message, data: &Value) -> Map<String, Value> {
    let mut document = data.as_object().cloned().unwrap_or_default();
    // a payload's own id (an email event's message id, which receivers link back to) stays
    document
        .entry("id".to_owned())
        .or_insert_with(|| json!(message.event_id));
    document.insert("type".to_owned(), json!(copernica_type(message.event)));
    document
}

fn copernica_type(event: &str) -> &str {
    match event {
        "email.opened" => "open",
        "email.clicked" => "click",
        "email.bounced" => "bounce",
        "email.failed" => "failure",
        "email.delivered" => "delivery",
        "email.unsubscribed" => "unsubscribe",
        "email.abuse" => "abuse",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(event: &str, data: &Value) -> String {
        let message = Message {
            id: "evt_9",
            event_id: 9,
            event,
            occurred_at: super::super::tests::at_ten(),
            data: "",
        };
        let parameters = json!({"source": "crm"});
        encode_query(&document(&message, data, parameters.as_object())).expect("encodes")
    }

    #[test]
    fn a_profile_update_has_copernicas_fields_and_interests() {
        let data = json!({"table": "public.profiles", "entity": "profile", "key": {"id": 42},
                          "new": {"id": 42, "email": "a@b.nl", "interests": ["sports", "music"]}});
        assert_eq!(
            render("profile.updated", &data),
            "type=update&profile=42&database=public.profiles\
             &created=2026-11-22+10:00:00&modified=2026-11-22+10:00:00\
             &fields[id]=42&fields[email]=a@b.nl&interests[]=sports&interests[]=music\
             &timestamp=2026-11-22+10:00:00&time=1795341600&parameters[source]=crm"
        );
    }

    #[test]
    fn an_identified_table_is_sent_as_the_database_the_receiver_knows() {
        let data = json!({"table": "public.profiles", "entity": "profile", "key": {"id": 42},
                          "database": "12", "old": {"id": 42}});
        assert!(render("profile.deleted", &data).starts_with("type=delete&profile=42&database=12&"));
    }

    #[test]
    fn a_subprofile_delete_names_its_profile_and_collection() {
        let data = json!({"table": "public.orders", "entity": "order", "key": {"id": 5},
                          "profile": 42, "collection": "order", "database": "public.profiles",
                          "old": {"id": 5, "profile_id": 42}});
        assert_eq!(
            render("order.deleted", &data),
            "type=delete&profile=42&database=public.profiles&collection=order&subprofile=5\
             &fields[id]=5&fields[profile_id]=42\
             &timestamp=2026-11-22+10:00:00&time=1795341600&parameters[source]=crm"
        );
    }

    #[test]
    fn timestamp_columns_arrive_as_copernica_writes_times() {
        let data = json!({"table": "public.profiles", "entity": "profile", "key": {"id": 1},
                          "new": {"id": 1, "created_at": "2026-11-20T09:30:00.123456+01:00",
                                  "modified": "2026-11-21T08:00:00.5"}});
        let rendered = render("profile.updated", &data);
        assert!(
            rendered.contains("&created=2026-11-20+08:30:00&modified=2026-11-21+08:00:00&"),
            "{rendered}"
        );
    }

    #[test]
    fn an_email_events_own_id_is_kept() {
        let data = json!({"id": "msg-77", "recipient": "a@b.nl"});
        let rendered = render("email.clicked", &data);
        assert!(
            rendered.starts_with("id=msg-77&recipient=a@b.nl&type=click"),
            "{rendered}"
        );
    }

    #[test]
    fn email_events_carry_copernicas_type_names() {
        let data = json!({"recipient": "a@b.nl", "tags": ["x"]});
        assert_eq!(
            render("email.opened", &data),
            "recipient=a@b.nl&tags[]=x&id=9&type=open\
             &timestamp=2026-11-22+10:00:00&time=1795341600&parameters[source]=crm"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_row_comes_back_field_for_field_when_the_form_is_decoded(
            row in proptest::collection::btree_map("[a-z_][a-z0-9_]{0,10}", ".*", 0..8)
        ) {
            let data = json!({"table": "public.t", "entity": "t", "key": {"id": 1},
                              "new": row.clone()});
            let message = Message {
                id: "evt_1",
                event_id: 1,
                event: "t.created",
                occurred_at: super::super::tests::at_ten(),
                data: "",
            };
            let body = encode_body(&document(&message, &data, None)).expect("encodes");
            let decoded: std::collections::BTreeMap<String, Value> =
                serde_qs::Config::new().use_form_encoding(true).deserialize_str(&body).expect("decodes");
            let fields = decoded.get("fields").cloned().unwrap_or_else(|| json!({}));
            for (column, value) in &row {
                if column != "interests" {
                    proptest::prop_assert_eq!(&fields[column], &json!(value));
                }
            }
        }
    }
}
