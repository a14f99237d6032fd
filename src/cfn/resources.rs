//! The four supported resource types: their properties, what `Ref` and `Fn::GetAtt` return,
//! which property changes need a replacement, and a resource's properties once resolved
//! ([`Desired`]).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::TemplateError;
use super::template::Value;

/// A supported resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `AWS::ApiGatewayV2::Api`.
    Api,
    /// `AWS::ApiGatewayV2::Stage`.
    Stage,
    /// `AWS::ApiGatewayV2::DomainName`.
    DomainName,
    /// `AWS::ApiGatewayV2::ApiMapping`.
    ApiMapping,
}

/// What a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Str,
    StrMap,
    Configurations,
}

impl Kind {
    /// Every supported kind.
    pub const ALL: [Kind; 4] = [Kind::Api, Kind::Stage, Kind::DomainName, Kind::ApiMapping];

    /// The kind of a `Type`, if supported.
    pub fn from_type(t: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_name() == t)
    }

    /// The CloudFormation type name.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Api => "AWS::ApiGatewayV2::Api",
            Kind::Stage => "AWS::ApiGatewayV2::Stage",
            Kind::DomainName => "AWS::ApiGatewayV2::DomainName",
            Kind::ApiMapping => "AWS::ApiGatewayV2::ApiMapping",
        }
    }

    /// (property, required, shape).
    fn properties(self) -> &'static [(&'static str, bool, Shape)] {
        use Shape::*;
        match self {
            Kind::Api => &[
                ("Name", true, Str),
                ("ProtocolType", true, Str),
                ("RouteSelectionExpression", false, Str),
                ("ApiKeySelectionExpression", false, Str),
                ("Description", false, Str),
                ("Tags", false, StrMap),
            ],
            Kind::Stage => &[
                ("ApiId", true, Str),
                ("StageName", true, Str),
                ("Description", false, Str),
                ("Tags", false, StrMap),
            ],
            Kind::DomainName => &[
                ("DomainName", true, Str),
                ("DomainNameConfigurations", false, Configurations),
                ("Tags", false, StrMap),
            ],
            Kind::ApiMapping => &[
                ("DomainName", true, Str),
                ("ApiMappingKey", false, Str),
                ("ApiId", true, Str),
                ("Stage", true, Str),
            ],
        }
    }

    /// The attributes `Fn::GetAtt` may ask for.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            Kind::Api => &["ApiEndpoint", "ApiId"],
            Kind::Stage => &[],
            Kind::DomainName => &[
                "DomainNameArn",
                "RegionalDomainName",
                "RegionalHostedZoneId",
            ],
            Kind::ApiMapping => &["ApiMappingId"],
        }
    }

    /// Deletion order: mappings before stages before APIs before domain names.
    pub fn delete_rank(self) -> u8 {
        match self {
            Kind::ApiMapping => 0,
            Kind::Stage => 1,
            Kind::Api => 2,
            Kind::DomainName => 3,
        }
    }

    /// Checks the properties' names, presence and literal shapes (intrinsics are checked
    /// once resolved).
    pub fn check_properties(
        self,
        properties: &BTreeMap<String, Value>,
        at: &str,
    ) -> Result<(), TemplateError> {
        let schema = self.properties();
        for (name, value) in properties {
            let here = format!("{at}.Properties.{name}");
            let Some((_, _, shape)) = schema.iter().find(|(n, _, _)| n == name) else {
                return Err(TemplateError::new(
                    here,
                    format!(
                        "{} has no property {name} that mapreg supports (it has {})",
                        self.type_name(),
                        schema
                            .iter()
                            .map(|(n, _, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            let ok = match (shape, value) {
                (Shape::Str, Value::Map(_) | Value::List(_) | Value::Null) => false,
                (Shape::StrMap, Value::Map(m)) => m
                    .values()
                    .all(|v| !matches!(v, Value::Map(_) | Value::List(_))),
                (Shape::StrMap, _) => false,
                (Shape::Configurations, Value::List(l)) => {
                    l.iter().all(|c| matches!(c, Value::Map(_)))
                }
                (Shape::Configurations, _) => false,
                _ => true,
            };
            if !ok {
                let want = match shape {
                    Shape::Str => "a string",
                    Shape::StrMap => "a mapping of strings",
                    Shape::Configurations => "a list of configurations",
                };
                return Err(TemplateError::new(here, format!("{name} must be {want}")));
            }
        }
        for (name, required, _) in schema {
            if *required && !properties.contains_key(*name) {
                return Err(TemplateError::new(
                    format!("{at}.Properties"),
                    format!("{} requires the property {name}", self.type_name()),
                ));
            }
        }
        Ok(())
    }
}

/// The endpoint configuration of a domain name, as the template gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configuration {
    /// `EndpointType` (REGIONAL, EDGE).
    pub endpoint_type: Option<String>,
    /// `SecurityPolicy` (TLS_1_2, TLS_1_0).
    pub security_policy: Option<String>,
    /// `CertificateArn`.
    pub certificate_arn: Option<String>,
}

/// A resource's properties, resolved: what the registry should hold for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// An API.
    Api {
        /// `Name`.
        name: String,
        /// `ProtocolType`: HTTP or WEBSOCKET.
        protocol_type: String,
        /// `RouteSelectionExpression`, if given.
        route_selection_expression: Option<String>,
        /// `ApiKeySelectionExpression`, if given.
        api_key_selection_expression: Option<String>,
        /// `Description` ("" when absent).
        description: String,
        /// `Tags`.
        tags: BTreeMap<String, String>,
    },
    /// A stage.
    Stage {
        /// `ApiId`.
        api_id: String,
        /// `StageName`.
        stage_name: String,
        /// `Description`.
        description: String,
        /// `Tags`.
        tags: BTreeMap<String, String>,
    },
    /// A custom domain name.
    DomainName {
        /// `DomainName`, lower-cased.
        domain_name: String,
        /// The first of `DomainNameConfigurations`, if given.
        configuration: Option<Configuration>,
        /// `Tags`.
        tags: BTreeMap<String, String>,
    },
    /// An API mapping.
    ApiMapping {
        /// `DomainName`, lower-cased.
        domain_name: String,
        /// `ApiMappingKey` ("" for the root).
        api_mapping_key: String,
        /// `ApiId`.
        api_id: String,
        /// `Stage`.
        stage: String,
    },
}

fn string(
    props: &BTreeMap<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<String>, TemplateError> {
    match props.get(name) {
        None => Ok(None),
        Some(v) => super::template::scalar(v).map(Some).ok_or_else(|| {
            TemplateError::new(
                format!("{at}.Properties.{name}"),
                format!("{name} must be a string"),
            )
        }),
    }
}

fn string_map(
    props: &BTreeMap<String, Value>,
    name: &str,
    at: &str,
) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut out = BTreeMap::new();
    match props.get(name) {
        None => {}
        Some(Value::Map(m)) => {
            for (k, v) in m {
                let s = super::template::scalar(v).ok_or_else(|| {
                    TemplateError::new(
                        format!("{at}.Properties.{name}.{k}"),
                        "must be a string".to_string(),
                    )
                })?;
                out.insert(k.clone(), s);
            }
        }
        Some(_) => {
            return Err(TemplateError::new(
                format!("{at}.Properties.{name}"),
                format!("{name} must be a mapping of strings"),
            ));
        }
    }
    Ok(out)
}

impl Desired {
    /// The resolved properties (no intrinsic left) of a resource of `kind` at `at`.
    pub fn from_properties(
        kind: Kind,
        p: &BTreeMap<String, Value>,
        at: &str,
    ) -> Result<Desired, TemplateError> {
        let req = |name: &str| -> Result<String, TemplateError> {
            string(p, name, at)?.ok_or_else(|| {
                TemplateError::new(
                    format!("{at}.Properties"),
                    format!("{} requires the property {name}", kind.type_name()),
                )
            })
        };
        Ok(match kind {
            Kind::Api => {
                let protocol_type = req("ProtocolType")?;
                if protocol_type != "HTTP" && protocol_type != "WEBSOCKET" {
                    return Err(TemplateError::new(
                        format!("{at}.Properties.ProtocolType"),
                        format!("ProtocolType must be HTTP or WEBSOCKET, not {protocol_type:?}"),
                    ));
                }
                Desired::Api {
                    name: req("Name")?,
                    protocol_type,
                    route_selection_expression: string(p, "RouteSelectionExpression", at)?,
                    api_key_selection_expression: string(p, "ApiKeySelectionExpression", at)?,
                    description: string(p, "Description", at)?.unwrap_or_default(),
                    tags: string_map(p, "Tags", at)?,
                }
            }
            Kind::Stage => Desired::Stage {
                api_id: req("ApiId")?,
                stage_name: req("StageName")?,
                description: string(p, "Description", at)?.unwrap_or_default(),
                tags: string_map(p, "Tags", at)?,
            },
            Kind::DomainName => {
                let configuration = match p.get("DomainNameConfigurations") {
                    None => None,
                    Some(Value::List(l)) => {
                        if l.len() > 1 {
                            return Err(TemplateError::new(
                                format!("{at}.Properties.DomainNameConfigurations"),
                                "Expected one domain name configuration",
                            ));
                        }
                        match l.first() {
                            None => None,
                            Some(Value::Map(c)) => {
                                let here = format!("{at}.Properties.DomainNameConfigurations[0]");
                                for k in c.keys() {
                                    if !["EndpointType", "SecurityPolicy", "CertificateArn"]
                                        .contains(&k.as_str())
                                    {
                                        return Err(TemplateError::new(
                                            format!("{here}.{k}"),
                                            format!(
                                                "DomainNameConfiguration has no property {k} that mapreg supports (it has EndpointType, SecurityPolicy, CertificateArn)"
                                            ),
                                        ));
                                    }
                                }
                                let s = |k: &str| string(c, k, &here);
                                Some(Configuration {
                                    endpoint_type: s("EndpointType")?,
                                    security_policy: s("SecurityPolicy")?,
                                    certificate_arn: s("CertificateArn")?,
                                })
                            }
                            Some(_) => {
                                return Err(TemplateError::new(
                                    format!("{at}.Properties.DomainNameConfigurations[0]"),
                                    "must be a mapping",
                                ));
                            }
                        }
                    }
                    Some(_) => {
                        return Err(TemplateError::new(
                            format!("{at}.Properties.DomainNameConfigurations"),
                            "DomainNameConfigurations must be a list",
                        ));
                    }
                };
                Desired::DomainName {
                    domain_name: req("DomainName")?.to_ascii_lowercase(),
                    configuration,
                    tags: string_map(p, "Tags", at)?,
                }
            }
            Kind::ApiMapping => Desired::ApiMapping {
                domain_name: req("DomainName")?.to_ascii_lowercase(),
                api_mapping_key: string(p, "ApiMappingKey", at)?.unwrap_or_default(),
                api_id: req("ApiId")?,
                stage: req("Stage")?,
            },
        })
    }

    /// The kind of resource.
    pub fn kind(&self) -> Kind {
        match self {
            Desired::Api { .. } => Kind::Api,
            Desired::Stage { .. } => Kind::Stage,
            Desired::DomainName { .. } => Kind::DomainName,
            Desired::ApiMapping { .. } => Kind::ApiMapping,
        }
    }

    /// Whether going from `live` to `self` needs a new resource (CloudFormation's "Update
    /// requires: Replacement"): an API's protocol, a stage's API or name, a domain's name, a
    /// mapping's domain.
    pub fn replaces(&self, live: &Desired) -> bool {
        match (self, live) {
            (
                Desired::Api {
                    protocol_type: a, ..
                },
                Desired::Api {
                    protocol_type: b, ..
                },
            ) => a != b,
            (
                Desired::Stage {
                    api_id: a,
                    stage_name: s,
                    ..
                },
                Desired::Stage {
                    api_id: b,
                    stage_name: t,
                    ..
                },
            ) => a != b || s != t,
            (
                Desired::DomainName { domain_name: a, .. },
                Desired::DomainName { domain_name: b, .. },
            ) => a != b,
            (
                Desired::ApiMapping { domain_name: a, .. },
                Desired::ApiMapping { domain_name: b, .. },
            ) => a != b,
            _ => true,
        }
    }

    /// A short digest of the resolved properties, recorded with the resource: equal digests
    /// mean nothing to deploy.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(format!("{self:?}").as_bytes());
        hex::encode(&digest[..8])
    }

    /// The user's tags (none for mappings).
    pub fn tags(&self) -> BTreeMap<String, String> {
        match self {
            Desired::Api { tags, .. }
            | Desired::Stage { tags, .. }
            | Desired::DomainName { tags, .. } => tags.clone(),
            Desired::ApiMapping { .. } => BTreeMap::new(),
        }
    }
}

/// A created resource as intrinsic functions see it: `Ref`'s value and the attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Physical {
    /// What `Ref` returns (the API id, the stage name, the domain name, the mapping id).
    pub reference: String,
    /// What `Fn::GetAtt` returns, by attribute.
    pub attributes: BTreeMap<String, String>,
}
