//! What the client prints: the resources in the AWS CLI's JSON shape (its keys, its enum
//! spellings, empty optional fields left out, four-space indentation), or a plain text table.
//!
//! Every resource also carries `CreatedDate` (RFC 3339), `CreateRevision` and `ModRevision`,
//! which AWS does not have: `ModRevision` is what `--expected-revision` takes. Keys are sorted,
//! as in the AWS CLI's output.

use serde_json::{Map, Value, json};

use super::args::OutputFormat;
use super::error::CliError;
use super::{text, yaml};
use crate::pb;

/// How much of a resource to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The AWS CLI's keys (plus dates and revisions).
    Aws,
    /// Also what a record needs to stand alone, as in the change feed: `AccountId`, a stage's
    /// `ApiId`, a mapping's `DomainName`.
    Full,
}

/// An RFC 3339 timestamp in UTC.
pub fn timestamp(t: &prost_types::Timestamp) -> String {
    t.to_string()
}

/// Defines `fn $name(i32) -> Option<&'static str>`: the AWS CLI's spelling of a value of enum
/// `pb::$enum`; None for `Unspecified` and for a number the enum does not have.
macro_rules! spelling {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($enum:ident) { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        $vis fn $name(value: i32) -> Option<&'static str> {
            match pb::$enum::try_from(value).ok()? {
                $(pb::$enum::$variant => Some($text),)+
                pb::$enum::Unspecified => None,
            }
        }
    };
}

spelling! {
    /// `HTTP`, `WEBSOCKET` or `REST`, as the AWS CLI prints a protocol type.
    pub fn protocol_type(ProtocolType) { Http => "HTTP", Websocket => "WEBSOCKET", Rest => "REST" }
}
spelling! {
    fn endpoint_type(EndpointType) { Regional => "REGIONAL", Edge => "EDGE" }
}
spelling! {
    fn security_policy(SecurityPolicy) { Tls12 => "TLS_1_2", Tls10 => "TLS_1_0" }
}
spelling! {
    fn domain_name_status(DomainNameStatus) { Available => "AVAILABLE" }
}

