//! CreateApiMapping, GetApiMappings, GetApiMapping, UpdateApiMapping, DeleteApiMapping: the
//! members CreateApiMapping and UpdateApiMapping read from the body (the reads and the delete
//! have none).

use super::or_empty;
use crate::pb::{CreateApiMappingRequest, UpdateApiMappingRequest};
use crate::rest::error::AwsError;
use crate::rest::input::Body;

/// CreateApiMapping's members into `msg`.
pub(super) fn create(msg: &mut CreateApiMappingRequest, b: &mut Body) -> Result<(), AwsError> {
    // Absent: the root mapping, as AWS.
    msg.api_mapping_key = or_empty(b.string("apiMappingKey")?);
    msg.api_id = or_empty(b.string("apiId")?);
    msg.stage = or_empty(b.string("stage")?);
    Ok(())
}

/// UpdateApiMapping's members into `msg`.
pub(super) fn update(msg: &mut UpdateApiMappingRequest, b: &mut Body) -> Result<(), AwsError> {
    // Present, even "": set (an empty key makes the mapping the root); absent: unchanged.
    msg.api_mapping_key = b.string("apiMappingKey")?;
    msg.api_id = b.string("apiId")?;
    msg.stage = b.string("stage")?;
    Ok(())
}
