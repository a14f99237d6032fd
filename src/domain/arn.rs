//! Resource ARNs, as API Gateway writes them: `arn:aws:apigateway:REGION::/apis/ID`,
//! `arn:aws:apigateway:REGION::/apis/ID/stages/NAME`, `arn:aws:apigateway:REGION::/domainnames/NAME`.
//!
//! API Gateway's ARNs carry no account (the field between the two colons is empty) and mapreg
//! has no regions: a region is only echoed back, so any partition and region are accepted and
//! the resource is found from the path after `::`. The bare path (`/apis/ID`) is accepted too.
//! Only the three kinds of resource that carry tags in mapreg parse; anything else (routes,
//! integrations, API mappings, v1 `/restapis`) is refused with a message that says what is
//! accepted.

use crate::error::{Error, Result};

/// Region used in ARNs when a request names none (an unsigned dev-mode request).
pub const DEFAULT_REGION: &str = "us-east-1";

/// A taggable resource, named by its identity. Domain names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tagged {
    /// An API.
    Api {
        /// Its id.
        api_id: String,
    },
    /// A stage of an API.
    Stage {
        /// The API's id.
        api_id: String,
        /// The stage's name.
        stage_name: String,
    },
    /// A custom domain name.
    DomainName {
        /// The domain name, lower case.
        domain_name: String,
    },
}

impl Tagged {
    /// The resource's path, as in its ARN (`/apis/ID/stages/NAME`).
    pub fn path(&self) -> String {
        match self {
            Tagged::Api { api_id } => format!("/apis/{api_id}"),
            Tagged::Stage { api_id, stage_name } => format!("/apis/{api_id}/stages/{stage_name}"),
            Tagged::DomainName { domain_name } => format!("/domainnames/{domain_name}"),
        }
    }

    /// The resource's ARN in `region`.
    pub fn arn(&self, region: &str) -> String {
        arn(region, &self.path())
    }
}

/// `arn:aws:apigateway:REGION::PATH`.
pub fn arn(region: &str, path: &str) -> String {
    format!("arn:aws:apigateway:{region}::{path}")
}

/// Parses `raw` (an ARN or a bare resource path) of request field `field`.
///
/// Guarantees on `Ok`: every id is 1 to 128 characters and contains no `/`; a domain name is
/// lower-cased (its syntax is not checked: an impossible name is simply not found).
pub fn parse(field: &str, raw: &str) -> Result<Tagged> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{field} must be the ARN of an API, a stage or a custom domain name \
                 (arn:aws:apigateway:REGION::/apis/ID, arn:aws:apigateway:REGION::/apis/ID/stages/NAME \
                 or arn:aws:apigateway:REGION::/domainnames/NAME), got {:?}",
                raw.chars().take(300).collect::<String>()
            ),
        )
    };
    if raw.is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if raw.len() > 2048 {
        return Err(bad());
    }
    let path = if raw.starts_with('/') {
        raw
    } else {
        // arn:PARTITION:apigateway:REGION:ACCOUNT:PATH, ACCOUNT empty.
        let mut parts = raw.splitn(6, ':');
        let (Some("arn"), Some(partition), Some("apigateway"), Some(region), Some(""), Some(path)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if partition.is_empty() || region.is_empty() {
            return Err(bad());
        }
        path
    };
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(bad()),
    };
    let id = |s: &str| !s.is_empty() && s.chars().count() <= 128;
    match segments.as_slice() {
        ["apis", api_id] if id(api_id) => Ok(Tagged::Api {
            api_id: (*api_id).to_string(),
        }),
        ["apis", api_id, "stages", stage] if id(api_id) && id(stage) => Ok(Tagged::Stage {
            api_id: (*api_id).to_string(),
            stage_name: (*stage).to_string(),
        }),
        ["domainnames", domain] if !domain.is_empty() && domain.len() <= 253 => {
            Ok(Tagged::DomainName {
                domain_name: domain.to_ascii_lowercase(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_taggable_kinds_in_any_region() {
        assert_eq!(
            parse(
                "resource_arn",
                "arn:aws:apigateway:eu-west-1::/apis/a1b2c3d4e5"
            )
            .expect("api"),
            Tagged::Api {
                api_id: "a1b2c3d4e5".into()
            }
        );
        let stage = parse(
            "resource_arn",
            "arn:aws-cn:apigateway:cn-north-1::/apis/a1/stages/$default",
        )
        .expect("stage");
        assert_eq!(
            stage,
            Tagged::Stage {
                api_id: "a1".into(),
                stage_name: "$default".into()
            }
        );
        let domain = parse("resource_arn", "/domainnames/API.Example.com").expect("domain");
        assert_eq!(
            domain,
            Tagged::DomainName {
                domain_name: "api.example.com".into()
            }
        );
        assert_eq!(
            domain.arn("us-east-1"),
            "arn:aws:apigateway:us-east-1::/domainnames/api.example.com"
        );
        assert_eq!(stage.path(), "/apis/a1/stages/$default");
    }

    #[test]
    fn refuses_other_resources_and_malformed_arns() {
        for bad in [
            "",
            "apis/a1",
            "arn:aws:apigateway:us-east-1:123456789012:/apis/a1",
            "arn:aws:lambda:us-east-1::/apis/a1",
            "arn:aws:apigateway:::/apis/a1",
            "arn:aws:apigateway:us-east-1::/apis/a1/routes/r1",
            "arn:aws:apigateway:us-east-1::/domainnames/d.com/apimappings/m1",
            "arn:aws:apigateway:us-east-1::/restapis/a1",
            "arn:aws:apigateway:us-east-1::/apis/",
            "/apis//stages/x",
        ] {
            let e = parse("resource_arn", bad).expect_err(bad);
            assert_eq!(e.reason(), "INVALID_RESOURCE_ARN", "{bad}");
        }
    }
}
