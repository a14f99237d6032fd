//! Reading a request's JSON body and query string, member by member, with the model's
//! camelCase names.
//!
//! Each operation takes the members it supports; whatever is left when it calls `finish` is a
//! member mapreg does not support (`corsConfiguration`, `stageVariables`, ...) or does not know,
//! and is refused with a `BadRequestException` naming it, never silently dropped. A few members
//! are accepted only at the value mapreg behaves as (`routingMode: API_MAPPING_ONLY`), so tools
//! that always send them keep working. JSON `null` counts as absent.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::AwsError;

/// The members of a JSON object not taken yet.
pub(crate) struct Body {
    /// The operation, for messages (`CreateApi`).
    op: &'static str,
    /// Where the object is, for messages (`""` for the body, `domainNameConfigurations[0].`).
    at: String,
    map: Map<String, Value>,
    taken: Vec<&'static str>,
}

impl Body {
    /// The request body of `op`: a JSON object, or empty (no members).
    pub(crate) fn parse(op: &'static str, bytes: &[u8]) -> Result<Body, AwsError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body::object(op, String::new(), Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body::object(op, String::new(), map)),
            Ok(_) => Err(AwsError::bad_request(format!(
                "{op}: the request body must be a JSON object"
            ))),
            Err(e) => Err(AwsError::bad_request(format!(
                "{op}: the request body is not valid JSON: {e}"
            ))),
        }
    }

    fn object(op: &'static str, at: String, map: Map<String, Value>) -> Body {
        Body {
            op,
            at,
            map,
            taken: Vec::new(),
        }
    }

    fn take(&mut self, name: &'static str) -> Option<Value> {
        self.taken.push(name);
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn wrong_type(&self, name: &str, what: &str) -> AwsError {
        AwsError::bad_request(format!("{}: {}{name} must be {what}", self.op, self.at))
    }

    /// A string member.
    pub(crate) fn string(&mut self, name: &'static str) -> Result<Option<String>, AwsError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong_type(name, "a string")),
        }
    }

    /// A map of strings (`tags`).
    pub(crate) fn string_map(
        &mut self,
        name: &'static str,
    ) -> Result<Option<HashMap<String, String>>, AwsError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = HashMap::with_capacity(m.len());
                for (k, v) in m {
                    match v {
                        Value::String(s) => {
                            out.insert(k, s);
                        }
                        _ => return Err(self.wrong_type(name, "a map of strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong_type(name, "a map of strings")),
        }
    }

    /// A list of objects, each read as a nested [`Body`].
    pub(crate) fn objects(&mut self, name: &'static str) -> Result<Option<Vec<Body>>, AwsError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Object(m) => {
                            out.push(Body::object(self.op, format!("{}{name}[{i}].", self.at), m))
                        }
                        _ => return Err(self.wrong_type(name, "a list of objects")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong_type(name, "a list of objects")),
        }
    }

    /// A member mapreg accepts only at `value`, the behaviour it has (e.g. `routingMode`
    /// `API_MAPPING_ONLY`); any other value is refused naming the member.
    pub(crate) fn only(&mut self, name: &'static str, value: Value) -> Result<(), AwsError> {
        match self.take(name) {
            None => Ok(()),
            Some(v) if v == value => Ok(()),
            Some(v) => Err(AwsError::bad_request(format!(
                "{}: {}{name} {v} is not supported by mapreg; it supports only {value} (or leaving it out)",
                self.op, self.at
            ))),
        }
    }

    /// Ok when every member was taken; otherwise a `BadRequestException` naming the first
    /// member left (in name order) and listing the supported ones.
    pub(crate) fn finish(self) -> Result<(), AwsError> {
        let Some(name) = self.map.keys().min() else {
            return Ok(());
        };
        Err(AwsError::bad_request(format!(
            "{}: {}{name} is not supported by mapreg (supported here: {})",
            self.op,
            self.at,
            self.taken.join(", ")
        )))
    }
}

/// A query string's parameters, decoded, not taken yet.
pub(crate) struct Query {
    op: &'static str,
    pairs: Vec<(String, String)>,
    taken: Vec<&'static str>,
}

