//! `--output text`, laid out as the AWS CLI v2 lays it out (its `awscli/text.py`):
//!
//! - a scalar is printed bare on its own line (`--query ApiId --output text` prints the id);
//! - an object prints its scalar values on one tab-separated line, in key order, then each
//!   nested list or object under its key's upper-case name;
//! - a list of objects prints one line per object, prefixed by the list's upper-case key name
//!   (`ITEMS\t...`), with the columns every object's scalar keys (sorted, blank when absent);
//! - a list of scalars under a key prints one `KEY\tvalue` line per element; at the top level,
//!   one tab-separated line.
//!
//! Values print as Python's `str()` would print them: `True`, `False`, `None`.

use serde_json::Value;

/// `value` in the AWS CLI's text layout.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    item(value, None, None, &mut out);
    out
}

fn item(value: &Value, identifier: Option<&str>, scalar_keys: Option<&[String]>, out: &mut String) {
    match value {
        Value::Object(_) => object(value, identifier, scalar_keys, out),
        Value::Array(items) => list(items, identifier, out),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

/// A scalar as Python's `str()` prints it; a nested value (only when a column holds an object
/// in one item and a scalar in another) as compact JSON.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn list(items: &[Value], identifier: Option<&str>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(Value::is_object) {
        let mut keys: Vec<String> = items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| {
                o.iter()
                    .filter(|(_, v)| is_scalar(v))
                    .map(|(k, _)| k.clone())
            })
            .collect();
        keys.sort();
        keys.dedup();
        for element in items {
            item(element, identifier, Some(&keys), out);
        }
    } else if items.iter().any(Value::is_array) {
        let (scalars, nested): (Vec<&Value>, Vec<&Value>) =
            items.iter().partition(|v| is_scalar(v));
        if !scalars.is_empty() {
            scalar_list(&scalars, identifier, out);
        }
        for n in nested {
            item(n, identifier, None, out);
        }
    } else {
        let all: Vec<&Value> = items.iter().collect();
        scalar_list(&all, identifier, out);
    }
}

fn scalar_list(items: &[&Value], identifier: Option<&str>, out: &mut String) {
    match identifier {
        Some(id) => {
            for v in items {
                out.push_str(&id.to_uppercase());
                out.push('\t');
                out.push_str(&scalar_text(v));
                out.push('\n');
            }
        }
        None => {
            let cells: Vec<String> = items.iter().map(|v| scalar_text(v)).collect();
            out.push_str(&cells.join("\t"));
            out.push('\n');
        }
    }
}

fn object(
    value: &Value,
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
    out: &mut String,
) {
    let Some(map) = value.as_object() else {
        return;
    };
    let mut scalars: Vec<String> = Vec::new();
    let mut nested: Vec<(&String, &Value)> = Vec::new();
    match scalar_keys {
        None => {
            // serde_json's map iterates in key order, as Python's sorted(item.items()).
            for (k, v) in map {
                if is_scalar(v) {
                    scalars.push(scalar_text(v));
                } else {
                    nested.push((k, v));
                }
            }
        }
        Some(keys) => {
            for k in keys {
                scalars.push(map.get(k).map(scalar_text).unwrap_or_default());
            }
            for (k, v) in map {
                if !keys.contains(k) {
                    nested.push((k, v));
                }
            }
        }
    }
    if !scalars.is_empty() {
        if let Some(id) = identifier {
            scalars.insert(0, id.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (k, v) in nested {
        item(v, Some(k), None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_print_bare() {
        assert_eq!(render(&json!("a1b2c3d4e5")), "a1b2c3d4e5\n");
        assert_eq!(render(&json!(5)), "5\n");
        assert_eq!(render(&json!(null)), "None\n");
        assert_eq!(render(&json!(true)), "True\n");
    }

    #[test]
    fn object_scalars_on_one_line_nested_under_upper_case_keys() {
        let v = json!({
            "Name": "pets",
            "ApiId": "a1",
            "Tags": {"team": "edge", "env": "dev"},
            "ModRevision": 4,
        });
        assert_eq!(render(&v), "a1\t4\tpets\nTAGS\tdev\tedge\n");
    }

    #[test]
    fn list_of_objects_one_line_per_item() {
        let v = json!({
            "Items": [
                {"ApiId": "a1", "Name": "pets", "Description": "d"},
                {"ApiId": "a2", "Name": "shop"},
            ],
            "NextToken": "tok",
        });
        assert_eq!(render(&v), "tok\nITEMS\ta1\td\tpets\nITEMS\ta2\t\tshop\n");
    }

    #[test]
    fn nested_lists_follow_their_item() {
        let v = json!({"Items": [
            {"DomainName": "a.example.com",
             "DomainNameConfigurations": [{"EndpointType": "REGIONAL"}]},
        ]});
        assert_eq!(
            render(&v),
            "ITEMS\ta.example.com\nDOMAINNAMECONFIGURATIONS\tREGIONAL\n"
        );
    }

    #[test]
    fn lists_of_scalars() {
        assert_eq!(render(&json!(["a", "b"])), "a\tb\n");
        assert_eq!(render(&json!({"Ids": ["a", "b"]})), "IDS\ta\nIDS\tb\n");
        assert_eq!(render(&json!([["a", 1], ["b", 2]])), "a\t1\nb\t2\n");
        assert_eq!(render(&json!([])), "");
    }
}
