//! Each operation reads the request's members, builds the gRPC request, calls the Registry
//! service's own handler (as the caller the signature authenticated) and shapes the answer.
//! [`run`] is a table, a row an operation (its request message, how it runs, its response
//! shape); `call` holds the calls and answers all operations share; one file per resource kind
//! holds what is that kind's own (the members its create and update read, its shapes).
//!
//! Going through the gRPC handler means the REST edge cannot drift from gRPC: the same
//! validation, the same rules, the same writer (revisions, change feed), the same access
//! checks and log line per RPC.
//!
//! An operation's path parameters have the names of the gRPC request's fields they fill, so
//! [`run`] builds each request with them ([`request!`]) and the operation adds its members.

/// `request!(Message, field, ...)`: a `Message` with each `field` set from the variable of that
/// name (an operation's path parameters), every other field at its default.
macro_rules! request {
    ($msg:ident $(, $field:ident)*) => {
        $msg {
            $($field,)*
            ..Default::default()
        }
    };
}

/// The match of [`run`] on an operation, a row each:
/// `Op { path parameters } => how(Request [+ more fields], ...)`. The request is built with
/// the path parameters (and the named locals) by [`request!`]; `how` is
/// - `write(Request, members, shape, reply)`: `members` reads the body's members into the
///   request, any other member is refused, and the write's answer is `reply` of `shape` of it;
/// - `read(Request, shape)`, `list(Request, shape)`, `deleted(Request)`: the body must have no
///   members; then [`call::read`], [`call::list`] (the page the query names), [`call::deleted`].
///
/// Rows after `;` are match arms as written.
macro_rules! ops {
    ($cx:ident, $op:ident, $b:ident, $paging:ident;
     $($variant:ident $({ $($param:ident),* })? =>
        $how:ident($msg:ident $(+ $field:ident)* $(, $arg:expr)*)),*;
     $($arm:pat => $e:expr),*) => {
        match $op {
            $(Op::$variant $({ $($param),* })? => {
                let msg = request!($msg $($(, $param)*)? $(, $field)*);
                ops!(@$how $cx, $b, $paging, msg $(, $arg)*)
            })*
            $($arm => $e),*
        }
    };
    (@write $cx:ident, $b:ident, $paging:ident, $msg:ident, $members:expr, $shape:expr, $reply:expr) => {{
        let mut msg = $msg;
        $members(&mut msg, &mut $b)?;
        $b.finish()?;
        call::write($cx, msg, $shape, $reply).await
    }};
    (@read $cx:ident, $b:ident, $paging:ident, $msg:ident, $shape:expr) => {{
        $b.finish()?;
        call::read($cx, $msg, $shape).await
    }};
    (@list $cx:ident, $b:ident, $paging:ident, $msg:ident, $shape:expr) => {{
        $b.finish()?;
        call::list($cx, $msg, $paging, $shape).await
    }};
    (@deleted $cx:ident, $b:ident, $paging:ident, $msg:ident) => {{
        $b.finish()?;
        call::deleted($cx, $msg).await
    }};
}

mod api_mappings;
mod apis;
mod call;
mod domain_names;
mod stages;
mod tags;

use http::StatusCode;
use serde_json::Value;
use tonic::metadata::MetadataValue;

use super::error::AwsError;
use super::input::{Body, Query};
use super::routes::Op;
use super::shapes;
use crate::api::registry::RegistryService;
use crate::auth::Caller;
use crate::pb::{
    CreateApiMappingRequest, CreateApiRequest, CreateDomainNameRequest, CreateStageRequest,
    DeleteApiMappingRequest, DeleteApiRequest, DeleteDomainNameRequest, DeleteStageRequest,
    GetApiMappingRequest, GetApiMappingsRequest, GetApiRequest, GetApisRequest,
    GetDomainNameRequest, GetDomainNamesRequest, GetStageRequest, GetStagesRequest,
    TagResourceRequest, UntagResourceRequest, UpdateApiMappingRequest, UpdateApiRequest,
    UpdateDomainNameRequest, UpdateStageRequest,
};

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
    let mut b = Body::parse(name, body)?;
    ops! { cx, op, b, paging;
        CreateApi => write(CreateApiRequest, apis::create, shapes::api, Reply::created),
        GetApis => list(GetApisRequest, shapes::api),
        GetApi { api_id } => read(GetApiRequest, shapes::api),
        UpdateApi { api_id } => write(UpdateApiRequest, apis::update, shapes::api, Reply::ok),
        DeleteApi { api_id } => deleted(DeleteApiRequest),
        CreateStage { api_id } =>
            write(CreateStageRequest, stages::create, shapes::stage, Reply::created),
        GetStages { api_id } => list(GetStagesRequest, shapes::stage),
        GetStage { api_id, stage_name } => read(GetStageRequest, shapes::stage),
        UpdateStage { api_id, stage_name } =>
            write(UpdateStageRequest, stages::update, shapes::stage, Reply::ok),
        DeleteStage { api_id, stage_name } => deleted(DeleteStageRequest),
        CreateDomainName => write(
            CreateDomainNameRequest, domain_names::create, domain_names::shape(cx), Reply::created
        ),
        GetDomainNames => list(GetDomainNamesRequest, domain_names::shape(cx)),
        GetDomainName { domain_name } => read(GetDomainNameRequest, domain_names::shape(cx)),
        UpdateDomainName { domain_name } => write(
            UpdateDomainNameRequest, domain_names::update, domain_names::shape(cx), Reply::ok
        ),
        DeleteDomainName { domain_name } => deleted(DeleteDomainNameRequest),
        CreateApiMapping { domain_name } => write(
            CreateApiMappingRequest, api_mappings::create, shapes::api_mapping, Reply::created
        ),
        GetApiMappings { domain_name } => list(GetApiMappingsRequest, shapes::api_mapping),
        GetApiMapping { domain_name, api_mapping_id } =>
            read(GetApiMappingRequest, shapes::api_mapping),
        UpdateApiMapping { domain_name, api_mapping_id } => write(
            UpdateApiMappingRequest, api_mappings::update, shapes::api_mapping, Reply::ok
        ),
        DeleteApiMapping { domain_name, api_mapping_id } => deleted(DeleteApiMappingRequest),
        TagResource { resource_arn } =>
            write(TagResourceRequest, tags::tag, tags::tagged, Reply::created),
        UntagResource { resource_arn } => deleted(UntagResourceRequest + tag_keys);
        Op::GetTags { resource_arn } => {
            b.finish()?;
            tags::get(cx, resource_arn).await
        }
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
