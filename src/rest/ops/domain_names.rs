//! CreateDomainName, GetDomainNames, GetDomainName, UpdateDomainName, DeleteDomainName.

use serde_json::json;

use super::{Cx, Paging, Reply, not_one_of, read_revision};
use crate::pb::registry_server::Registry;
use crate::pb::{
    CreateDomainNameRequest, DeleteDomainNameRequest, DomainNameConfiguration,
    GetDomainNameRequest, GetDomainNamesRequest, UpdateDomainNameRequest,
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

pub(super) async fn create(cx: &Cx, mut b: Body) -> Result<Reply, AwsError> {
    let msg = CreateDomainNameRequest {
        domain_name: b.string("domainName")?.unwrap_or_default(),
        domain_name_configurations: configurations("CreateDomainName", &mut b)?,
        tags: b.string_map("tags")?.unwrap_or_default(),
        ..Default::default()
    };
    b.only("routingMode", json!("API_MAPPING_ONLY"))?;
    b.finish()?;
    let d = cx
        .svc
        .create_domain_name(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::created(
        shapes::domain_name(&d, &cx.region),
        d.mod_revision,
    ))
}

pub(super) async fn get(cx: &Cx, domain_name: String) -> Result<Reply, AwsError> {
    let msg = GetDomainNameRequest {
        domain_name,
        ..Default::default()
    };
    let r = cx.svc.get_domain_name(cx.request(msg)).await?;
    Ok(Reply::ok(
        shapes::domain_name(r.get_ref(), &cx.region),
        read_revision(&r),
    ))
}

pub(super) async fn list(cx: &Cx, p: Paging) -> Result<Reply, AwsError> {
    let msg = GetDomainNamesRequest {
        max_results: p.max_results,
        next_token: p.next_token,
        ..Default::default()
    };
    let r = cx.svc.get_domain_names(cx.request(msg)).await?.into_inner();
    let items = r
        .items
        .iter()
        .map(|d| shapes::domain_name(d, &cx.region))
        .collect();
    Ok(Reply::ok(shapes::page(items, &r.next_token), r.revision))
}

pub(super) async fn update(cx: &Cx, domain_name: String, mut b: Body) -> Result<Reply, AwsError> {
    let msg = UpdateDomainNameRequest {
        domain_name,
        domain_name_configurations: configurations("UpdateDomainName", &mut b)?,
        ..Default::default()
    };
    b.only("routingMode", json!("API_MAPPING_ONLY"))?;
    b.finish()?;
    let d = cx
        .svc
        .update_domain_name(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::ok(
        shapes::domain_name(&d, &cx.region),
        d.mod_revision,
    ))
}

pub(super) async fn delete(cx: &Cx, domain_name: String) -> Result<Reply, AwsError> {
    let msg = DeleteDomainNameRequest {
        domain_name,
        ..Default::default()
    };
    let r = cx
        .svc
        .delete_domain_name(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::deleted(r.revision))
}