/// A JSON object under construction that leaves out empty optional values.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    /// Always present, even when empty.
    fn put(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    /// Left out when empty, as the AWS CLI leaves out absent optional members.
    fn text(self, key: &str, value: &str) -> Self {
        if value.is_empty() {
            self
        } else {
            self.put(key, value)
        }
    }

    fn some(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }

    fn time(self, key: &str, t: &Option<prost_types::Timestamp>) -> Self {
        match t {
            Some(t) => self.put(key, timestamp(t)),
            None => self,
        }
    }

    fn tags(self, tags: &std::collections::HashMap<String, String>) -> Self {
        if tags.is_empty() {
            return self;
        }
        let map: Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        self.put("Tags", map)
    }

    /// `Tags` (left out when none) and `CreatedDate` (left out when unset).
    fn created(
        self,
        tags: &std::collections::HashMap<String, String>,
        created: &Option<prost_types::Timestamp>,
    ) -> Self {
        self.tags(tags).time("CreatedDate", created)
    }

    /// `CreateRevision`, `ModRevision` and, with [`Detail::Full`] only, `AccountId`: the
    /// members every record ends with.
    fn owner(self, detail: Detail, account_id: &str, create: u64, modified: u64) -> Self {
        let o = self
            .put("CreateRevision", create)
            .put("ModRevision", modified);
        match detail {
            Detail::Full => o.text("AccountId", account_id),
            Detail::Aws => o,
        }
    }

    /// `key` with [`Detail::Full`] only (always present there, even when empty).
    fn full(self, detail: Detail, key: &str, value: &str) -> Self {
        match detail {
            Detail::Full => self.put(key, value),
            Detail::Aws => self,
        }
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// An API: `ApiId`, `Name`, `ProtocolType`, `Description`, `RouteSelectionExpression`,
/// `ApiKeySelectionExpression`, `Tags`, `CreatedDate`, revisions.
pub fn api(a: &pb::Api, detail: Detail) -> Value {
    Obj::default()
        .put("ApiId", a.api_id.as_str())
        .put("Name", a.name.as_str())
        .some("ProtocolType", protocol_type(a.protocol_type))
        .text("Description", &a.description)
        .text("RouteSelectionExpression", &a.route_selection_expression)
        .text("ApiKeySelectionExpression", &a.api_key_selection_expression)
        .created(&a.tags, &a.created_date)
        .owner(detail, &a.account_id, a.create_revision, a.mod_revision)
        .done()
}

/// A stage: `StageName`, `Description`, `Tags`, `CreatedDate`, `LastUpdatedDate`, revisions.
pub fn stage(s: &pb::Stage, detail: Detail) -> Value {
    Obj::default()
        .put("StageName", s.stage_name.as_str())
        .text("Description", &s.description)
        .created(&s.tags, &s.created_date)
        .time("LastUpdatedDate", &s.last_updated_date)
        .owner(detail, &s.account_id, s.create_revision, s.mod_revision)
        .full(detail, "ApiId", &s.api_id)
        .done()
}

/// One endpoint configuration of a domain name.
pub fn domain_name_configuration(c: &pb::DomainNameConfiguration) -> Value {
    Obj::default()
        .text("ApiGatewayDomainName", &c.api_gateway_domain_name)
        .text("CertificateArn", &c.certificate_arn)
        .some("DomainNameStatus", domain_name_status(c.domain_name_status))
        .some("EndpointType", endpoint_type(c.endpoint_type))
        .some("SecurityPolicy", security_policy(c.security_policy))
        .done()
}

/// A custom domain name: `DomainName`, `DomainNameConfigurations`,
/// `ApiMappingSelectionExpression`, `Tags`, `CreatedDate`, revisions.
pub fn domain_name(d: &pb::DomainName, detail: Detail) -> Value {
    let configs: Vec<Value> = d
        .domain_name_configurations
        .iter()
        .map(domain_name_configuration)
        .collect();
    Obj::default()
        .put("DomainName", d.domain_name.as_str())
        .put("DomainNameConfigurations", configs)
        .text(
            "ApiMappingSelectionExpression",
            &d.api_mapping_selection_expression,
        )
        .created(&d.tags, &d.created_date)
        .owner(detail, &d.account_id, d.create_revision, d.mod_revision)
        .done()
}

/// An API mapping: `ApiId`, `ApiMappingId`, `ApiMappingKey` (`""` for the root mapping, which
/// the table shows as `(none)`), `Stage`, revisions.
pub fn api_mapping(m: &pb::ApiMapping, detail: Detail) -> Value {
    Obj::default()
        .put("ApiId", m.api_id.as_str())
        .put("ApiMappingId", m.api_mapping_id.as_str())
        .put("ApiMappingKey", m.api_mapping_key.as_str())
        .put("Stage", m.stage.as_str())
        .owner(detail, &m.account_id, m.create_revision, m.mod_revision)
        .full(detail, "DomainName", &m.domain_name)
        .done()
}

/// A list command's result: `{"Items": [...]}`, plus `NextToken` when the listing stopped early.
pub fn list(items: Vec<Value>, next_token: Option<String>) -> Value {
    let mut o = Obj::default().put("Items", items);
    if let Some(t) = next_token {
        o = o.put("NextToken", t);
    }
    o.done()
}

/// ResolveRoute's answer: the `ApiMapping` and `Api` that serve the request, the
/// `MatchedDomainName`, the `RemainingPath` and the `Revision` it reflects.
pub fn resolve_route(r: &pb::ResolveRouteResponse) -> Value {
    let mut o = Obj::default();
    if let Some(m) = &r.api_mapping {
        o = o.put("ApiMapping", api_mapping(m, Detail::Full));
    }
    if let Some(a) = &r.api {
        o = o.put("Api", api(a, Detail::Aws));
    }
    o.put("MatchedDomainName", r.matched_domain_name.as_str())
        .put("RemainingPath", r.remaining_path.as_str())
        .put("Revision", r.revision)
        .done()
}

/// A resource of the change feed: `{"Api": {...}}`, `{"ApiMapping": {...}}`, ...
pub fn resource(r: &pb::Resource) -> Value {
    use pb::resource::Resource as R;
    match &r.resource {
        Some(R::Api(a)) => json!({ "Api": api(a, Detail::Full) }),
        Some(R::Stage(s)) => json!({ "Stage": stage(s, Detail::Full) }),
        Some(R::DomainName(d)) => json!({ "DomainName": domain_name(d, Detail::Full) }),
        Some(R::ApiMapping(m)) => json!({ "ApiMapping": api_mapping(m, Detail::Full) }),
        None => json!({}),
    }
}

/// One Watch message as one JSON object: `StoreId`, `Revision`, `Type` (`Snapshot`,
/// `SnapshotComplete`, `ChangeSet` or `Progress`), and `Resources` (a snapshot chunk) or
/// `Events` (`[{"Type": "PUT"|"DELETE", "Api"|"Stage"|"DomainName"|"ApiMapping": {...}}]`).
pub fn watch_response(r: &pb::WatchResponse) -> Value {
    use pb::watch_response::Kind;
    let o = Obj::default()
        .put("StoreId", r.store_id.as_str())
        .put("Revision", r.revision);
    match &r.kind {
        Some(Kind::Snapshot(s)) => o
            .put("Type", "Snapshot")
            .put(
                "Resources",
                s.resources.iter().map(resource).collect::<Vec<_>>(),
            )
            .done(),
        Some(Kind::SnapshotComplete(_)) => o.put("Type", "SnapshotComplete").done(),
        Some(Kind::ChangeSet(c)) => o
            .put("Type", "ChangeSet")
            .put("Events", c.events.iter().map(event).collect::<Vec<_>>())
            .done(),
        Some(Kind::Progress(_)) => o.put("Type", "Progress").done(),
        None => o.done(),
    }
}

fn event(e: &pb::Event) -> Value {
    let kind = match pb::EventType::try_from(e.r#type) {
        Ok(pb::EventType::Put) => "PUT",
        Ok(pb::EventType::Delete) => "DELETE",
        _ => "UNSPECIFIED",
    };
    let mut o = match e.resource.as_ref().map(resource) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    o.insert("Type".into(), kind.into());
    Value::Object(o)
}

/// The columns a table shows for each kind of result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// APIs.
    Api,
    /// Stages.
    Stage,
    /// Custom domain names.
    DomainName,
    /// API mappings.
    ApiMapping,
    /// A ResolveRoute answer.
    ResolveRoute,
}

impl Shape {
    fn columns(self) -> &'static [&'static str] {
        match self {
            Shape::Api => &[
                "ApiId",
                "Name",
                "ProtocolType",
                "Description",
                "CreatedDate",
                "ModRevision",
            ],
            Shape::Stage => &[
                "StageName",
                "Description",
                "CreatedDate",
                "LastUpdatedDate",
                "ModRevision",
            ],
            Shape::DomainName => &[
                "DomainName",
                "EndpointType",
                "SecurityPolicy",
                "ApiGatewayDomainName",
                "DomainNameStatus",
                "ModRevision",
            ],
            Shape::ApiMapping => &[
                "ApiMappingKey",
                "ApiId",
                "Stage",
                "ApiMappingId",
                "ModRevision",
            ],
            Shape::ResolveRoute => &[
                "MatchedDomainName",
                "ApiMappingKey",
                "ApiId",
                "Stage",
                "RemainingPath",
                "ApiMappingId",
                "Revision",
            ],
        }
    }
}

