//! Which operation of the service model a method and path name.
//!
//! The URIs and methods are the model's (`POST /v2/domainnames/{domainName}/apimappings` is
//! CreateApiMapping). Path parameters arrive percent-encoded (a tag ARN is one segment with its
//! `/` as `%2F`) and are decoded here. Paths of API Gateway v2 resources mapreg does not hold
//! (routes, integrations, authorizers, deployments, models, VPC links, portals, routing rules,
//! stage settings, imports) are [`Route::Unsupported`]; any other path, or a method a path does
//! not have, is [`Route::Unknown`].

use http::Method;

// One list makes both the enum and the names, so a name cannot drift from its variant.
macro_rules! ops {
    ($($op:ident $({ $($field:ident),* })?),* $(,)?) => {
        /// An operation and its path parameters (decoded).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Op {
            $($op $({ $($field: String),* })?),*
        }

        impl Op {
            /// The operation's name in the service model.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Op::$op { .. } => stringify!($op)),*
                }
            }
        }
    };
}

ops! {
    CreateApi,
    GetApis,
    GetApi { api_id },
    UpdateApi { api_id },
    DeleteApi { api_id },
    CreateStage { api_id },
    GetStages { api_id },
    GetStage { api_id, stage_name },
    UpdateStage { api_id, stage_name },
    DeleteStage { api_id, stage_name },
    CreateDomainName,
    GetDomainNames,
    GetDomainName { domain_name },
    UpdateDomainName { domain_name },
    DeleteDomainName { domain_name },
    CreateApiMapping { domain_name },
    GetApiMappings { domain_name },
    GetApiMapping { domain_name, api_mapping_id },
    UpdateApiMapping { domain_name, api_mapping_id },
    DeleteApiMapping { domain_name, api_mapping_id },
    GetTags { resource_arn },
    TagResource { resource_arn },
    UntagResource { resource_arn },
}

/// What a method and path name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// An operation mapreg serves.
    Op(Op),
    /// A part of API Gateway v2 mapreg does not hold; the name of that part (`routes`).
    Unsupported(String),
    /// No operation of the model.
    Unknown,
}

/// Sub-resources of an API that API Gateway v2 has and mapreg does not hold.
const API_PARTS: &[&str] = &[
    "routes",
    "integrations",
    "authorizers",
    "deployments",
    "models",
    "cors",
    "exports",
];
/// Top-level collections mapreg does not hold.
const TOP_PARTS: &[&str] = &["vpclinks", "portals", "portalproducts"];

