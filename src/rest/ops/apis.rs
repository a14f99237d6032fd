//! CreateApi, GetApis, GetApi, UpdateApi, DeleteApi: the members CreateApi and UpdateApi read
//! from the body (the reads and the delete have none).

use serde_json::json;

use super::{not_one_of, or_empty};
use crate::pb::{CreateApiRequest, ProtocolType, UpdateApiRequest};
use crate::rest::error::AwsError;
use crate::rest::input::Body;
use crate::rest::shapes;

/// Members of CreateApi/UpdateApi that mapreg accepts only at the behaviour it has.
fn defaults(b: &mut Body) -> Result<(), AwsError> {
    b.only("disableSchemaValidation", json!(false))?;
    b.only("disableExecuteApiEndpoint", json!(false))?;
    b.only("ipAddressType", json!("ipv4"))
}

/// CreateApi's members into `msg`.
pub(super) fn create(msg: &mut CreateApiRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.name = or_empty(b.string("name")?);
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
    msg.protocol_type = protocol as i32;
    msg.description = or_empty(b.string("description")?);
    msg.tags = b.string_map("tags")?.unwrap_or_default();
    msg.route_selection_expression = or_empty(b.string("routeSelectionExpression")?);
    msg.api_key_selection_expression = or_empty(b.string("apiKeySelectionExpression")?);
    defaults(b)
}

/// UpdateApi's members into `msg`: present ones are set, absent ones left unchanged.
pub(super) fn update(msg: &mut UpdateApiRequest, b: &mut Body) -> Result<(), AwsError> {
    msg.name = b.string("name")?;
    msg.description = b.string("description")?;
    msg.route_selection_expression = b.string("routeSelectionExpression")?;
    msg.api_key_selection_expression = b.string("apiKeySelectionExpression")?;
    defaults(b)
}
