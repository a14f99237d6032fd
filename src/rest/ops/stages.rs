//! CreateStage, GetStages, GetStage, UpdateStage, DeleteStage.

use serde_json::json;

use super::{Cx, Paging, Reply, or_empty, read_revision};
use crate::pb::registry_server::Registry;
use crate::pb::{
    CreateStageRequest, DeleteStageRequest, GetStageRequest, GetStagesRequest, UpdateStageRequest,
};
use crate::rest::error::AwsError;
use crate::rest::input::Body;
use crate::rest::shapes;

pub(super) async fn create(cx: &Cx, api_id: String, mut b: Body) -> Result<Reply, AwsError> {
    let msg = CreateStageRequest {
        api_id,
        stage_name: or_empty(b.string("stageName")?),
        description: or_empty(b.string("description")?),
        tags: b.string_map("tags")?.unwrap_or_default(),
        ..Default::default()
    };
    b.only("autoDeploy", json!(false))?;
    b.finish()?;
    let stage = cx.svc.create_stage(cx.request(msg)).await?.into_inner();
    Ok(Reply::created(shapes::stage(&stage), stage.mod_revision))
}

pub(super) async fn get(cx: &Cx, api_id: String, stage_name: String) -> Result<Reply, AwsError> {
    let msg = GetStageRequest {
        api_id,
        stage_name,
        ..Default::default()
    };
    let r = cx.svc.get_stage(cx.request(msg)).await?;
    Ok(Reply::ok(shapes::stage(r.get_ref()), read_revision(&r)))
}

pub(super) async fn list(cx: &Cx, api_id: String, p: Paging) -> Result<Reply, AwsError> {
    let msg = GetStagesRequest {
        api_id,
        max_results: p.max_results,
        next_token: p.next_token,
        ..Default::default()
    };
    let r = cx.svc.get_stages(cx.request(msg)).await?.into_inner();
    let items = r.items.iter().map(shapes::stage).collect();
    Ok(Reply::ok(shapes::page(items, &r.next_token), r.revision))
}

pub(super) async fn update(
    cx: &Cx,
    api_id: String,
    stage_name: String,
    mut b: Body,
) -> Result<Reply, AwsError> {
    let msg = UpdateStageRequest {
        api_id,
        stage_name,
        description: b.string("description")?,
        ..Default::default()
    };
    b.only("autoDeploy", json!(false))?;
    b.finish()?;
    let stage = cx.svc.update_stage(cx.request(msg)).await?.into_inner();
    Ok(Reply::ok(shapes::stage(&stage), stage.mod_revision))
}

pub(super) async fn delete(cx: &Cx, api_id: String, stage_name: String) -> Result<Reply, AwsError> {
    let msg = DeleteStageRequest {
        api_id,
        stage_name,
        ..Default::default()
    };
    let r = cx.svc.delete_stage(cx.request(msg)).await?.into_inner();
    Ok(Reply::deleted(r.revision))
}
