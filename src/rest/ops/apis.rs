//! CreateApi, GetApis, GetApi, UpdateApi, DeleteApi.

use serde_json::json;

use super::{Cx, Paging, Reply, not_one_of, or_empty, read_revision};
use crate::pb::registry_server::Registry;
use crate::pb::{
    CreateApiRequest, DeleteApiRequest, GetApiRequest, GetApisRequest, ProtocolType,
    UpdateApiRequest,
};
use crate::rest::error::AwsError;
use crate::rest::input::Body;
use crate::rest::shapes;

/// Members of CreateApi/UpdateApi that mapreg accepts only at the behaviour it has.
fn defaults(b: &mut Body) -> Result<(), AwsError> {
    b.only("disableSchemaValidation", json!(false))?;
    b.only("disableExecuteApiEndpoint", json!(false))?;
    b.only("ipAddressType", json!("ipv4"))
}

pub(super) async fn create(cx: &Cx, mut b: Body) -> Result<Reply, AwsError> {
    let name = or_empty(b.string("name")?);
    let protocol = match b.string("protocolType")? {
        None => ProtocolType::Unspecified,
        Some(p) => shapes::protocol_type(&p).ok_or_else(|| {
            not_one_of(
                "CreateApi",
                "protocolType",
                "WEBSOCKET or HTTP (or REST)",
                &p,
            )
        })?,
    };
    let msg = CreateApiRequest {
        name,
        protocol_type: protocol as i32,
        description: or_empty(b.string("description")?),
        tags: b.string_map("tags")?.unwrap_or_default(),
        route_selection_expression: or_empty(b.string("routeSelectionExpression")?),
        api_key_selection_expression: or_empty(b.string("apiKeySelectionExpression")?),
        ..Default::default()
    };
    defaults(&mut b)?;
    b.finish()?;
    let api = cx.svc.create_api(cx.request(msg)).await?.into_inner();
    Ok(Reply::created(shapes::api(&api), api.mod_revision))
}

pub(super) async fn get(cx: &Cx, api_id: String) -> Result<Reply, AwsError> {
    let msg = GetApiRequest {
        api_id,
        ..Default::default()
    };
    let r = cx.svc.get_api(cx.request(msg)).await?;
    Ok(Reply::ok(shapes::api(r.get_ref()), read_revision(&r)))
}

pub(super) async fn list(cx: &Cx, p: Paging) -> Result<Reply, AwsError> {
    let msg = GetApisRequest {
        max_results: p.max_results,
        next_token: p.next_token,
        ..Default::default()
    };
    let r = cx.svc.get_apis(cx.request(msg)).await?.into_inner();
    let items = r.items.iter().map(shapes::api).collect();
    Ok(Reply::ok(shapes::page(items, &r.next_token), r.revision))
}

pub(super) async fn update(cx: &Cx, api_id: String, mut b: Body) -> Result<Reply, AwsError> {
    let msg = UpdateApiRequest {
        api_id,
        name: b.string("name")?,
        description: b.string("description")?,
        route_selection_expression: b.string("routeSelectionExpression")?,
        api_key_selection_expression: b.string("apiKeySelectionExpression")?,
        ..Default::default()
    };
    defaults(&mut b)?;
    b.finish()?;
    let api = cx.svc.update_api(cx.request(msg)).await?.into_inner();
    Ok(Reply::ok(shapes::api(&api), api.mod_revision))
}

pub(super) async fn delete(cx: &Cx, api_id: String) -> Result<Reply, AwsError> {
    let msg = DeleteApiRequest {
        api_id,
        ..Default::default()
    };
    let r = cx.svc.delete_api(cx.request(msg)).await?.into_inner();
    Ok(Reply::deleted(r.revision))
}
