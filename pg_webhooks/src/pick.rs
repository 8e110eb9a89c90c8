//! Picking members out of a JSON object without reading what they hold.
//!
//! The object is PostgreSQL's own jsonb text. It is read one level deep and each value is copied
//! as raw text: no number becomes a float, and no nesting is too deep for us that PostgreSQL
//! accepted (serde_json skips raw values without recursion).

use serde_json::value::RawValue;
use std::collections::HashMap;

/// `{"key": value, ...}` for each of `keys`; null for a key the object lacks, and for every key
/// when the text is not a JSON object.
pub fn members(object: &str, keys: &[String]) -> String {
    let found: HashMap<String, &RawValue> = serde_json::from_str(object).unwrap_or_default();
    let members: Vec<String> = keys
        .iter()
        .map(|key| {
            let value = found.get(key).map_or("null", |value| value.get());
            format!("{}: {value}", serde_json::Value::String(key.clone()))
        })
        .collect();
    format!("{{{}}}", members.join(", "))
}

#[cfg(test)]
mod tests {
    use super::members;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn numbers_keep_every_digit() {
        let row = r#"{"id": 123456789012345678901234567890.000000000000000001, "n": 1e400}"#;
        assert_eq!(
            members(row, &keys(&["id", "n"])),
            r#"{"id": 123456789012345678901234567890.000000000000000001, "n": 1e400}"#
        );
    }

    #[test]
    fn deep_values_are_copied_unread() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let row = format!(r#"{{"id": 1, "tree": {deep}}}"#);
        assert_eq!(
            members(&row, &keys(&["tree"])),
            format!(r#"{{"tree": {deep}}}"#)
        );
    }

    #[test]
    fn missing_keys_and_non_objects_give_nulls() {
        assert_eq!(members(r#"{"a": 1}"#, &keys(&["b"])), r#"{"b": null}"#);
        assert_eq!(members("[1, 2]", &keys(&["a"])), r#"{"a": null}"#);
    }

    #[test]
    fn keys_are_escaped() {
        assert_eq!(
            members(r#"{"a\"b": "x\u0000"}"#, &keys(&["a\"b"])),
            r#"{"a\"b": "x\u0000"}"#
        );
    }
}