/// `value` as the user asked for it: `--query` applied first (to the AWS-shaped JSON, as the
/// AWS CLI applies it), then printed as JSON, text, YAML or a table titled `operation`.
pub fn render(
    value: &Value,
    operation: &str,
    shape: Shape,
    format: OutputFormat,
    query: Option<&str>,
) -> Result<String, CliError> {
    let queried = match query {
        Some(q) => Some(apply_query(q, value)?),
        None => None,
    };
    let shown = queried.as_ref().unwrap_or(value);
    let is_list = value.get("Items").is_some_and(Value::is_array);
    Ok(match format {
        OutputFormat::Json => pretty_json(shown),
        OutputFormat::Yaml => yaml::render(shown),
        // A list is one page of the stream; anything else prints as plain YAML, as the AWS CLI.
        OutputFormat::YamlStream if is_list => yaml::render_stream_item(shown),
        OutputFormat::YamlStream => yaml::render(shown),
        OutputFormat::Text => match (&queried, value.get("NextToken")) {
            // The AWS CLI prints the token that continues a listing last, as `NEXTTOKEN`.
            (None, Some(token)) if is_list => {
                let mut items = value.clone();
                if let Some(m) = items.as_object_mut() {
                    m.remove("NextToken");
                }
                let mut out = text::render(&items);
                out.push_str(&format!("NEXTTOKEN\t{}\n", text::scalar_text(token)));
                out
            }
            _ => text::render(shown),
        },
        OutputFormat::Table => match &queried {
            None => {
                let rows: Vec<&Value> = match value.get("Items").and_then(Value::as_array) {
                    Some(items) => items.iter().collect(),
                    None => vec![value],
                };
                let next = value.get("NextToken").and_then(Value::as_str);
                table(operation, shape.columns(), &rows, next)
            }
            Some(q) => generic_table(operation, q),
        },
    })
}

