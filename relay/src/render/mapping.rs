//! KlickTipp-style field mapping: send only chosen values, each under its own name, with a
//! default for NULL or missing ones; the key field (the email) always goes along. And URL
//! placeholders `__name__`, filled in URL-encoded.

use regex::{Captures, Regex};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// One mapped value: `column` of the row (or key of an application event's payload), sent as
/// `name`, or `default` when it is NULL or missing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Field {
    pub column: String,
    pub name: String,
    #[serde(default)]
    pub default: Option<Value>,
}

#[cfg(test)]
impl Field {
    pub fn named(column: &str, name: &str, default: Option<Value>) -> Field {
        Field {
            column: column.to_owned(),
            name: name.to_owned(),
            default,
        }
    }
}

/// The values to send: the key field first (under its column's name, unless a field maps that
/// column to a name of its own), then each field under its name.
/// `source`: the values an event names (super::named_values).
pub fn mapped_values(
    source: Option<&Map<String, Value>>,
    fields: &[Field],
    key_field: &str,
) -> Map<String, Value> {
    let value_of = |column: &str, default: Option<&Value>| match source.and_then(|s| s.get(column))
    {
        Some(value) if !value.is_null() => value.clone(),
        _ => default.cloned().unwrap_or(Value::String(String::new())),
    };
    let mut values = Map::new();
    if !fields.iter().any(|field| field.column == key_field) {
        values.insert(key_field.to_owned(), value_of(key_field, None));
    }
    for field in fields {
        values.insert(
            field.name.clone(),
            value_of(&field.column, field.default.as_ref()),
        );
    }
    values
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"__([A-Za-z0-9](?:[A-Za-z0-9_]*[A-Za-z0-9])?)__").expect("a valid pattern")
});

