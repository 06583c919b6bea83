//! The canonical JSON text of a value, for hashing: object keys sorted by their bytes, no
//! whitespace. It sorts the keys itself rather than relying on serde_json's map order, which
//! another crate turning on serde_json's `preserve_order` feature would silently change
//! (and with it every version hash and eval cache key).

use serde_json::Value;

/// `value` as canonical JSON text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(':');
                write_value(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A string, number, boolean or null as serde_json writes it (escaping included).
fn write_scalar(value: &Value, out: &mut String) {
    out.push_str(&value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_whatever_the_insertion_order() {
        let mut a = serde_json::Map::new();
        a.insert("zeta".into(), json!(1));
        a.insert("alpha".into(), json!({"b": [true, null, "x\"y"], "a": 0.5}));
        assert_eq!(
            canonical_json(&Value::Object(a)),
            r#"{"alpha":{"a":0.5,"b":[true,null,"x\"y"]},"zeta":1}"#
        );
    }

    #[test]
    fn it_is_the_text_existing_hashes_were_made_from() {
        // Versions and cache keys stored before this function existed were hashed from
        // serde_json's own compact text of a key-ordered map: the two must agree.
        let value = json!({"b": {"y": [1, 2.5, "é"], "x": null}, "a": "t\n", "B": false});
        assert_eq!(canonical_json(&value), value.to_string());
    }
}
