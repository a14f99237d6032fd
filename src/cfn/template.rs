//! Reading a template: YAML (with the short intrinsic tags `!Ref`, `!GetAtt`, `!Sub`,
//! `!Join`) or JSON, into a [`Template`] whose values keep the intrinsic functions as
//! [`Value`] nodes. Every refusal names its place in the template
//! (`Resources.MyApi.Properties.Name`).

use std::collections::BTreeMap;

use super::TemplateError;

/// A template value: plain data, or an intrinsic function still to be resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` / `~`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// A list.
    List(Vec<Value>),
    /// A mapping with string keys.
    Map(BTreeMap<String, Value>),
    /// `Ref`: a parameter, a pseudo parameter or a resource.
    Ref(String),
    /// `Fn::GetAtt`: an attribute of a resource.
    GetAtt(String, String),
    /// `Fn::Sub`: a string with `${Name}` / `${Resource.Attribute}` placeholders, and its own
    /// variables.
    Sub(String, BTreeMap<String, Value>),
    /// `Fn::Join`: the delimiter and the values.
    Join(String, Vec<Value>),
}

/// A parameter of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// `String` or `Number`.
    pub kind: String,
    /// The value used when no override is given.
    pub default: Option<String>,
    /// When present, the value must be one of these.
    pub allowed_values: Vec<String>,
}

/// A resource of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `Type`, e.g. `AWS::ApiGatewayV2::Api` (checked later against the supported types).
    pub kind: String,
    /// `Properties`.
    pub properties: BTreeMap<String, Value>,
    /// `DependsOn`: logical ids this resource is created after.
    pub depends_on: Vec<String>,
}

/// An output of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// `Value`.
    pub value: Value,
    /// `Description`.
    pub description: Option<String>,
}

/// A parsed template (its structure checked; references and types are checked by
/// [`super::plan::Checked`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    /// `Description`.
    pub description: Option<String>,
    /// `Parameters`, by name.
    pub parameters: BTreeMap<String, Parameter>,
    /// `Resources`, by logical id.
    pub resources: BTreeMap<String, Resource>,
    /// `Outputs`, by name.
    pub outputs: BTreeMap<String, Output>,
}

fn err(location: impl Into<String>, message: impl Into<String>) -> TemplateError {
    TemplateError {
        location: location.into(),
        message: message.into(),
    }
}

/// Parses a template: JSON when the text starts with `{`, YAML otherwise.
pub fn parse(text: &str) -> Result<Template, TemplateError> {
    let value = if text.trim_start().starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            err(
                format!("line {}, column {}", e.line(), e.column()),
                format!("not valid JSON: {e}"),
            )
        })?;
        from_json(&json, "")?
    } else {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {}, column {}", l.line(), l.column()))
                .unwrap_or_else(|| "template".into());
            err(at, format!("not valid YAML: {e}"))
        })?;
        from_yaml(&yaml, "")?
    };
    template(value)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn from_json(v: &serde_json::Value, path: &str) -> Result<Value, TemplateError> {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.to_string()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::List(
            a.iter()
                .enumerate()
                .map(|(i, x)| from_json(x, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => {
            let mut m = BTreeMap::new();
            for (k, x) in o {
                m.insert(k.clone(), from_json(x, &join(path, k))?);
            }
            intrinsic_long(m, path)?
        }
    })
}

fn from_yaml(v: &serde_yaml_ng::Value, path: &str) -> Result<Value, TemplateError> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => Value::Number(n.to_string()),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(a) => Value::List(
            a.iter()
                .enumerate()
                .map(|(i, x)| from_yaml(x, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(o) => {
            let mut m = BTreeMap::new();
            for (k, x) in o {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => return Err(err(path, "mapping keys must be strings")),
                };
                let value = from_yaml(x, &join(path, &key))?;
                if m.insert(key.clone(), value).is_some() {
                    return Err(err(join(path, &key), "duplicate key"));
                }
            }
            intrinsic_long(m, path)?
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = from_yaml(&t.value, path)?;
            let function = match name {
                "Ref" => "Ref".to_string(),
                "GetAtt" | "Sub" | "Join" | "If" | "Select" | "Split" | "FindInMap"
                | "ImportValue" | "Base64" | "GetAZs" | "Cidr" | "Equals" | "Not" | "And"
                | "Or" | "Condition" | "Transform" | "Length" | "ToJsonString" => {
                    format!("Fn::{name}")
                }
                _ => return Err(err(path, format!("unknown YAML tag {tag}"))),
            };
            intrinsic(&function, inner, path)?
        }
    })
}

