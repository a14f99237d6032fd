//! CreateStage, GetStages, GetStage, UpdateStage, DeleteStage: the members CreateStage and
//! UpdateStage read from the body (the reads and the delete have none).

use serde_json::json;

use super::or_empty;
use crate::pb::{CreateStageRequest, UpdateStageRequest};
use crate::rest::error::AwsError;
use crate::rest::input::Body;

/// CreateStage's members into `msg`.
pub(super) fn create(msg: &mut CreateStageRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.stage_name = or_empty(b.string("stageName")?);
    msg.description = or_empty(b.string("description")?);
    msg.tags = b.string_map("tags")?.unwrap_or_default();
    b.only("autoDeploy", json!(false))
}

/// UpdateStage's members into `msg`: present ones are set, absent ones left unchanged.
pub(super) fn update(msg: &mut UpdateStageRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.description = b.string("description")?;
    b.only("autoDeploy", json!(false))
}
