//! `--output yaml` and `yaml-stream`, laid out as the AWS CLI v2 prints YAML (ruamel.yaml's safe
//! dumper in block style): two-space indentation for nested mappings, list items (`- `) at the
//! indentation of their key, keys in order, strings plain unless YAML would read them as
//! something else (a date, a number, `true`, `null`, a leading indicator character), in which
//! case they are single-quoted; empty lists and mappings as `[]` and `{}`; a plain scalar alone
//! is followed by the document end marker `...`, as ruamel prints it.

use serde_json::{Map, Value};

/// `value` as one YAML document.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => mapping(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, &mut out),
        scalar => {
            let text = scalar_text(scalar);
            let plain = !text.starts_with('\'') && !text.starts_with('"');
            out.push_str(&text);
            out.push('\n');
            if plain && !matches!(scalar, Value::Object(_) | Value::Array(_)) {
                out.push_str("...\n");
            }
        }
    }
    out
}

/// `value` as one element of a YAML stream of pages (`yaml-stream`): `- ` then the value.
pub fn render_stream_item(value: &Value) -> String {
    render(&Value::Array(vec![value.clone()]))
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn mapping(m: &Map<String, Value>, level: usize, out: &mut String) {
    let mut first = true;
    for (k, v) in m {
        // The first key of a mapping that is a list item continues the `- ` line.
        if !first || level == 0 {
            indent(level, out);
        }
        first = false;
        out.push_str(&string(k));
        out.push(':');
        value_after_key(v, level, out);
    }
}

fn value_after_key(v: &Value, level: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            indent(level + 2, out);
            mapping(m, level + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            sequence(a, level, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn sequence(items: &[Value], level: usize, out: &mut String) {
    for item in items {
        indent(level, out);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(m, level + 2, out),
            Value::Array(a) if !a.is_empty() => {
                // A nested list starts on the same line: `- - a`.
                let mut nested = String::new();
                sequence(a, level + 2, &mut nested);
                out.push_str(nested.trim_start());
            }
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a YAML scalar: plain when YAML reads it back as the same string, else quoted.
pub fn string(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        // Double quotes, the only style that can escape a newline or a tab.
        return serde_json::Value::from(s).to_string();
    }
    if needs_quotes(s) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    s.to_string()
}

fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return true;
    };
    if "[]{}#&*!|>'\"%@`,".contains(first) {
        return true;
    }
    if matches!(s, "-" | "?" | ":")
        || s.starts_with("- ")
        || s.starts_with("? ")
        || s.starts_with(": ")
    {
        return true;
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with(':') {
        return true;
    }
    if s.contains(": ") || s.contains(" #") {
        return true;
    }
    resolves_to_non_string(s)
}

/// Whether YAML 1.2 (with the timestamp type ruamel.yaml keeps) would read `s` as a null, a
/// bool, a number or a date.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".inf",
        ".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN", "yes", "Yes", "YES", "no", "No",
        "NO", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    if is_number(s) {
        return true;
    }
    // A date or timestamp: YYYY-M-D...
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

/// YAML 1.2's int (`[-+]?[0-9_]+`, `0x..`, `0o..`) and float
/// (`[-+]?(\.[0-9]+|[0-9][0-9_]*)(\.[0-9_]*)?([eE][-+]?[0-9]+)?`).
fn is_number(s: &str) -> bool {
    let hex = |p: &str| {
        s.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_hexdigit() || c == '_'))
    };
    let oct = s
        .strip_prefix("0o")
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| ('0'..='7').contains(&c) || c == '_'));
    if hex("0x") || oct {
        return true;
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit() || c == '_');
    let int_ok = if int.is_empty() {
        frac.is_some_and(|f| f.chars().next().is_some_and(|c| c.is_ascii_digit()))
    } else {
        int.starts_with(|c: char| c.is_ascii_digit()) && digits(int)
    };
    let frac_ok = frac.is_none_or(digits);
    let exp_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    int_ok && frac_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping_with_nested_values() {
        let v = json!({
            "ApiId": "a1b2c3d4e5",
            "CreatedDate": "2023-11-14T22:13:20Z",
            "ModRevision": 4,
            "Name": "pets",
            "RouteSelectionExpression": "${request.method} ${request.path}",
            "Tags": {"team": "edge"},
        });
        assert_eq!(
            render(&v),
            "ApiId: a1b2c3d4e5\nCreatedDate: '2023-11-14T22:13:20Z'\nModRevision: 4\nName: pets\n\
             RouteSelectionExpression: ${request.method} ${request.path}\nTags:\n  team: edge\n"
        );
    }

    #[test]
    fn lists_at_the_key_indentation() {
        let v = json!({"Items": [
            {"ApiMappingKey": "", "Stage": "test", "Nested": [{"A": "1"}]},
            {"ApiMappingKey": "v1", "Stage": "test", "Nested": []},
        ]});
        assert_eq!(
            render(&v),
            "Items:\n- ApiMappingKey: ''\n  Nested:\n  - A: '1'\n  Stage: test\n\
             - ApiMappingKey: v1\n  Nested: []\n  Stage: test\n"
        );
    }

    #[test]
    fn scalars_alone_end_the_document() {
        assert_eq!(render(&json!("a1b2c3d4e5")), "a1b2c3d4e5\n...\n");
        assert_eq!(render(&json!("true")), "'true'\n");
        assert_eq!(render(&json!(null)), "null\n...\n");
        assert_eq!(render(&json!(["a", "b"])), "- a\n- b\n");
        assert_eq!(render(&json!([["a", "b"], ["c"]])), "- - a\n  - b\n- - c\n");
    }

    #[test]
    fn quoting() {
        for (s, want) in [
            ("$request.body.action", "$request.body.action"),
            ("*.example.com", "'*.example.com'"),
            ("it's", "it's"),
            ("'x'", "'''x'''"),
            ("123", "'123'"),
            ("1e5", "'1e5'"),
            ("a: b", "'a: b'"),
            ("two\nlines", "\"two\\nlines\""),
            ("null", "'null'"),
            ("v1", "v1"),
            ("5abcdef123", "5abcdef123"),
            ("0x1f", "'0x1f'"),
            ("1.5", "'1.5'"),
            (".5", "'.5'"),
            ("1.2.3", "1.2.3"),
            ("", "''"),
        ] {
            assert_eq!(string(s), want, "{s:?}");
        }
    }

    #[test]
    fn stream_item() {
        assert_eq!(
            render_stream_item(&json!({"Items": [{"A": "x"}]})),
            "- Items:\n  - A: x\n"
        );
    }
}
