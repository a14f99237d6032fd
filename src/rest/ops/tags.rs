//! GetTags, TagResource, UntagResource on `/v2/tags/{resource-arn}`.
//!
//! GetTags reads the record with its own Get RPC; TagResource and UntagResource are the
//! Registry's RPCs of the same names (one write, one revision, one PUT event).

use serde_json::json;

use super::{Cx, Reply, read_revision};
use crate::domain::arn::{self, Tagged};
use crate::pb::registry_server::Registry;
use crate::pb::{
    GetApiRequest, GetDomainNameRequest, GetStageRequest, TagResourceRequest, UntagResourceRequest,
};
use crate::rest::error::AwsError;
use crate::rest::input::Body;

pub(super) async fn get(cx: &Cx, resource_arn: String) -> Result<Reply, AwsError> {
    let (tags, revision) = match arn::parse("resource_arn", &resource_arn)? {
        Tagged::Api { api_id } => {
            let msg = GetApiRequest {
                api_id,
                ..Default::default()
            };
            let r = cx.svc.get_api(cx.request(msg)).await?;
            (r.get_ref().tags.clone(), read_revision(&r))
        }
        Tagged::Stage { api_id, stage_name } => {
            let msg = GetStageRequest {
                api_id,
                stage_name,
                ..Default::default()
            };
            let r = cx.svc.get_stage(cx.request(msg)).await?;
            (r.get_ref().tags.clone(), read_revision(&r))
        }
        Tagged::DomainName { domain_name } => {
            let msg = GetDomainNameRequest {
                domain_name,
                ..Default::default()
            };
            let r = cx.svc.get_domain_name(cx.request(msg)).await?;
            (r.get_ref().tags.clone(), read_revision(&r))
        }
    };
    Ok(Reply::ok(json!({ "tags": tags }), revision))
}

pub(super) async fn tag(cx: &Cx, resource_arn: String, mut b: Body) -> Result<Reply, AwsError> {
    let Some(tags) = b.string_map("tags")? else {
        return Err(AwsError::bad_request("TagResource: tags is required"));
    };
    b.finish()?;
    let msg = TagResourceRequest {
        resource_arn,
        tags,
        ..Default::default()
    };
    let r = cx.svc.tag_resource(cx.request(msg)).await?.into_inner();
    Ok(Reply::created(json!({}), r.revision))
}

pub(super) async fn untag(
    cx: &Cx,
    resource_arn: String,
    tag_keys: Vec<String>,
) -> Result<Reply, AwsError> {
    let msg = UntagResourceRequest {
        resource_arn,
        tag_keys,
        ..Default::default()
    };
    let r = cx.svc.untag_resource(cx.request(msg)).await?.into_inner();
    Ok(Reply::deleted(r.revision))
}
