//! Checking a template against the supported types and its own references, ordering its
//! resources by dependency, resolving intrinsic functions, and computing the change set
//! against what a stack recorded.
//!
//! Dependencies are the resources a resource names with `Ref`, `Fn::GetAtt` or `Fn::Sub`,
//! its `DependsOn`, and one implicit edge: an `ApiMapping` whose `DomainName` is written
//! literally is created after the template's `DomainName` resource of that name (as in the
//! guide's snippet, which names `api.example.com` rather than `!Ref`-ing it).
//!
//! The change set walks the resources in dependency order. A resource whose inputs include a
//! resource that is still to be created (or replaced) resolves with a placeholder in its
//! place, so it compares as changed, and as replaced when the placeholder lands in a
//! property that needs a replacement.

use std::collections::{BTreeMap, BTreeSet};

use super::TemplateError;
use super::resources::{Desired, Kind, Physical};
use super::template::{Template, Value, scalar};
use crate::domain::arn::DEFAULT_REGION;

/// Pseudo parameters mapreg answers.
const PSEUDO: &[&str] = &[
    "AWS::StackName",
    "AWS::Region",
    "AWS::Partition",
    "AWS::URLSuffix",
];

/// A template that passed every static check, with its parameters' values.
#[derive(Debug, Clone)]
pub struct Checked {
    template: Template,
    stack: String,
    kinds: BTreeMap<String, Kind>,
    params: BTreeMap<String, String>,
    order: Vec<String>,
}