/// Checks a `--query` expression before anything is sent.
pub fn check_query(query: &str) -> Result<(), CliError> {
    jmespath::compile(query)
        .map(drop)
        .map_err(|e| CliError::Usage(format!("Bad value for --query {query}: {e}")))
}

/// The result of the JMESPath expression `query` on `value` (`null` when nothing matches).
pub fn apply_query(query: &str, value: &Value) -> Result<Value, CliError> {
    let bad =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("Bad value for --query {query}: {e}"));
    let expression = jmespath::compile(query).map_err(|e| bad(&e))?;
    let result = expression.search(value).map_err(|e| bad(&e))?;
    serde_json::to_value(&*result).map_err(|e| bad(&e))
}

/// JSON indented by four spaces, as the AWS CLI prints it, with a final newline.
pub fn pretty_json(value: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    // Serializing a Value into memory cannot fail.
    let _ = value.serialize(&mut ser);
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    s.push('\n');
    s
}

/// The text of `column` in `row`: the row's own key, else the first nested object (or the first
/// element of a nested list) that has it. A root mapping key reads `(none)`, as in the AWS
/// console; tags read `k=v,k2=v2`.
fn cell(row: &Value, column: &str) -> String {
    match find(row, column) {
        Some(Value::String(s)) if s.is_empty() && column == "ApiMappingKey" => "(none)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Object(m)) => {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        Some(other) => other.to_string(),
    }
}

fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .or_else(|| m.values().find_map(|nested| find_nested(nested, key))),
        _ => None,
    }
}

fn find_nested<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(_) => find(v, key),
        Value::Array(items) => items.first().and_then(|first| find(first, key)),
        _ => None,
    }
}

/// A boxed table in the style of the AWS CLI's `--output table`: the chosen `columns` of
/// each row, then the `NextToken` when the listing stopped early.
fn table(title: &str, columns: &[&str], rows: &[&Value], next_token: Option<&str>) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut out = draw(title, Some(&header), &cells);
    if let Some(t) = next_token {
        out.push_str(&format!("NextToken: {t}\n"));
    }
    out
}

/// A `--query` result as tables, as the AWS CLI draws any value: an object's scalars as one
/// row under their keys, then a table per nested value titled by its key; a list of objects
/// as one row per object; a list of lists as rows; a list of scalars as one value per row.
pub fn generic_table(title: &str, value: &Value) -> String {
    let mut out = String::new();
    section(title, value, &mut out);
    out
}