/// Replace each `__name__` with the URL-encoded value of `name` (empty when there is none).
/// The extension allows placeholders only in the path and query, so a value cannot change the
/// host, and encoding keeps it from adding path segments or parameters. A path segment that
/// values would make `.` or `..` is refused: URL parsers resolve those (WHATWG also their `%2e`
/// spellings), so the request would go to another path.
pub fn fill_placeholders(
    url: &str,
    values: Option<&Map<String, Value>>,
) -> Result<String, DotSegment> {
    let (path, rest) = url.split_at(url.find(['?', '#']).unwrap_or(url.len()));
    let segments = path
        .split('/')
        .map(|segment| match fill(segment, values) {
            filled if filled != segment && is_dot_segment(&filled) => Err(DotSegment(filled)),
            filled => Ok(filled),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(segments.join("/") + &fill(rest, values))
}

#[derive(Debug, thiserror::Error)]
#[error("URL placeholders make the path segment {0:?}, which would be resolved away")]
pub struct DotSegment(String);

fn fill(text: &str, values: Option<&Map<String, Value>>) -> String {
    PLACEHOLDER
        .replace_all(text, |captures: &Captures| {
            let text = match values.and_then(|values| values.get(&captures[1])) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        })
        .into_owned()
}

fn is_dot_segment(segment: &str) -> bool {
    matches!(
        segment.to_ascii_lowercase().replace("%2e", ".").as_str(),
        "." | ".."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::named_values;
    use serde_json::json;

    fn mapped(data: &Value, fields: &[Field], key_field: &str) -> Value {
        Value::Object(mapped_values(
            named_values(data).as_deref(),
            fields,
            key_field,
        ))
    }

    #[test]
    fn mapped_values_rename_and_fall_back_to_defaults() {
        let data = json!({"new": {"email": "a@b.nl", "first_name": null, "city": "Utrecht"}});
        let fields = [
            Field::named("first_name", "fname", Some(json!("friend"))),
            Field::named("city", "town", None),
            Field::named("missing", "gone", None),
        ];
        assert_eq!(
            mapped(&data, &fields, "email"),
            json!({"email": "a@b.nl", "fname": "friend", "town": "Utrecht", "gone": ""})
        );
    }

    #[test]
    fn a_field_for_the_key_column_gives_the_key_its_own_name() {
        let data = json!({"new": {"email": "a@b.nl", "city": "Utrecht"}});
        let fields = [
            Field::named("email", "EmailAddress", None),
            Field::named("city", "town", None),
        ];
        assert_eq!(
            mapped(&data, &fields, "email"),
            json!({"EmailAddress": "a@b.nl", "town": "Utrecht"})
        );
    }

    #[test]
    fn columns_the_row_lacks_come_from_its_parent_row() {
        // a tag of a contact: the link table's row, and the contact's email (webhooks.enrich)
        let data = json!({"new": {"contact_id": 4, "tag_id": 7, "note": null},
                          "parent": {"email": "a@b.nl", "note": "from the parent"}});
        let fields = [
            Field::named("tag_id", "tag", None),
            Field::named("note", "note", Some(json!("none"))),
        ];
        assert_eq!(
            mapped(&data, &fields, "email"),
            json!({"email": "a@b.nl", "tag": 7, "note": "none"})
        );
    }

    #[test]
    fn a_parent_gone_leaves_its_columns_empty() {
        let data = json!({"old": {"contact_id": 4, "tag_id": 7}, "parent": null});
        assert_eq!(mapped(&data, &[], "email"), json!({"email": ""}));
    }

    #[test]
    fn application_events_map_their_payload() {
        let data = json!({"recipient": "a@b.nl", "ip": "192.0.2.1"});
        let fields = [Field::named("ip", "address", None)];
        assert_eq!(
            mapped(&data, &fields, "recipient"),
            json!({"recipient": "a@b.nl", "address": "192.0.2.1"})
        );
    }

    #[test]
    fn placeholder_values_cannot_add_path_segments_or_parameters() {
        let values = json!({"email": "x/../admin?drop=1&a=b", "id": 7});
        let values = values.as_object();
        assert_eq!(
            fill_placeholders("https://h.example/u/__id__/?e=__email__&n=__none__", values)
                .expect("no dot segment"),
            "https://h.example/u/7/?e=x%2F..%2Fadmin%3Fdrop%3D1%26a%3Db&n="
        );
    }

    #[test]
    fn names_with_underscores_are_one_placeholder() {
        let values = json!({"first_name": "Jan"});
        assert_eq!(
            fill_placeholders("https://h.example/?n=__first_name__", values.as_object())
                .expect("no dot segment"),
            "https://h.example/?n=Jan"
        );
    }

    #[test]
    fn a_value_that_would_make_a_dot_segment_is_refused() {
        let values = json!({"id": "..", "part": "."});
        let url = "https://h.example/admin/u/__id__/x";
        assert!(fill_placeholders(url, values.as_object()).is_err());
        let url = "https://h.example/u/__part__./x";
        assert!(fill_placeholders(url, values.as_object()).is_err());
        let url = "https://h.example/u/x__id__/?q=__id__";
        assert_eq!(
            fill_placeholders(url, values.as_object()).expect("not a whole segment"),
            "https://h.example/u/x../?q=.."
        );
    }

    proptest::proptest! {
        #[test]
        fn no_placeholder_value_changes_the_host_or_the_path_segments(value in ".*") {
            let values = json!({"x": value});
            match fill_placeholders("https://h.example/a/__x__/b?q=__x__", values.as_object()) {
                Ok(filled) => {
                    let url = url::Url::parse(&filled).expect("still a URL");
                    proptest::prop_assert_eq!(url.host_str(), Some("h.example"));
                    proptest::prop_assert_eq!(url.path_segments().map(Iterator::count), Some(3));
                    proptest::prop_assert_eq!(url.query_pairs().count(), 1);
                }
                Err(_) => proptest::prop_assert!(value == "." || value == ".."),
            }
        }
    }
}