/// Whether `name` is a valid stack name: a letter, then letters, digits and `-`, at most 128.
pub fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// References (`Ref` targets and `GetAtt` resources, with their location) found in `v`.
fn references(v: &Value, at: &str, out: &mut Vec<(String, Option<String>, String)>) {
    match v {
        Value::Ref(r) => out.push((r.clone(), None, at.to_string())),
        Value::GetAtt(r, a) => out.push((r.clone(), Some(a.clone()), at.to_string())),
        Value::Sub(s, vars) => {
            for (i, x) in vars {
                references(x, &format!("{at}.{i}"), out);
            }
            for name in sub_names(s) {
                if vars.contains_key(&name) {
                    continue;
                }
                match name.split_once('.') {
                    Some((r, a)) if !name.starts_with("AWS::") => {
                        out.push((r.to_string(), Some(a.to_string()), at.to_string()))
                    }
                    _ => out.push((name, None, at.to_string())),
                }
            }
        }
        Value::Join(_, items) | Value::List(items) => {
            for (i, x) in items.iter().enumerate() {
                references(x, &format!("{at}[{i}]"), out);
            }
        }
        Value::Map(m) => {
            for (k, x) in m {
                references(x, &format!("{at}.{k}"), out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// The `${...}` names of a `Fn::Sub` string (`${!x}` is a literal).
fn sub_names(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        if !name.starts_with('!') {
            out.push(name.trim().to_string());
        }
        rest = &rest[end + 1..];
    }
    out
}

impl Checked {
    /// Checks `template` for stack `stack` with the parameter `overrides`: supported types,
    /// known properties, required ones present, every reference resolvable, no cycle, every
    /// parameter valued. Nothing here talks to a server.
    pub fn new(
        template: Template,
        stack: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Checked, TemplateError> {
        if !valid_stack_name(stack) {
            return Err(TemplateError::new(
                "--stack-name",
                format!(
                    "{stack:?} is not a valid stack name: a letter, then letters, digits and \
                     hyphens, at most 128 characters"
                ),
            ));
        }
        let mut params = BTreeMap::new();
        for name in overrides.keys() {
            if !template.parameters.contains_key(name) {
                return Err(TemplateError::new(
                    "--parameter-overrides",
                    format!("Parameters: [{name}] do not exist in the template"),
                ));
            }
        }
        for (name, p) in &template.parameters {
            let at = format!("Parameters.{name}");
            let Some(v) = overrides.get(name).or(p.default.as_ref()) else {
                return Err(TemplateError::new(
                    at,
                    format!("Parameters: [{name}] must have values"),
                ));
            };
            if p.kind == "Number" && v.parse::<f64>().is_err() {
                return Err(TemplateError::new(
                    at,
                    format!("parameter {name} must be a number, not {v:?}"),
                ));
            }
            if !p.allowed_values.is_empty() && !p.allowed_values.contains(v) {
                return Err(TemplateError::new(
                    at,
                    format!(
                        "parameter {name} must be one of {}, not {v:?}",
                        p.allowed_values.join(", ")
                    ),
                ));
            }
            params.insert(name.clone(), v.clone());
        }
        let mut kinds = BTreeMap::new();
        for (id, r) in &template.resources {
            let at = format!("Resources.{id}");
            if template.parameters.contains_key(id) {
                return Err(TemplateError::new(
                    at,
                    format!("{id} is both a parameter and a resource"),
                ));
            }
            let kind = Kind::from_type(&r.kind).ok_or_else(|| {
                TemplateError::new(
                    format!("{at}.Type"),
                    format!(
                        "resource type {} is not supported by mapreg (supported: {})",
                        r.kind,
                        Kind::ALL.map(Kind::type_name).join(", ")
                    ),
                )
            })?;
            kind.check_properties(&r.properties, &at)?;
            kinds.insert(id.clone(), kind);
        }
        let check_refs = |v: &Value, at: &str| -> Result<BTreeSet<String>, TemplateError> {
            let mut refs = Vec::new();
            references(v, at, &mut refs);
            let mut deps = BTreeSet::new();
            for (target, attribute, at) in refs {
                match attribute {
                    None => {
                        if PSEUDO.contains(&target.as_str()) || params.contains_key(&target) {
                            continue;
                        }
                        if !kinds.contains_key(&target) {
                            return Err(TemplateError::new(
                                at,
                                format!(
                                    "Unresolved resource dependencies [{target}] in the \
                                     Resources block of the template"
                                ),
                            ));
                        }
                        deps.insert(target);
                    }
                    Some(a) => {
                        let Some(kind) = kinds.get(&target) else {
                            return Err(TemplateError::new(
                                at,
                                format!(
                                    "Template error: instance of Fn::GetAtt references \
                                     undefined resource {target}"
                                ),
                            ));
                        };
                        if !kind.attributes().contains(&a.as_str()) {
                            return Err(TemplateError::new(
                                at,
                                format!(
                                    "Template error: resource {target} ({}) has no attribute \
                                     {a}{}",
                                    kind.type_name(),
                                    if kind.attributes().is_empty() {
                                        String::new()
                                    } else {
                                        format!(" (it has {})", kind.attributes().join(", "))
                                    }
                                ),
                            ));
                        }
                        deps.insert(target);
                    }
                }
            }
            Ok(deps)
        };
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Literal domain names of the template's DomainName resources.
        let domains: BTreeMap<String, String> = template
            .resources
            .iter()
            .filter(|(id, _)| kinds.get(*id) == Some(&Kind::DomainName))
            .filter_map(|(id, r)| {
                let d = r.properties.get("DomainName").and_then(scalar)?;
                Some((d.to_ascii_lowercase(), id.clone()))
            })
            .collect();
        for (id, r) in &template.resources {
            let at = format!("Resources.{id}.Properties");
            let mut d = check_refs(&Value::Map(r.properties.clone()), &at)?;
            for (i, on) in r.depends_on.iter().enumerate() {
                if !kinds.contains_key(on) {
                    return Err(TemplateError::new(
                        format!("Resources.{id}.DependsOn[{i}]"),
                        format!(
                            "Template format error: Unresolved resource dependencies [{on}] in the Resources block of the template"
                        ),
                    ));
                }
                d.insert(on.clone());
            }
            if kinds.get(id) == Some(&Kind::ApiMapping) {
                if let Some(domain) = r.properties.get("DomainName").and_then(scalar) {
                    if let Some(owner) = domains.get(&domain.to_ascii_lowercase()) {
                        d.insert(owner.clone());
                    }
                }
            }
            if d.contains(id) {
                return Err(TemplateError::new(
                    format!("Resources.{id}"),
                    format!("Circular dependency between resources: [{id}]"),
                ));
            }
            deps.insert(id.clone(), d);
        }
        for (name, o) in &template.outputs {
            check_refs(&o.value, &format!("Outputs.{name}.Value"))?;
        }
        let order = topological(&deps)?;
        Ok(Checked {
            template,
            stack: stack.to_string(),
            kinds,
            params,
            order,
        })
    }

    /// The logical ids, each after everything it depends on.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The kind of a logical id of the template.
    pub fn kind(&self, id: &str) -> Option<Kind> {
        self.kinds.get(id).copied()
    }

    /// The stack's name.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The resolved properties of `id`, with the resources of `env` as created; a resource
    /// not in `env` resolves to a `{{placeholder}}`.
    pub fn desired(
        &self,
        id: &str,
        env: &BTreeMap<String, Physical>,
    ) -> Result<Desired, TemplateError> {
        let (Some(r), Some(kind)) = (self.template.resources.get(id), self.kind(id)) else {
            return Err(TemplateError::new(
                format!("Resources.{id}"),
                "no such resource",
            ));
        };
        let at = format!("Resources.{id}");
        let mut props = BTreeMap::new();
        for (k, v) in &r.properties {
            props.insert(
                k.clone(),
                self.resolve(v, env, &format!("{at}.Properties.{k}"))?,
            );
        }
        Desired::from_properties(kind, &props, &at)
    }

    /// The outputs' values with the resources of `env`.
    pub fn outputs(
        &self,
        env: &BTreeMap<String, Physical>,
    ) -> Result<Vec<(String, String)>, TemplateError> {
        let mut out = Vec::new();
        for (name, o) in &self.template.outputs {
            let at = format!("Outputs.{name}.Value");
            let v = self.resolve(&o.value, env, &at)?;
            let s = scalar(&v)
                .ok_or_else(|| TemplateError::new(at, "an output's value must be a string"))?;
            out.push((name.clone(), s));
        }
        Ok(out)
    }

    fn lookup(
        &self,
        name: &str,
        attribute: Option<&str>,
        env: &BTreeMap<String, Physical>,
        at: &str,
    ) -> Result<String, TemplateError> {
        if attribute.is_none() {
            match name {
                "AWS::StackName" => return Ok(self.stack.clone()),
                "AWS::Region" => return Ok(DEFAULT_REGION.to_string()),
                "AWS::Partition" => return Ok("aws".into()),
                "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
                _ => {}
            }
            if let Some(v) = self.params.get(name) {
                return Ok(v.clone());
            }
        }
        match (env.get(name), attribute) {
            (Some(p), None) => Ok(p.reference.clone()),
            (Some(p), Some(a)) => p.attributes.get(a).cloned().ok_or_else(|| {
                TemplateError::new(at, format!("resource {name} has no attribute {a}"))
            }),
            (None, _) if self.kinds.contains_key(name) => Ok(match attribute {
                None => format!("{{{{{name}}}}}"),
                Some(a) => format!("{{{{{name}.{a}}}}}"),
            }),
            (None, _) => Err(TemplateError::new(
                at,
                format!("Unresolved resource dependencies [{name}]"),
            )),
        }
    }

    fn resolve(
        &self,
        v: &Value,
        env: &BTreeMap<String, Physical>,
        at: &str,
    ) -> Result<Value, TemplateError> {
        Ok(match v {
            Value::Ref(r) => Value::String(self.lookup(r, None, env, at)?),
            Value::GetAtt(r, a) => Value::String(self.lookup(r, Some(a), env, at)?),
            Value::Sub(s, vars) => {
                let mut values = BTreeMap::new();
                for (k, x) in vars {
                    let x = self.resolve(x, env, &format!("{at}.{k}"))?;
                    let x = scalar(&x).ok_or_else(|| {
                        TemplateError::new(
                            format!("{at}.{k}"),
                            "a Fn::Sub variable must be a string",
                        )
                    })?;
                    values.insert(k.clone(), x);
                }
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    rest = &rest[i + 2..];
                    let Some(end) = rest.find('}') else {
                        out.push_str("${");
                        break;
                    };
                    let name = rest[..end].trim();
                    if let Some(lit) = name.strip_prefix('!') {
                        out.push_str("${");
                        out.push_str(lit);
                        out.push('}');
                    } else if let Some(x) = values.get(name) {
                        out.push_str(x);
                    } else {
                        let (r, a) = match name.split_once('.') {
                            Some((r, a)) if !name.starts_with("AWS::") => (r, Some(a)),
                            _ => (name, None),
                        };
                        out.push_str(&self.lookup(r, a, env, at)?);
                    }
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Value::String(out)
            }
            Value::Join(d, items) => {
                let mut parts = Vec::new();
                for (i, x) in items.iter().enumerate() {
                    let here = format!("{at}[{i}]");
                    let x = self.resolve(x, env, &here)?;
                    parts.push(
                        scalar(&x)
                            .ok_or_else(|| TemplateError::new(here, "Fn::Join joins strings"))?,
                    );
                }
                Value::String(parts.join(d))
            }
            Value::List(l) => Value::List(
                l.iter()
                    .enumerate()
                    .map(|(i, x)| self.resolve(x, env, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(m) => {
                let mut out = BTreeMap::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.resolve(x, env, &format!("{at}.{k}"))?);
                }
                Value::Map(out)
            }
            other => other.clone(),
        })
    }
}

/// Kahn's algorithm, smallest logical id first among the ready ones (a stable order); a
/// cycle is refused naming its members.
fn topological(deps: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, TemplateError> {
    let mut remaining: BTreeMap<&String, BTreeSet<&String>> =
        deps.iter().map(|(k, d)| (k, d.iter().collect())).collect();
    let mut order = Vec::new();
    loop {
        let ready: Vec<&String> = remaining
            .iter()
            .filter(|(_, d)| d.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let Some(next) = ready.first().copied() else {
            break;
        };
        remaining.remove(next);
        for d in remaining.values_mut() {
            d.remove(next);
        }
        order.push(next.clone());
    }
    if !remaining.is_empty() {
        let members: Vec<&str> = remaining.keys().map(|k| k.as_str()).collect();
        return Err(TemplateError::new(
            format!("Resources.{}", members[0]),
            format!(
                "Circular dependency between resources: [{}]",
                members.join(", ")
            ),
        ));
    }
    Ok(order)
}

/// A resource the stack holds, as recorded in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Its type.
    pub kind: Kind,
    /// Its `Ref` value and attributes.
    pub physical: Physical,
    /// The checksum of the properties it was last deployed with.
    pub checksum: String,
    /// Its properties as the registry holds them now.
    pub live: Desired,
}

/// What a deploy does to one logical id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create it.
    Add,
    /// Change it; with `replacement`, create a new one and delete the old one at the end.
    Modify {
        /// Whether a property that needs a new resource changed.
        replacement: bool,
    },
    /// Delete it (no longer in the template).
    Remove,
    /// Nothing.
    NoChange,
}

/// One line of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The logical id.
    pub logical_id: String,
    /// The resource type.
    pub kind: Kind,
    /// What happens.
    pub action: Action,
}

/// The change set of deploying `checked` over the stack's `recorded` resources: the template's
/// resources in dependency order, then the removed ones in deletion order.
pub fn change_set(
    checked: &Checked,
    recorded: &BTreeMap<String, Recorded>,
) -> Result<Vec<Change>, TemplateError> {
    let mut env: BTreeMap<String, Physical> = BTreeMap::new();
    let mut changes = Vec::new();
    for id in checked.order() {
        let Some(kind) = checked.kind(id) else {
            continue;
        };
        let action = match recorded.get(id) {
            None => Action::Add,
            Some(r) if r.kind != kind => Action::Modify { replacement: true },
            Some(r) => {
                let desired = checked.desired(id, &env)?;
                if desired.checksum() == r.checksum {
                    Action::NoChange
                } else {
                    Action::Modify {
                        replacement: desired.replaces(&r.live),
                    }
                }
            }
        };
        let keeps_identity = matches!(
            action,
            Action::NoChange | Action::Modify { replacement: false }
        );
        if keeps_identity {
            if let Some(r) = recorded.get(id) {
                env.insert(id.clone(), r.physical.clone());
            }
        }
        changes.push(Change {
            logical_id: id.clone(),
            kind,
            action,
        });
    }
    let mut removed: Vec<(&String, &Recorded)> = recorded
        .iter()
        .filter(|(id, _)| checked.kind(id).is_none())
        .collect();
    removed.sort_by_key(|(id, r)| (r.kind.delete_rank(), (*id).clone()));
    for (id, r) in removed {
        changes.push(Change {
            logical_id: id.clone(),
            kind: r.kind,
            action: Action::Remove,
        });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::super::template::parse;
    use super::*;

    /// The guide's snippet, completed with the API, the stage and the domain.
    pub(crate) const GUIDE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Key:
    Type: String
    Default: v1
Resources:
  MyApi:
    Type: 'AWS::ApiGatewayV2::Api'
    Properties:
      Name: my-websocket-api
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  MyStage:
    Type: 'AWS::ApiGatewayV2::Stage'
    Properties:
      ApiId: !Ref MyApi
      StageName: test
  MyDomainName:
    Type: 'AWS::ApiGatewayV2::DomainName'
    Properties:
      DomainName: api.example.com
  MyApiMapping:
    Type: 'AWS::ApiGatewayV2::ApiMapping'
    Properties:
      DomainName: api.example.com
      ApiMappingKey: !Ref Key
      ApiId: !Ref MyApi
      Stage: !Ref MyStage
Outputs:
  Endpoint:
    Value: !Sub "https://${MyDomainName}/${Key} -> ${MyApi.ApiEndpoint}"
"#;

    fn checked(text: &str) -> Result<Checked, TemplateError> {
        Checked::new(parse(text)?, "s1", &BTreeMap::new())
    }

    fn physical(reference: &str) -> Physical {
        Physical {
            reference: reference.into(),
            attributes: BTreeMap::from([("ApiEndpoint".to_string(), format!("wss://{reference}"))]),
        }
    }

    #[test]
    fn order_follows_references_and_the_literal_domain() {
        let c = checked(GUIDE).unwrap();
        let pos = |id: &str| c.order().iter().position(|x| x == id).unwrap();
        assert!(pos("MyApi") < pos("MyStage"));
        assert!(pos("MyStage") < pos("MyApiMapping"));
        assert!(
            pos("MyDomainName") < pos("MyApiMapping"),
            "implicit domain edge"
        );
    }

    #[test]
    fn resolves_refs_parameters_and_sub() {
        let c = Checked::new(
            parse(GUIDE).unwrap(),
            "s1",
            &BTreeMap::from([("Key".to_string(), "v2".to_string())]),
        )
        .unwrap();
        let env = BTreeMap::from([
            ("MyApi".to_string(), physical("a1b2c3d4e5")),
            ("MyStage".to_string(), physical("test")),
            ("MyDomainName".to_string(), physical("api.example.com")),
        ]);
        assert_eq!(
            c.desired("MyApiMapping", &env).unwrap(),
            Desired::ApiMapping {
                domain_name: "api.example.com".into(),
                api_mapping_key: "v2".into(),
                api_id: "a1b2c3d4e5".into(),
                stage: "test".into(),
            }
        );
        assert_eq!(
            c.outputs(&env).unwrap(),
            vec![(
                "Endpoint".to_string(),
                "https://api.example.com/v2 -> wss://a1b2c3d4e5".to_string()
            )]
        );
    }

    #[test]
    fn refuses_with_the_location() {
        let cases = [
            (
                "'AWS::ApiGatewayV2::Stage'",
                "'AWS::ApiGatewayV2::Route'",
                "Resources.MyStage.Type",
                "not supported",
            ),
            (
                "StageName: test",
                "StageName: test\n      Bogus: 1",
                "Resources.MyStage.Properties.Bogus",
                "no property Bogus",
            ),
            (
                "ApiId: !Ref MyApi\n      StageName",
                "ApiId: !Ref Nope\n      StageName",
                "Resources.MyStage.Properties.ApiId",
                "Unresolved resource dependencies [Nope]",
            ),
            (
                "${MyApi.ApiEndpoint}",
                "${MyApi.Nope}",
                "Outputs.Endpoint.Value",
                "no attribute Nope",
            ),
            (
                "Name: my-websocket-api",
                "Name: !GetAtt MyApiMapping.ApiMappingId",
                "Resources.MyApi",
                "Circular dependency",
            ),
            (
                "    Default: v1\n",
                "",
                "Parameters.Key",
                "must have values",
            ),
            (
                "      StageName: test\n",
                "",
                "Resources.MyStage.Properties",
                "requires the property StageName",
            ),
        ];
        for (from, to, location, message) in cases {
            let e = checked(&GUIDE.replace(from, to)).unwrap_err();
            assert_eq!(e.location, location, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        assert!(!valid_stack_name("1abc"));
        assert!(!valid_stack_name("a:b"));
        assert!(valid_stack_name("my-stack-1"));
    }

    fn recorded(c: &Checked) -> BTreeMap<String, Recorded> {
        // Deploy everything, in order, as the executor would.
        let mut env = BTreeMap::new();
        let mut rec = BTreeMap::new();
        for id in c.order() {
            let d = c.desired(id, &env).unwrap();
            let p = physical(&format!("phys-{id}"));
            env.insert(id.clone(), p.clone());
            rec.insert(
                id.clone(),
                Recorded {
                    kind: d.kind(),
                    physical: p,
                    checksum: d.checksum(),
                    live: d,
                },
            );
        }
        rec
    }

    fn actions(changes: &[Change]) -> BTreeMap<String, Action> {
        changes
            .iter()
            .map(|c| (c.logical_id.clone(), c.action))
            .collect()
    }

    #[test]
    fn change_sets() {
        let c = checked(GUIDE).unwrap();
        let first = change_set(&c, &BTreeMap::new()).unwrap();
        assert!(first.iter().all(|x| x.action == Action::Add));
        let rec = recorded(&c);
        let again = change_set(&c, &rec).unwrap();
        assert!(
            again.iter().all(|x| x.action == Action::NoChange),
            "{again:?}"
        );

        // A new key: the mapping changes in place, nothing else.
        let c2 = checked(&GUIDE.replace("Default: v1", "Default: v2")).unwrap();
        let a = actions(&change_set(&c2, &rec).unwrap());
        assert_eq!(a["MyApiMapping"], Action::Modify { replacement: false });
        assert_eq!(a["MyApi"], Action::NoChange);

        // A new protocol replaces the API, and so its stage (new ApiId), and the mapping
        // follows in place.
        let c3 = checked(&GUIDE.replace("ProtocolType: WEBSOCKET", "ProtocolType: HTTP")).unwrap();
        let a = actions(&change_set(&c3, &rec).unwrap());
        assert_eq!(a["MyApi"], Action::Modify { replacement: true });
        assert_eq!(a["MyStage"], Action::Modify { replacement: true });
        assert_eq!(a["MyApiMapping"], Action::Modify { replacement: false });

        // A resource gone from the template is removed.
        let without = GUIDE.replace(
            "Outputs:\n  Endpoint:\n    Value: !Sub \"https://${MyDomainName}/${Key} -> ${MyApi.ApiEndpoint}\"\n",
            "",
        );
        let start = without.find("  MyApiMapping:").unwrap();
        let c4 = checked(&without[..start]).unwrap();
        let changes = change_set(&c4, &rec).unwrap();
        let a = actions(&changes);
        assert_eq!(a["MyApiMapping"], Action::Remove);
        assert_eq!(changes.last().unwrap().logical_id, "MyApiMapping");
    }
}