fn section(title: &str, value: &Value, out: &mut String) {
    let scalar = |v: &Value| !matches!(v, Value::Object(_) | Value::Array(_));
    match value {
        Value::Object(m) => {
            let (keys, cells): (Vec<String>, Vec<String>) = m
                .iter()
                .filter(|(_, v)| scalar(v))
                .map(|(k, v)| (k.clone(), text::scalar_text(v)))
                .unzip();
            if !keys.is_empty() || m.is_empty() {
                out.push_str(&draw(title, Some(&keys), &[cells]));
            }
            for (k, v) in m.iter().filter(|(_, v)| !scalar(v)) {
                section(k, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            let mut keys: Vec<String> = items
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|o| o.iter().filter(|(_, v)| scalar(v)).map(|(k, _)| k.clone()))
                .collect();
            keys.sort();
            keys.dedup();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| match item.as_object() {
                    Some(o) => keys
                        .iter()
                        .map(|k| o.get(k).map(text::scalar_text).unwrap_or_default())
                        .collect(),
                    None => vec![text::scalar_text(item)],
                })
                .collect();
            out.push_str(&draw(title, Some(&keys), &rows));
            for item in items {
                if let Some(o) = item.as_object() {
                    for (k, v) in o.iter().filter(|(_, v)| !scalar(v)) {
                        section(k, v, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| match item {
                    Value::Array(inner) => inner.iter().map(text::scalar_text).collect(),
                    other => vec![text::scalar_text(other)],
                })
                .collect();
            out.push_str(&draw(title, None, &rows));
        }
        other => out.push_str(&draw(title, None, &[vec![text::scalar_text(other)]])),
    }
}

/// Draws one box: the centred title, the header row (if any), the rows. The last column is
/// widened when the title is wider than the columns.
fn draw(title: &str, header: Option<&[String]>, rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain(header.map(<[String]>::len))
        .max()
        .unwrap_or(0)
        .max(1);
    let text_at = |row: &[String], i: usize| row.get(i).map(|c| c.chars().count()).unwrap_or(0);
    let mut widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| text_at(r, i))
                .chain(header.map(|h| text_at(h, i)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let title_len = title.chars().count();
    let inner = |widths: &[usize]| widths.iter().map(|w| w + 3).sum::<usize>() - 1;
    if inner(&widths) < title_len + 2 {
        let grow = title_len + 2 - inner(&widths);
        if let Some(last) = widths.last_mut() {
            *last += grow;
        }
    }
    let inner = inner(&widths);
    let rule = |fill: char, edge: char| -> String {
        let mut s = String::from(edge);
        for w in &widths {
            s.extend(std::iter::repeat_n(fill, w + 2));
            s.push(edge);
        }
        s.push('\n');
        s
    };
    let line = |values: &[String]| -> String {
        let mut s = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let v = values.get(i).map(String::as_str).unwrap_or("");
            let pad = w - v.chars().count();
            s.push(' ');
            s.push_str(v);
            s.extend(std::iter::repeat_n(' ', pad + 1));
            s.push('|');
        }
        s.push('\n');
        s
    };
    let left = inner.saturating_sub(title_len) / 2;
    let right = inner.saturating_sub(title_len + left);
    let mut out = rule('-', '-');
    out.push('|');
    out.extend(std::iter::repeat_n(' ', left));
    out.push_str(title);
    out.extend(std::iter::repeat_n(' ', right));
    out.push_str("|\n");
    out.push_str(&rule('-', '+'));
    if let Some(h) = header {
        out.push_str(&line(h));
        out.push_str(&rule('-', '+'));
    }
    for r in rows {
        out.push_str(&line(r));
    }
    if !rows.is_empty() {
        out.push_str(&rule('-', '+'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts() -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        })
    }

    #[test]
    fn api_keys_and_omitted_fields() {
        let a = pb::Api {
            api_id: "a1b2c3d4e5".into(),
            name: "pets".into(),
            protocol_type: pb::ProtocolType::Http as i32,
            created_date: ts(),
            account_id: "000000000000".into(),
            create_revision: 3,
            mod_revision: 4,
            ..Default::default()
        };
        assert_eq!(
            api(&a, Detail::Aws),
            json!({
                "ApiId": "a1b2c3d4e5",
                "Name": "pets",
                "ProtocolType": "HTTP",
                "CreatedDate": "2023-11-14T22:13:20Z",
                "CreateRevision": 3,
                "ModRevision": 4,
            })
        );
        assert_eq!(api(&a, Detail::Full)["AccountId"], "000000000000");
    }

    #[test]
    fn domain_name_configuration_keys() {
        let d = pb::DomainName {
            domain_name: "api.example.com".into(),
            domain_name_configurations: vec![pb::DomainNameConfiguration {
                endpoint_type: pb::EndpointType::Regional as i32,
                security_policy: pb::SecurityPolicy::Tls12 as i32,
                certificate_arn: String::new(),
                api_gateway_domain_name: "d-abc.execute-api.mapreg.internal".into(),
                domain_name_status: pb::DomainNameStatus::Available as i32,
            }],
            api_mapping_selection_expression: "$request.basepath".into(),
            tags: [("team".to_string(), "edge".to_string())].into(),
            ..Default::default()
        };
        let v = domain_name(&d, Detail::Aws);
        assert_eq!(
            v["DomainNameConfigurations"],
            json!([{
                "ApiGatewayDomainName": "d-abc.execute-api.mapreg.internal",
                "DomainNameStatus": "AVAILABLE",
                "EndpointType": "REGIONAL",
                "SecurityPolicy": "TLS_1_2",
            }])
        );
        assert_eq!(v["Tags"], json!({"team": "edge"}));
        assert_eq!(v["ApiMappingSelectionExpression"], "$request.basepath");
        assert!(v.get("CreatedDate").is_none());
    }

    #[test]
    fn json_is_indented_by_four_and_sorted() {
        let v = list(vec![json!({"b": 1, "a": 2})], None);
        assert_eq!(
            pretty_json(&v),
            "{\n    \"Items\": [\n        {\n            \"a\": 2,\n            \"b\": 1\n        }\n    ]\n}\n"
        );
    }

    #[test]
    fn table_shows_root_key_as_none() {
        let m = pb::ApiMapping {
            api_mapping_id: "abc123".into(),
            api_id: "a1b2c3d4e5".into(),
            stage: "test".into(),
            ..Default::default()
        };
        let v = list(
            vec![
                api_mapping(&m, Detail::Aws),
                api_mapping(
                    &pb::ApiMapping {
                        api_mapping_key: "v1".into(),
                        ..m.clone()
                    },
                    Detail::Aws,
                ),
            ],
            Some("tok".into()),
        );
        let t = render(
            &v,
            "GetApiMappings",
            Shape::ApiMapping,
            OutputFormat::Table,
            None,
        )
        .unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("GetApiMappings"), "{t}");
        assert_eq!(
            lines[3],
            "| ApiMappingKey | ApiId      | Stage | ApiMappingId | ModRevision |"
        );
        assert_eq!(
            lines[5],
            "| (none)        | a1b2c3d4e5 | test  | abc123       | 0           |"
        );
        assert!(lines[6].starts_with("| v1 "), "{t}");
        assert_eq!(lines.last(), Some(&"NextToken: tok"));
        let widths: Vec<usize> = lines[..8].iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{t}");
    }

    #[test]
    fn table_reads_nested_configuration() {
        let d = pb::DomainName {
            domain_name: "api.example.com".into(),
            domain_name_configurations: vec![pb::DomainNameConfiguration {
                endpoint_type: pb::EndpointType::Edge as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = render(
            &domain_name(&d, Detail::Aws),
            "GetDomainName",
            Shape::DomainName,
            OutputFormat::Table,
            None,
        )
        .unwrap();
        assert!(t.contains("| api.example.com | EDGE "), "{t}");
    }

    #[test]
    fn watch_lines() {
        let r = pb::WatchResponse {
            store_id: "s1".into(),
            revision: 7,
            kind: Some(pb::watch_response::Kind::ChangeSet(pb::ChangeSet {
                events: vec![pb::Event {
                    r#type: pb::EventType::Delete as i32,
                    resource: Some(pb::Resource {
                        resource: Some(pb::resource::Resource::ApiMapping(pb::ApiMapping {
                            api_mapping_id: "abc123".into(),
                            domain_name: "api.example.com".into(),
                            ..Default::default()
                        })),
                    }),
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        let v = watch_response(&r);
        assert_eq!(v["Type"], "ChangeSet");
        assert_eq!(v["Revision"], 7);
        assert_eq!(v["Events"][0]["Type"], "DELETE");
        assert_eq!(
            v["Events"][0]["ApiMapping"]["DomainName"],
            "api.example.com"
        );
        let p = pb::WatchResponse {
            store_id: "s1".into(),
            revision: 8,
            kind: Some(pb::watch_response::Kind::Progress(pb::Progress {})),
            ..Default::default()
        };
        assert_eq!(
            watch_response(&p),
            json!({"StoreId": "s1", "Revision": 8, "Type": "Progress"})
        );
    }
}
