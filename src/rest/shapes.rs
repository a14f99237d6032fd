//! mapreg's records as API Gateway v2's response shapes (`Api`, `Stage`, `DomainName`,
//! `ApiMapping` of the service model), camelCase, timestamps ISO 8601.
//!
//! Members AWS sends that mapreg has no record of are computed so clients keep working:
//! `apiEndpoint` (`https://ID.execute-api.mapreg.internal`, `wss://` for WebSocket APIs),
//! `disableExecuteApiEndpoint` (false), `domainNameArn` (in the request's region), `routingMode`
//! (`API_MAPPING_ONLY`, the only routing mapreg does). Empty optional strings are left out, as
//! AWS leaves out unset members; `apiMappingKey` is always sent (`""` for the root mapping).

use serde_json::{Value, json};

use crate::domain::arn;
use crate::pb::{
    Api, ApiMapping, DomainName, DomainNameConfiguration, EndpointType, ProtocolType,
    SecurityPolicy, Stage,
};

use super::time;

/// The suffix of computed API endpoints.
pub const ENDPOINT_SUFFIX: &str = "execute-api.mapreg.internal";

fn timestamp(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => Value::String(time::iso8601(t.seconds)),
        None => Value::Null,
    }
}

/// Adds `key: value` to `o` unless `value` is empty.
fn non_empty(o: &mut Value, key: &str, value: &str) {
    if !value.is_empty() {
        o[key] = Value::String(value.to_string());
    }
}

/// The model's name of a protocol type.
pub fn protocol_name(p: i32) -> &'static str {
    match ProtocolType::try_from(p) {
        Ok(ProtocolType::Websocket) => "WEBSOCKET",
        Ok(ProtocolType::Http) => "HTTP",
        Ok(ProtocolType::Rest) => "REST",
        _ => "UNSPECIFIED",
    }
}

/// The protocol type a model name stands for.
pub fn protocol_type(name: &str) -> Option<ProtocolType> {
    match name {
        "WEBSOCKET" => Some(ProtocolType::Websocket),
        "HTTP" => Some(ProtocolType::Http),
        "REST" => Some(ProtocolType::Rest),
        _ => None,
    }
}

/// The model's name of an endpoint type (REGIONAL when unspecified).
pub fn endpoint_name(e: i32) -> &'static str {
    match EndpointType::try_from(e) {
        Ok(EndpointType::Edge) => "EDGE",
        _ => "REGIONAL",
    }
}

/// The endpoint type a model name stands for.
pub fn endpoint_type(name: &str) -> Option<EndpointType> {
    match name {
        "REGIONAL" => Some(EndpointType::Regional),
        "EDGE" => Some(EndpointType::Edge),
        _ => None,
    }
}

/// The model's name of a security policy (TLS_1_2 when unspecified).
pub fn policy_name(p: i32) -> &'static str {
    match SecurityPolicy::try_from(p) {
        Ok(SecurityPolicy::Tls10) => "TLS_1_0",
        _ => "TLS_1_2",
    }
}

/// The security policy a model name stands for.
pub fn security_policy(name: &str) -> Option<SecurityPolicy> {
    match name {
        "TLS_1_2" => Some(SecurityPolicy::Tls12),
        "TLS_1_0" => Some(SecurityPolicy::Tls10),
        _ => None,
    }
}

/// An `Api`.
pub fn api(a: &Api) -> Value {
    let scheme = match ProtocolType::try_from(a.protocol_type) {
        Ok(ProtocolType::Websocket) => "wss",
        _ => "https",
    };
    let mut o = json!({
        "apiId": a.api_id,
        "name": a.name,
        "protocolType": protocol_name(a.protocol_type),
        "apiEndpoint": format!("{scheme}://{}.{ENDPOINT_SUFFIX}", a.api_id),
        "createdDate": timestamp(&a.created_date),
        "disableExecuteApiEndpoint": false,
        "tags": a.tags,
    });
    non_empty(&mut o, "description", &a.description);
    non_empty(
        &mut o,
        "routeSelectionExpression",
        &a.route_selection_expression,
    );
    non_empty(
        &mut o,
        "apiKeySelectionExpression",
        &a.api_key_selection_expression,
    );
    o
}

/// A `Stage`.
pub fn stage(s: &Stage) -> Value {
    let mut o = json!({
        "stageName": s.stage_name,
        "createdDate": timestamp(&s.created_date),
        "lastUpdatedDate": timestamp(&s.last_updated_date),
        "tags": s.tags,
    });
    non_empty(&mut o, "description", &s.description);
    o
}

fn configuration(c: &DomainNameConfiguration) -> Value {
    // mapreg domains are available as soon as they exist (SPEC.md section 1).
    let status = "AVAILABLE";
    let mut o = json!({
        "apiGatewayDomainName": c.api_gateway_domain_name,
        "endpointType": endpoint_name(c.endpoint_type),
        "securityPolicy": policy_name(c.security_policy),
        "domainNameStatus": status,
    });
    non_empty(&mut o, "certificateArn", &c.certificate_arn);
    o
}

/// A `DomainName`, its ARN in `region`.
pub fn domain_name(d: &DomainName, region: &str) -> Value {
    json!({
        "domainName": d.domain_name,
        "domainNameArn": arn::arn(region, &format!("/domainnames/{}", d.domain_name)),
        "apiMappingSelectionExpression": d.api_mapping_selection_expression,
        "domainNameConfigurations": d.domain_name_configurations.iter().map(configuration).collect::<Vec<_>>(),
        "routingMode": "API_MAPPING_ONLY",
        "tags": d.tags,
    })
}

/// An `ApiMapping`.
pub fn api_mapping(m: &ApiMapping) -> Value {
    json!({
        "apiMappingId": m.api_mapping_id,
        "apiMappingKey": m.api_mapping_key,
        "apiId": m.api_id,
        "stage": m.stage,
    })
}

/// A list page: `items` and, unless this is the last page, `nextToken`.
pub fn page(items: Vec<Value>, next_token: &str) -> Value {
    let mut o = json!({ "items": items });
    non_empty(&mut o, "nextToken", next_token);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_use_the_model_names() {
        let a = Api {
            api_id: "a1b2c3d4e5".into(),
            name: "n".into(),
            protocol_type: ProtocolType::Websocket as i32,
            created_date: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            route_selection_expression: "$request.body.action".into(),
            ..Default::default()
        };
        let j = api(&a);
        assert_eq!(
            j["apiEndpoint"],
            "wss://a1b2c3d4e5.execute-api.mapreg.internal"
        );
        assert_eq!(j["protocolType"], "WEBSOCKET");
        assert_eq!(j["createdDate"], "2023-11-14T22:13:20Z");
        assert_eq!(j["routeSelectionExpression"], "$request.body.action");
        assert!(j.get("description").is_none());
        let d = DomainName {
            domain_name: "api.example.com".into(),
            domain_name_configurations: vec![DomainNameConfiguration {
                endpoint_type: EndpointType::Edge as i32,
                security_policy: SecurityPolicy::Tls10 as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = domain_name(&d, "eu-west-1");
        assert_eq!(
            j["domainNameArn"],
            "arn:aws:apigateway:eu-west-1::/domainnames/api.example.com"
        );
        assert_eq!(j["domainNameConfigurations"][0]["endpointType"], "EDGE");
        assert_eq!(
            j["domainNameConfigurations"][0]["securityPolicy"],
            "TLS_1_0"
        );
        let root = api_mapping(&ApiMapping::default());
        assert_eq!(root["apiMappingKey"], "");
        assert!(page(vec![], "").get("nextToken").is_none());
    }
}
