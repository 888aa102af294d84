//! `--json` output in one vocabulary (docs/json.md).
//!
//! Every document a verb prints with `--json` goes through [`document`]:
//! it gains `"schema"` ([`JSON_SCHEMA`]) and, for one release, the
//! vocabulary's name beside each deprecated one (`agent` beside
//! `agent_id`, `task` beside `task_id`, `renewed_at` beside
//! `last_renewed`, `by` beside a feed entry's `origin`), so readers of the
//! old names keep working while they move. The library's types keep their
//! field names (they are also stored records); the names a reader sees are
//! decided here, in one table.
//!
//! Lists: a bounded list (slots, tasks) is one JSON array whose every
//! object carries `schema`, read with one parse or `jq '.[]'`; an
//! unbounded or followed stream (feed entries, hub.log) is NDJSON, one
//! object per line.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::sys::schema::JSON_SCHEMA;

/// Deprecated names and the vocabulary's name for the same field.
pub const DEPRECATED: &[(&str, &str)] = &[
    ("agent_id", "agent"),
    ("task_id", "task"),
    ("last_renewed", "renewed_at"),
    ("origin", "by"),
];

/// `value` in the vocabulary: `schema` on the document (on each object of
/// a top-level array), and the new name beside every deprecated one, at
/// any depth.
pub fn document(value: impl Serialize) -> Value {
    let mut value = serde_json::to_value(value).unwrap_or(Value::Null);
    add_names(&mut value);
    match &mut value {
        Value::Object(object) => stamp(object),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(object) = item {
                    stamp(object);
                }
            }
        }
        _ => {}
    }
    value
}

/// Prints [`document`] of `value` on one line of stdout.
pub fn print(value: impl Serialize) {
    println!("{}", document(value));
}

fn stamp(object: &mut Map<String, Value>) {
    object
        .entry("schema")
        .or_insert_with(|| Value::from(JSON_SCHEMA));
}

fn add_names(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (old, new) in DEPRECATED {
                if let Some(found) = object.get(*old).cloned()
                    && !object.contains_key(*new)
                {
                    object.insert((*new).to_string(), found);
                }
            }
            object.values_mut().for_each(add_names);
        }
        Value::Array(items) => items.iter_mut().for_each(add_names),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn adds_schema_and_new_names_beside_old_ones() {
        let doc = document(json!({"slot": "a", "agent_id": "x", "nested": [{"task_id": "t-1"}]}));
        assert_eq!(doc["schema"], JSON_SCHEMA);
        assert_eq!(doc["agent"], "x");
        assert_eq!(doc["agent_id"], "x");
        assert_eq!(doc["nested"][0]["task"], "t-1");
        let list = document(json!([{"id": "t-1"}, {"id": "t-2", "schema": 1}]));
        assert_eq!(list[0]["schema"], JSON_SCHEMA);
        assert_eq!(list[1]["schema"], 1);
    }
}
