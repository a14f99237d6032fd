//! GetTags, TagResource, UntagResource on `/v2/tags/{resource-arn}`.
//!
//! GetTags reads the record with its own Get RPC; TagResource and UntagResource are the
//! Registry's RPCs of the same names (one write, one revision, one PUT event).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Cx, Reply, call};
use crate::domain::arn::{self, Tagged};
use crate::pb::{GetApiRequest, GetDomainNameRequest, GetStageRequest, TagResourceRequest};
use crate::rest::error::AwsError;
use crate::rest::input::Body;

/// GetTags' answer: the record's tags.
fn tags(tags: &HashMap<String, String>) -> Value {
    json!({ "tags": tags })
}

/// GetTags: the tags of the API, stage or domain name `resource_arn` names.
pub(super) async fn get(cx: &Cx, resource_arn: String) -> Result<Reply, AwsError> {
    match arn::parse("resource_arn", &resource_arn)? {
        Tagged::Api { api_id } => {
            call::read(cx, request!(GetApiRequest, api_id), |a| tags(&a.tags)).await
        }
        Tagged::Stage { api_id, stage_name } => {
            let msg = request!(GetStageRequest, api_id, stage_name);
            call::read(cx, msg, |s| tags(&s.tags)).await
        }
        Tagged::DomainName { domain_name } => {
            let msg = request!(GetDomainNameRequest, domain_name);
            call::read(cx, msg, |d| tags(&d.tags)).await
        }
    }
}

/// TagResource's members into `msg`: `tags` is required.
pub(super) fn tag(msg: &mut TagResourceRequest, b: &mut Body) -> Result<(), AwsError> {
    let Some(tags) = b.string_map("tags")? else {
        return Err(AwsError::bad_request("TagResource: tags is required"));
    };
    msg.tags = tags;
    Ok(())
}

/// TagResource's answer: an empty object.
pub(super) fn tagged<T>(_: &T) -> Value {
    json!({})
}