/// A one-key mapping whose key is `Ref` or `Fn::...` is an intrinsic function (JSON and the
/// YAML long form); anything else stays a mapping.
fn intrinsic_long(m: BTreeMap<String, Value>, path: &str) -> Result<Value, TemplateError> {
    if m.len() == 1 {
        if let Some((k, _)) = m.iter().next() {
            if k == "Ref" || k.starts_with("Fn::") {
                let k = k.clone();
                let mut m = m;
                let inner = m.remove(&k).unwrap_or(Value::Null);
                return intrinsic(&k, inner, path);
            }
        }
    }
    Ok(Value::Map(m))
}

fn intrinsic(function: &str, arg: Value, path: &str) -> Result<Value, TemplateError> {
    let at = join(path, function);
    match function {
        "Ref" => match arg {
            Value::String(s) if !s.is_empty() => Ok(Value::Ref(s)),
            _ => Err(err(at, "Ref takes the name of a parameter or a resource")),
        },
        "Fn::GetAtt" => match arg {
            Value::String(s) => match s.split_once('.') {
                Some((r, a)) if !r.is_empty() && !a.is_empty() => {
                    Ok(Value::GetAtt(r.to_string(), a.to_string()))
                }
                _ => Err(err(at, "Fn::GetAtt takes `Resource.Attribute`")),
            },
            Value::List(l) => match l.as_slice() {
                [Value::String(r), Value::String(a)] => Ok(Value::GetAtt(r.clone(), a.clone())),
                _ => Err(err(at, "Fn::GetAtt takes [Resource, Attribute]")),
            },
            _ => Err(err(
                at,
                "Fn::GetAtt takes `Resource.Attribute` or [Resource, Attribute]",
            )),
        },
        "Fn::Sub" => match arg {
            Value::String(s) => Ok(Value::Sub(s, BTreeMap::new())),
            Value::List(l) => match <[Value; 2]>::try_from(l) {
                Ok([Value::String(s), Value::Map(vars)]) => Ok(Value::Sub(s, vars)),
                _ => Err(err(at, "Fn::Sub takes a string or [string, {variables}]")),
            },
            _ => Err(err(at, "Fn::Sub takes a string or [string, {variables}]")),
        },
        "Fn::Join" => match arg {
            Value::List(l) => match <[Value; 2]>::try_from(l) {
                Ok([Value::String(d), Value::List(items)]) => Ok(Value::Join(d, items)),
                _ => Err(err(at, "Fn::Join takes [delimiter, [values]]")),
            },
            _ => Err(err(at, "Fn::Join takes [delimiter, [values]]")),
        },
        other => Err(err(
            at,
            format!(
                "the intrinsic function {other} is not supported by mapreg (Ref, Fn::GetAtt, \
                 Fn::Sub and Fn::Join are)"
            ),
        )),
    }
}

fn as_map(v: Value, at: &str) -> Result<BTreeMap<String, Value>, TemplateError> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(err(at, "must be a mapping")),
    }
}

/// A scalar as a string (numbers and booleans as written).
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) | Value::Number(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn template(root: Value) -> Result<Template, TemplateError> {
    let root = as_map(root, "template")?;
    let mut t = Template::default();
    let mut saw_resources = false;
    for (key, v) in root {
        match key.as_str() {
            "AWSTemplateFormatVersion" => {
                if scalar(&v).as_deref() != Some("2010-09-09") {
                    return Err(err(key, "the only template format version is 2010-09-09"));
                }
            }
            "Description" => t.description = scalar(&v),
            "Metadata" => {}
            "Parameters" => {
                for (name, p) in as_map(v, "Parameters")? {
                    let at = format!("Parameters.{name}");
                    t.parameters.insert(name, parameter(p, &at)?);
                }
            }
            "Resources" => {
                saw_resources = true;
                for (id, r) in as_map(v, "Resources")? {
                    let at = format!("Resources.{id}");
                    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Err(err(at, "logical ids are alphanumeric (A-Za-z0-9)"));
                    }
                    t.resources.insert(id, resource(r, &at)?);
                }
            }
            "Outputs" => {
                for (name, o) in as_map(v, "Outputs")? {
                    let at = format!("Outputs.{name}");
                    t.outputs.insert(name, output(o, &at)?);
                }
            }
            other => {
                return Err(err(
                    other,
                    format!(
                        "the template section {other} is not supported by mapreg (Parameters, \
                         Resources, Outputs, Description and Metadata are)"
                    ),
                ));
            }
        }
    }
    if !saw_resources || t.resources.is_empty() {
        return Err(err("Resources", "a template needs at least one resource"));
    }
    Ok(t)
}