/// The route of `method` on `raw_path` (as received, percent-encoded).
pub fn route(method: &Method, raw_path: &str) -> Route {
    let Some(rest) = raw_path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    let segs: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.clone();
    let s = |v: &str| v.to_string();
    let op = match (m, segs.as_slice()) {
        (Method::POST, ["apis"]) => Op::CreateApi,
        (Method::GET, ["apis"]) => Op::GetApis,
        (Method::PUT, ["apis"] | ["apis", _]) => return Route::Unsupported("API imports".into()),
        (Method::GET, ["apis", id]) => Op::GetApi { api_id: s(id) },
        (Method::PATCH, ["apis", id]) => Op::UpdateApi { api_id: s(id) },
        (Method::DELETE, ["apis", id]) => Op::DeleteApi { api_id: s(id) },
        (Method::POST, ["apis", id, "stages"]) => Op::CreateStage { api_id: s(id) },
        (Method::GET, ["apis", id, "stages"]) => Op::GetStages { api_id: s(id) },
        (method, ["apis", id, "stages", stage]) => {
            let (api_id, stage_name) = (s(id), s(stage));
            match method {
                Method::GET => Op::GetStage { api_id, stage_name },
                Method::PATCH => Op::UpdateStage { api_id, stage_name },
                Method::DELETE => Op::DeleteStage { api_id, stage_name },
                _ => return Route::Unknown,
            }
        }
        (_, ["apis", _, "stages", _, part, ..]) => {
            return Route::Unsupported(format!("stage {part}"));
        }
        (_, ["apis", _, part, ..]) if API_PARTS.contains(part) => {
            return Route::Unsupported((*part).to_string());
        }
        (Method::POST, ["domainnames"]) => Op::CreateDomainName,
        (Method::GET, ["domainnames"]) => Op::GetDomainNames,
        (Method::GET, ["domainnames", d]) => Op::GetDomainName { domain_name: s(d) },
        (Method::PATCH, ["domainnames", d]) => Op::UpdateDomainName { domain_name: s(d) },
        (Method::DELETE, ["domainnames", d]) => Op::DeleteDomainName { domain_name: s(d) },
        (Method::POST, ["domainnames", d, "apimappings"]) => {
            Op::CreateApiMapping { domain_name: s(d) }
        }
        (Method::GET, ["domainnames", d, "apimappings"]) => {
            Op::GetApiMappings { domain_name: s(d) }
        }
        (method, ["domainnames", d, "apimappings", id]) => {
            let (domain_name, api_mapping_id) = (s(d), s(id));
            match method {
                Method::GET => Op::GetApiMapping {
                    domain_name,
                    api_mapping_id,
                },
                Method::PATCH => Op::UpdateApiMapping {
                    domain_name,
                    api_mapping_id,
                },
                Method::DELETE => Op::DeleteApiMapping {
                    domain_name,
                    api_mapping_id,
                },
                _ => return Route::Unknown,
            }
        }
        (_, ["domainnames", _, "routingrules", ..]) => {
            return Route::Unsupported("routing rules".into());
        }
        (method, ["tags", arn]) => {
            let resource_arn = s(arn);
            match method {
                Method::GET => Op::GetTags { resource_arn },
                Method::POST => Op::TagResource { resource_arn },
                Method::DELETE => Op::UntagResource { resource_arn },
                _ => return Route::Unknown,
            }
        }
        (_, [part, ..]) if TOP_PARTS.contains(part) => {
            return Route::Unsupported((*part).to_string());
        }
        _ => return Route::Unknown,
    };
    Route::Op(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_route_to_their_operations() {
        let op = |m: Method, p: &str| match route(&m, p) {
            Route::Op(op) => op,
            other => panic!("{m} {p}: {other:?}"),
        };
        assert_eq!(op(Method::POST, "/v2/apis"), Op::CreateApi);
        assert_eq!(
            op(Method::DELETE, "/v2/apis/a1/stages/%24default"),
            Op::DeleteStage {
                api_id: "a1".into(),
                stage_name: "$default".into()
            }
        );
        assert_eq!(
            op(
                Method::PATCH,
                "/v2/domainnames/api.example.com/apimappings/m1"
            ),
            Op::UpdateApiMapping {
                domain_name: "api.example.com".into(),
                api_mapping_id: "m1".into()
            }
        );
        assert_eq!(
            op(
                Method::DELETE,
                "/v2/tags/arn%3Aaws%3Aapigateway%3Aus-east-1%3A%3A%2Fapis%2Fa1"
            ),
            Op::UntagResource {
                resource_arn: "arn:aws:apigateway:us-east-1::/apis/a1".into()
            }
        );
        assert_eq!(op(Method::GET, "/v2/domainnames/"), Op::GetDomainNames);
    }

    #[test]
    fn other_parts_of_api_gateway_are_unsupported_and_the_rest_unknown() {
        for (m, p) in [
            (Method::POST, "/v2/apis/a1/routes"),
            (
                Method::GET,
                "/v2/apis/a1/integrations/i1/integrationresponses",
            ),
            (Method::DELETE, "/v2/apis/a1/stages/s/accesslogsettings"),
            (Method::PUT, "/v2/apis"),
            (Method::GET, "/v2/vpclinks"),
            (Method::PUT, "/v2/domainnames/d.com/routingrules/r1"),
        ] {
            assert!(matches!(route(&m, p), Route::Unsupported(_)), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/v2/nothing"),
            (Method::PUT, "/v2/domainnames/d.com"),
            (Method::POST, "/v2/apis/a1"),
            (Method::GET, "/v1/apis"),
            (Method::GET, "/v2"),
            (Method::PATCH, "/v2/tags/x"),
        ] {
            assert_eq!(route(&m, p), Route::Unknown, "{m} {p}");
        }
    }
}
