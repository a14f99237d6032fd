//! CreateApiMapping, GetApiMappings, GetApiMapping, UpdateApiMapping, DeleteApiMapping.

use super::{Cx, Paging, Reply, or_empty, read_revision};
use crate::pb::registry_server::Registry;
use crate::pb::{
    CreateApiMappingRequest, DeleteApiMappingRequest, GetApiMappingRequest, GetApiMappingsRequest,
    UpdateApiMappingRequest,
};
use crate::rest::error::AwsError;
use crate::rest::input::Body;
use crate::rest::shapes;

pub(super) async fn create(cx: &Cx, domain_name: String, mut b: Body) -> Result<Reply, AwsError> {
    let msg = CreateApiMappingRequest {
        domain_name,
        // Absent: the root mapping, as AWS.
        api_mapping_key: or_empty(b.string("apiMappingKey")?),
        api_id: or_empty(b.string("apiId")?),
        stage: or_empty(b.string("stage")?),
        ..Default::default()
    };
    b.finish()?;
    let m = cx
        .svc
        .create_api_mapping(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::created(shapes::api_mapping(&m), m.mod_revision))
}

pub(super) async fn get(
    cx: &Cx,
    domain_name: String,
    api_mapping_id: String,
) -> Result<Reply, AwsError> {
    let msg = GetApiMappingRequest {
        domain_name,
        api_mapping_id,
        ..Default::default()
    };
    let r = cx.svc.get_api_mapping(cx.request(msg)).await?;
    Ok(Reply::ok(
        shapes::api_mapping(r.get_ref()),
        read_revision(&r),
    ))
}

pub(super) async fn list(cx: &Cx, domain_name: String, p: Paging) -> Result<Reply, AwsError> {
    let msg = GetApiMappingsRequest {
        domain_name,
        max_results: p.max_results,
        next_token: p.next_token,
        ..Default::default()
    };
    let r = cx.svc.get_api_mappings(cx.request(msg)).await?.into_inner();
    let items = r.items.iter().map(shapes::api_mapping).collect();
    Ok(Reply::ok(shapes::page(items, &r.next_token), r.revision))
}

pub(super) async fn update(
    cx: &Cx,
    domain_name: String,
    api_mapping_id: String,
    mut b: Body,
) -> Result<Reply, AwsError> {
    let msg = UpdateApiMappingRequest {
        domain_name,
        api_mapping_id,
        // Present, even "": set (an empty key makes the mapping the root); absent: unchanged.
        api_mapping_key: b.string("apiMappingKey")?,
        api_id: b.string("apiId")?,
        stage: b.string("stage")?,
        ..Default::default()
    };
    b.finish()?;
    let m = cx
        .svc
        .update_api_mapping(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::ok(shapes::api_mapping(&m), m.mod_revision))
}

pub(super) async fn delete(
    cx: &Cx,
    domain_name: String,
    api_mapping_id: String,
) -> Result<Reply, AwsError> {
    let msg = DeleteApiMappingRequest {
        domain_name,
        api_mapping_id,
        ..Default::default()
    };
    let r = cx
        .svc
        .delete_api_mapping(cx.request(msg))
        .await?
        .into_inner();
    Ok(Reply::deleted(r.revision))
}