fn parameter(v: Value, at: &str) -> Result<Parameter, TemplateError> {
    let mut p = Parameter {
        kind: String::new(),
        default: None,
        allowed_values: Vec::new(),
    };
    for (k, v) in as_map(v, at)? {
        let here = format!("{at}.{k}");
        match k.as_str() {
            "Type" => p.kind = scalar(&v).unwrap_or_default(),
            "Default" => {
                p.default = Some(scalar(&v).ok_or_else(|| err(&here, "must be a string"))?)
            }
            "AllowedValues" => match v {
                Value::List(l) => {
                    p.allowed_values = l
                        .iter()
                        .map(|x| scalar(x).ok_or_else(|| err(&here, "must list strings")))
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(err(here, "must be a list")),
            },
            "Description" | "ConstraintDescription" | "NoEcho" => {}
            other => {
                return Err(err(
                    here,
                    format!("parameter attribute {other} is not supported by mapreg"),
                ));
            }
        }
    }
    if p.kind != "String" && p.kind != "Number" {
        return Err(err(
            format!("{at}.Type"),
            format!(
                "parameter type {:?} is not supported by mapreg (String and Number are)",
                p.kind
            ),
        ));
    }
    Ok(p)
}

fn resource(v: Value, at: &str) -> Result<Resource, TemplateError> {
    let mut r = Resource {
        kind: String::new(),
        properties: BTreeMap::new(),
        depends_on: Vec::new(),
    };
    for (k, v) in as_map(v, at)? {
        let here = format!("{at}.{k}");
        match k.as_str() {
            "Type" => r.kind = scalar(&v).ok_or_else(|| err(&here, "must be a string"))?,
            "Properties" => r.properties = as_map(v, &here)?,
            "DependsOn" => {
                r.depends_on = match v {
                    Value::String(s) => vec![s],
                    Value::List(l) => l
                        .iter()
                        .map(|x| scalar(x).ok_or_else(|| err(&here, "must list logical ids")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(err(here, "must be a logical id or a list of them")),
                }
            }
            "Metadata" => {}
            other => {
                return Err(err(
                    here,
                    format!(
                        "resource attribute {other} is not supported by mapreg (Type, \
                         Properties, DependsOn and Metadata are)"
                    ),
                ));
            }
        }
    }
    if r.kind.is_empty() {
        return Err(err(format!("{at}.Type"), "every resource needs a Type"));
    }
    Ok(r)
}

fn output(v: Value, at: &str) -> Result<Output, TemplateError> {
    let mut value = None;
    let mut description = None;
    for (k, v) in as_map(v, at)? {
        match k.as_str() {
            "Value" => value = Some(v),
            "Description" => description = scalar(&v),
            other => {
                return Err(err(
                    format!("{at}.{other}"),
                    format!(
                        "output attribute {other} is not supported by mapreg (Value and \
                         Description are)"
                    ),
                ));
            }
        }
    }
    Ok(Output {
        value: value.ok_or_else(|| err(at, "every output needs a Value"))?,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms_are_the_same() {
        let yaml = r#"
Resources:
  M:
    Type: 'AWS::ApiGatewayV2::ApiMapping'
    Properties:
      ApiId: !Ref MyApi
      Stage: !GetAtt [S, Name]
      Key: !GetAtt S.Name
      D: !Sub "${AWS::StackName}.example.com"
"#;
        let json = r#"{"Resources": {"M": {"Type": "AWS::ApiGatewayV2::ApiMapping",
          "Properties": {"ApiId": {"Ref": "MyApi"}, "Stage": {"Fn::GetAtt": ["S", "Name"]},
          "Key": {"Fn::GetAtt": "S.Name"}, "D": {"Fn::Sub": "${AWS::StackName}.example.com"}}}}}"#;
        let a = parse(yaml).unwrap();
        let b = parse(json).unwrap();
        assert_eq!(a, b);
        let p = &a.resources["M"].properties;
        assert_eq!(p["ApiId"], Value::Ref("MyApi".into()));
        assert_eq!(p["Key"], Value::GetAtt("S".into(), "Name".into()));
    }

    #[test]
    fn refusals_name_the_location() {
        let e = parse("Resources:\n  A:\n    Type: X\n    Properties:\n      P: !If [a, b, c]\n")
            .unwrap_err();
        assert_eq!(e.location, "Resources.A.Properties.P.Fn::If");
        let e = parse("Conditions: {}\nResources:\n  A:\n    Type: X\n").unwrap_err();
        assert_eq!(e.location, "Conditions");
        let e = parse("Resources:\n  A:\n    Type: X\n    DeletionPolicy: Retain\n").unwrap_err();
        assert_eq!(e.location, "Resources.A.DeletionPolicy");
        let e = parse("Resources: [").unwrap_err();
        assert!(e.message.contains("not valid YAML"), "{e}");
        let e = parse("{\"Resources\": ").unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
    }
}

/// Property tests (proptest) of the template parser: arbitrary text, arbitrary JSON and YAML
/// documents (intrinsics and CloudFormation's short-form tags included) and cut-off templates
/// never panic: the parser answers a template or a `TemplateError`. Cases: `PROPTEST_CASES`
/// (default 256); a long run: `PROPTEST_CASES=100000 cargo test --release prop_`.
#[cfg(test)]
mod prop_tests {
    use proptest::prelude::*;

    use super::*;

    /// A JSON value whose keys are often those a template has.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        const KEYS: &[&str] = &[
            "Resources",
            "Type",
            "Properties",
            "Parameters",
            "Outputs",
            "Value",
            "Ref",
            "Fn::GetAtt",
            "Fn::Sub",
            "Fn::Join",
            "DependsOn",
            "AWS::ApiGatewayV2::ApiMapping",
        ];
        let key = prop_oneof![
            KEYS.len() as u32 => prop::sample::select(KEYS).prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ];
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            key.clone().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    const VALID: &str = r#"
Parameters:
  Domain: {Type: String, Default: api.example.com}
Resources:
  Api:
    Type: 'AWS::ApiGatewayV2::Api'
    Properties: {Name: pets, ProtocolType: HTTP}
  Stage:
    Type: 'AWS::ApiGatewayV2::Stage'
    Properties: {ApiId: !Ref Api, StageName: test}
  M:
    Type: 'AWS::ApiGatewayV2::ApiMapping'
    DependsOn: Stage
    Properties:
      DomainName: !Sub '${Domain}'
      ApiId: !GetAtt Api.ApiId
      Stage: !Join ['', [te, st]]
Outputs:
  Id: {Value: !Ref Api}
"#;

    proptest! {
        #[test]
        fn prop_template_parser_never_panics_on_text(text in "\\PC{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn prop_template_parser_never_panics_on_documents(v in json(), tag in 0u8..8) {
            let text = v.to_string();
            let _ = parse(&text);
            // The same document as YAML, and with a short-form tag put before a value.
            if let Ok(yaml) = serde_yaml_ng::to_string(&v) {
                let _ = parse(&yaml);
                let tags = ["!Ref", "!GetAtt", "!Sub", "!Join", "!Select", "!If", "!Base64", "!Nope"];
                let tagged = yaml.replacen(": ", &format!(": {} ", tags[usize::from(tag)]), 1);
                let _ = parse(&tagged);
            }
        }

        #[test]
        fn prop_cut_or_changed_templates_never_panic(at in 0usize..VALID.len(), c in any::<char>()) {
            prop_assert!(parse(VALID).is_ok());
            let mut cut = VALID.as_bytes()[..at].to_vec();
            let _ = parse(&String::from_utf8_lossy(&cut));
            let mut buf = [0u8; 4];
            cut.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            cut.extend_from_slice(&VALID.as_bytes()[at..]);
            let _ = parse(&String::from_utf8_lossy(&cut));
        }
    }
}
