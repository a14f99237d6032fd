//! CreateDomainName, GetDomainNames, GetDomainName, UpdateDomainName, DeleteDomainName: the
//! members CreateDomainName and UpdateDomainName read from the body, and the response shape.

use serde_json::{Value, json};

use super::{Cx, not_one_of};
use crate::pb::{
    CreateDomainNameRequest, DomainName, DomainNameConfiguration, UpdateDomainNameRequest,
};
use crate::rest::error::AwsError;
use crate::rest::input::Body;
use crate::rest::shapes;

/// `domainNameConfigurations`, each as the gRPC message (unset enums stay unspecified, so
/// create applies the defaults and update leaves them unchanged).
fn configurations(op: &str, b: &mut Body) -> Result<Vec<DomainNameConfiguration>, AwsError> {
    let Some(items) = b.objects("domainNameConfigurations")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for mut c in items {
        let mut cfg = DomainNameConfiguration::default();
        if let Some(e) = c.string("endpointType")? {
            cfg.endpoint_type = shapes::endpoint_type(&e)
                .ok_or_else(|| not_one_of(op, "endpointType", "REGIONAL or EDGE", &e))?
                as i32;
        }
        if let Some(p) = c.string("securityPolicy")? {
            cfg.security_policy = shapes::security_policy(&p)
                .ok_or_else(|| not_one_of(op, "securityPolicy", "TLS_1_2 or TLS_1_0", &p))?
                as i32;
        }
        cfg.certificate_arn = c.string("certificateArn")?.unwrap_or_default();
        c.only("ipAddressType", json!("ipv4"))?;
        c.finish()?;
        out.push(cfg);
    }
    Ok(out)
}

/// The response shape of a domain name, its ARN in the request's region.
pub(super) fn shape(cx: &Cx) -> impl Fn(&DomainName) -> Value + Send + '_ {
    |d| shapes::domain_name(d, &cx.region)
}

/// CreateDomainName's members into `msg`.
pub(super) fn create(msg: &mut CreateDomainNameRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.domain_name = b.string("domainName")?.unwrap_or_default();
    msg.domain_name_configurations = configurations("CreateDomainName", b)?;
    msg.tags = b.string_map("tags")?.unwrap_or_default();
    b.only("routingMode", json!("API_MAPPING_ONLY"))
}

/// UpdateDomainName's members into `msg`.
pub(super) fn update(msg: &mut UpdateDomainNameRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.domain_name_configurations = configurations("UpdateDomainName", b)?;
    b.only("routingMode", json!("API_MAPPING_ONLY"))
}
