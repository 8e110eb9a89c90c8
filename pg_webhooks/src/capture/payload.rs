//! A row event's payload, built from the row images as jsonb values, without the executor:
//! `{"new": ..., "old": ..., "changed": [...], "parent": ...}`, the same jsonb that
//! `jsonb_build_object` gave when the append was SQL (tests/regress/sql/30_capture.sql pins it).

use pgrx::pg_sys;
use std::ffi::{c_char, c_int, CStr};

/// The images one event carries; `None` is a key the operation does not have.
pub(super) struct RowImages {
    pub(super) new: Option<pg_sys::Datum>,
    pub(super) old: Option<pg_sys::Datum>,
    pub(super) parent: Option<pg_sys::Datum>,
}

impl RowImages {
    /// The payload, in the current memory context. An update (both images given) also carries
    /// `changed`: the keys whose values differ, sorted as `ORDER BY key` sorts text.
    pub(super) unsafe fn payload(&self) -> pg_sys::Datum {
        let mut object = JsonbObject::begin();
        let changed = match (self.new, self.old) {
            (Some(new), Some(old)) => Some(changed_keys(jsonb(new), jsonb(old))),
            _ => None,
        };
        if let Some(old) = self.old {
            object.jsonb_field(c"old", old);
        }
        if let Some(new) = self.new {
            object.jsonb_field(c"new", new);
        }
        if let Some(changed) = changed {
            object.key(c"changed");
            if changed.is_empty() {
                // what jsonb_agg gives over no rows
                object.push(pg_sys::JsonbIteratorToken::WJB_VALUE, &mut null_value());
            } else {
                object.strings(&changed);
            }
        }
        if let Some(parent) = self.parent {
            object.jsonb_field(c"parent", parent);
        }
        object.end()
    }
}

/// A jsonb object being built, as jsonb_build_object builds one.
struct JsonbObject {
    state: *mut pg_sys::JsonbParseState,
}

impl JsonbObject {
    unsafe fn begin() -> JsonbObject {
        let mut object = JsonbObject {
            state: std::ptr::null_mut(),
        };
        object.push(
            pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
            std::ptr::null_mut(),
        );
        object
    }

    unsafe fn push(
        &mut self,
        token: pg_sys::JsonbIteratorToken::Type,
        value: *mut pg_sys::JsonbValue,
    ) -> *mut pg_sys::JsonbValue {
        pg_sys::pushJsonbValue(&mut self.state, token, value)
    }

    unsafe fn key(&mut self, key: &CStr) {
        let bytes = key.to_bytes();
        let mut value = string_value(bytes.as_ptr().cast_mut().cast(), bytes.len());
        self.push(pg_sys::JsonbIteratorToken::WJB_KEY, &mut value);
    }

    /// `key: value` for a jsonb value (pushed token by token, as a nested value).
    unsafe fn jsonb_field(&mut self, key: &CStr, value: pg_sys::Datum) {
        self.key(key);
        let container = jsonb(value);
        let mut binary: pg_sys::JsonbValue = std::mem::zeroed();
        binary.type_ = pg_sys::jbvType::jbvBinary;
        binary.val.binary.data = &mut (*container).root;
        binary.val.binary.len = c_int::try_from(varsize(container)).unwrap_or(c_int::MAX);
        self.push(pg_sys::JsonbIteratorToken::WJB_VALUE, &mut binary);
    }

    /// An array of strings as the value of the last key.
    unsafe fn strings(&mut self, strings: &[pg_sys::JsonbValue]) {
        self.push(
            pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY,
            std::ptr::null_mut(),
        );
        for string in strings {
            let mut element = *string;
            self.push(pg_sys::JsonbIteratorToken::WJB_ELEM, &mut element);
        }
        self.push(
            pg_sys::JsonbIteratorToken::WJB_END_ARRAY,
            std::ptr::null_mut(),
        );
    }

    unsafe fn end(mut self) -> pg_sys::Datum {
        let object = self.push(
            pg_sys::JsonbIteratorToken::WJB_END_OBJECT,
            std::ptr::null_mut(),
        );
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(object))
    }
}

/// The keys of `new` whose value in `old` is missing or different (jsonb equality), sorted by
/// the database's default collation: what `SELECT jsonb_agg(key ORDER BY key) FROM
/// jsonb_each(new) WHERE old -> key IS DISTINCT FROM value` gave. The strings point into `new`.
unsafe fn changed_keys(
    new: *mut pg_sys::Jsonb,
    old: *mut pg_sys::Jsonb,
) -> Vec<pg_sys::JsonbValue> {
    let mut changed = Vec::new();
    let mut iterator = pg_sys::JsonbIteratorInit(&mut (*new).root);
    let mut key: pg_sys::JsonbValue = std::mem::zeroed();
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    loop {
        match pg_sys::JsonbIteratorNext(&mut iterator, &mut key, true) {
            pg_sys::JsonbIteratorToken::WJB_DONE => break,
            pg_sys::JsonbIteratorToken::WJB_KEY => {
                pg_sys::JsonbIteratorNext(&mut iterator, &mut value, true);
                let mut lookup = key;
                let before = pg_sys::findJsonbValueFromContainer(
                    &mut (*old).root,
                    pg_sys::JB_FOBJECT,
                    &mut lookup,
                );
                if before.is_null() || !equal(before, &mut value) {
                    changed.push(key);
                }
            }
            _ => {}
        }
    }
    changed.sort_by(collated_order);
    changed
}

/// Jsonb equality of two values, as `=` on jsonb_object_field's results compares them.
unsafe fn equal(a: *mut pg_sys::JsonbValue, b: *mut pg_sys::JsonbValue) -> bool {
    let (a, b) = (pg_sys::JsonbValueToJsonb(a), pg_sys::JsonbValueToJsonb(b));
    pg_sys::compareJsonbContainers(&mut (*a).root, &mut (*b).root) == 0
}

fn collated_order(a: &pg_sys::JsonbValue, b: &pg_sys::JsonbValue) -> std::cmp::Ordering {
    // SAFETY: both are jbvString values made by the iterator, pointing into a live jsonb
    let order = unsafe {
        pg_sys::varstr_cmp(
            a.val.string.val,
            a.val.string.len,
            b.val.string.val,
            b.val.string.len,
            pg_sys::DEFAULT_COLLATION_OID,
        )
    };
    order.cmp(&0)
}

unsafe fn string_value(bytes: *mut c_char, len: usize) -> pg_sys::JsonbValue {
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    value.type_ = pg_sys::jbvType::jbvString;
    value.val.string.val = bytes;
    value.val.string.len = c_int::try_from(len).unwrap_or(c_int::MAX);
    value
}

unsafe fn null_value() -> pg_sys::JsonbValue {
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    value.type_ = pg_sys::jbvType::jbvNull;
    value
}

/// The jsonb a datum holds, detoasted.
unsafe fn jsonb(datum: pg_sys::Datum) -> *mut pg_sys::Jsonb {
    pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast()
}

/// The size of a detoasted jsonb's data, without its length word.
unsafe fn varsize(jsonb: *mut pg_sys::Jsonb) -> usize {
    pgrx::varlena::varsize_any_exhdr(jsonb.cast())
}
