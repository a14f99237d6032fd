//! One function per operation: read the request's members, build the gRPC request, call the
//! Registry service's own handler (as the caller the signature authenticated), shape the answer.
//! One file per resource kind; [`run`] dispatches.
//!
//! Going through the gRPC handler means the REST edge cannot drift from gRPC: the same
//! validation, the same rules, the same writer (revisions, change feed), the same access
//! checks and log line per RPC.

mod api_mappings;
mod apis;
mod domain_names;
mod stages;
mod tags;

use http::StatusCode;
use serde_json::Value;
use tonic::metadata::MetadataValue;

use super::error::AwsError;
use super::input::{Body, Query};
use super::routes::Op;
use crate::api::registry::RegistryService;
use crate::auth::Caller;

/// What an operation runs with: the service, the authenticated caller, the request's region
/// (for ARNs) and request id.
pub(crate) struct Cx {
    pub(crate) svc: RegistryService,
    pub(crate) caller: Caller,
    pub(crate) region: String,
    pub(crate) request_id: String,
}

impl Cx {
    /// A gRPC request carrying `msg`, the caller (as the auth interceptor would put it) and the
    /// request id as `x-request-id` metadata.
    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(self.caller.clone());
        if let Ok(v) = MetadataValue::try_from(self.request_id.as_str()) {
            r.metadata_mut().insert("x-request-id", v);
        }
        r
    }
}

/// A successful answer: status, JSON body (none for 204) and the revision it reflects, if
/// known (sent as `x-mapreg-revision`).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Value>,
    pub(crate) revision: Option<u64>,
}

impl Reply {
    fn new(status: StatusCode, body: Option<Value>, revision: u64) -> Reply {
        Reply {
            status,
            body,
            revision: (revision > 0).then_some(revision),
        }
    }
    fn ok(body: Value, revision: u64) -> Reply {
        Reply::new(StatusCode::OK, Some(body), revision)
    }
    fn created(body: Value, revision: u64) -> Reply {
        Reply::new(StatusCode::CREATED, Some(body), revision)
    }
    fn deleted(revision: u64) -> Reply {
        Reply::new(StatusCode::NO_CONTENT, None, revision)
    }
}

/// The revision a read answered at (`mapreg-revision` metadata), or 0.
fn read_revision<T>(r: &tonic::Response<T>) -> u64 {
    r.metadata()
        .get("mapreg-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `maxResults` and `nextToken` of a list.
pub(crate) struct Paging {
    pub(crate) max_results: i32,
    pub(crate) next_token: String,
}

/// Runs `op` with its query string and body.
pub(crate) async fn run(
    cx: &Cx,
    op: Op,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Reply, AwsError> {
    let name = op.name();
    let mut q = Query::parse(name, raw_query);
    let lists = matches!(
        op,
        Op::GetApis | Op::GetStages { .. } | Op::GetDomainNames | Op::GetApiMappings { .. }
    );
    let paging = Paging {
        max_results: if lists { q.max_results()? } else { 0 },
        next_token: if lists {
            q.one("nextToken").unwrap_or_default()
        } else {
            String::new()
        },
    };
    let tag_keys = match op {
        Op::UntagResource { .. } => q.all("tagKeys"),
        _ => Vec::new(),
    };
    q.finish()?;
    let with_body = matches!(
        op,
        Op::CreateApi
            | Op::UpdateApi { .. }
            | Op::CreateStage { .. }
            | Op::UpdateStage { .. }
            | Op::CreateDomainName
            | Op::UpdateDomainName { .. }
            | Op::CreateApiMapping { .. }
            | Op::UpdateApiMapping { .. }
            | Op::TagResource { .. }
    );
    let b = Body::parse(name, body)?;
    if !with_body {
        // GET and DELETE take no members.
        b.finish()?;
        return run_bodiless(cx, op, paging, tag_keys).await;
    }
    match op {
        Op::CreateApi => apis::create(cx, b).await,
        Op::UpdateApi { api_id } => apis::update(cx, api_id, b).await,
        Op::CreateStage { api_id } => stages::create(cx, api_id, b).await,
        Op::UpdateStage { api_id, stage_name } => stages::update(cx, api_id, stage_name, b).await,
        Op::CreateDomainName => domain_names::create(cx, b).await,
        Op::UpdateDomainName { domain_name } => domain_names::update(cx, domain_name, b).await,
        Op::CreateApiMapping { domain_name } => api_mappings::create(cx, domain_name, b).await,
        Op::UpdateApiMapping {
            domain_name,
            api_mapping_id,
        } => api_mappings::update(cx, domain_name, api_mapping_id, b).await,
        Op::TagResource { resource_arn } => tags::tag(cx, resource_arn, b).await,
        other => Err(AwsError::bad_request(format!(
            "{}: takes no request body",
            other.name()
        ))),
    }
}

async fn run_bodiless(
    cx: &Cx,
    op: Op,
    paging: Paging,
    tag_keys: Vec<String>,
) -> Result<Reply, AwsError> {
    match op {
        Op::GetApis => apis::list(cx, paging).await,
        Op::GetApi { api_id } => apis::get(cx, api_id).await,
        Op::DeleteApi { api_id } => apis::delete(cx, api_id).await,
        Op::GetStages { api_id } => stages::list(cx, api_id, paging).await,
        Op::GetStage { api_id, stage_name } => stages::get(cx, api_id, stage_name).await,
        Op::DeleteStage { api_id, stage_name } => stages::delete(cx, api_id, stage_name).await,
        Op::GetDomainNames => domain_names::list(cx, paging).await,
        Op::GetDomainName { domain_name } => domain_names::get(cx, domain_name).await,
        Op::DeleteDomainName { domain_name } => domain_names::delete(cx, domain_name).await,
        Op::GetApiMappings { domain_name } => api_mappings::list(cx, domain_name, paging).await,
        Op::GetApiMapping {
            domain_name,
            api_mapping_id,
        } => api_mappings::get(cx, domain_name, api_mapping_id).await,
        Op::DeleteApiMapping {
            domain_name,
            api_mapping_id,
        } => api_mappings::delete(cx, domain_name, api_mapping_id).await,
        Op::GetTags { resource_arn } => tags::get(cx, resource_arn).await,
        Op::UntagResource { resource_arn } => tags::untag(cx, resource_arn, tag_keys).await,
        other => Err(AwsError::bad_request(format!(
            "{}: a request body is required",
            other.name()
        ))),
    }
}

/// A required string member that was absent: "" lets the gRPC handler refuse it, naming the
/// field, exactly as it refuses an empty one.
fn or_empty(v: Option<String>) -> String {
    v.unwrap_or_default()
}

/// A value of enum member `member` that is none of `allowed`: refused, naming the operation,
/// the member and the value (its first 40 characters).
fn not_one_of(op: &str, member: &str, allowed: &str, got: &str) -> AwsError {
    AwsError::bad_request(format!(
        "{op}: {member} must be {allowed}, got {:?}",
        got.chars().take(40).collect::<String>()
    ))
}