impl Query {
    /// The parameters of `raw` (without `?`). `+` is a literal plus, as SigV4 reads it.
    pub(crate) fn parse(op: &'static str, raw: Option<&str>) -> Query {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let pairs = super::sigv4::query_pairs(raw.unwrap_or_default())
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        Query {
            op,
            pairs,
            taken: Vec::new(),
        }
    }

    /// Every value of parameter `name`, in order.
    pub(crate) fn all(&mut self, name: &'static str) -> Vec<String> {
        self.taken.push(name);
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pairs)
            .into_iter()
            .partition(|(k, _)| k == name);
        self.pairs = rest;
        mine.into_iter().map(|(_, v)| v).collect()
    }

    /// The value of parameter `name` (the last one if repeated).
    pub(crate) fn one(&mut self, name: &'static str) -> Option<String> {
        self.all(name).pop()
    }

    /// `maxResults` as the gRPC `max_results` (0 when absent).
    pub(crate) fn max_results(&mut self) -> Result<i32, AwsError> {
        match self.one("maxResults") {
            None => Ok(0),
            Some(v) => v.parse::<i32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                AwsError::bad_request(format!(
                    "{}: maxResults must be a positive integer, got {:?}",
                    self.op,
                    v.chars().take(40).collect::<String>()
                ))
            }),
        }
    }

    /// Ok when every parameter was taken; otherwise a `BadRequestException` naming one.
    pub(crate) fn finish(self) -> Result<(), AwsError> {
        let Some((name, _)) = self.pairs.first() else {
            return Ok(());
        };
        let supported = if self.taken.is_empty() {
            "none".to_string()
        } else {
            self.taken.join(", ")
        };
        Err(AwsError::bad_request(format!(
            "{}: query parameter {name:?} is not supported by mapreg (supported here: {supported})",
            self.op
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_taken_typed_and_leftovers_refused() {
        let mut b = Body::parse(
            "CreateApi",
            br#"{"name": "a", "tags": {"k": "v"}, "description": null, "corsConfiguration": {}}"#,
        )
        .expect("json");
        assert_eq!(b.string("name").expect("ok").as_deref(), Some("a"));
        assert_eq!(b.string("description").expect("null is absent"), None);
        assert_eq!(b.string_map("tags").expect("ok").map(|t| t.len()), Some(1));
        let e = b.finish().expect_err("cors is left");
        assert_eq!(e.code, "BadRequestException");
        assert!(
            e.message
                .contains("corsConfiguration is not supported by mapreg"),
            "{}",
            e.message
        );

        let mut b = Body::parse("CreateApi", br#"{"name": 3}"#).expect("json");
        assert!(
            b.string("name")
                .expect_err("type")
                .message
                .contains("name must be a string")
        );
        assert!(Body::parse("CreateApi", b"[1]").is_err());
        assert!(Body::parse("CreateApi", b"{").is_err());
        assert!(Body::parse("GetApi", b"").expect("empty").finish().is_ok());

        let mut b = Body::parse(
            "CreateDomainName",
            br#"{"routingMode": "ROUTING_RULE_ONLY", "domainNameConfigurations": [{"certificateName": "x"}]}"#,
        )
        .expect("json");
        let e = b
            .only("routingMode", json!("API_MAPPING_ONLY"))
            .expect_err("other mode");
        assert!(e.message.contains("routingMode"), "{}", e.message);
        let mut cfgs = b
            .objects("domainNameConfigurations")
            .expect("ok")
            .expect("some");
        let e = cfgs.remove(0).finish().expect_err("certificateName");
        assert!(
            e.message
                .contains("domainNameConfigurations[0].certificateName"),
            "{}",
            e.message
        );
    }

    #[test]
    fn query_parameters_decode_and_leftovers_are_refused() {
        let mut q = Query::parse("UntagResource", Some("tagKeys=a%20b&tagKeys=c+d&x=1"));
        assert_eq!(q.all("tagKeys"), ["a b", "c+d"]);
        assert!(q.finish().expect_err("x").message.contains("\"x\""));
        let mut q = Query::parse("GetApis", Some("maxResults=0"));
        assert!(q.max_results().is_err());
        let mut q = Query::parse("GetApis", Some("maxResults=25&nextToken=abc"));
        assert_eq!(q.max_results().expect("25"), 25);
        assert_eq!(q.one("nextToken").as_deref(), Some("abc"));
        assert!(q.finish().is_ok());
    }
}
