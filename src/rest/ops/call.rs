//! The one way every operation calls the Registry service and answers: run the RPC that takes
//! the request message (as the caller, with the request id, through [`Cx::request`]) and shape
//! what it returns into a [`Reply`]. Which RPC takes which message, and which messages are
//! lists, are tables below, one row a message.

use std::future::Future;

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::{Cx, Paging, Reply};
use crate::api::registry::RegistryService;
use crate::pb::registry_server::Registry;
use crate::pb::{
    Api, ApiMapping, CreateApiMappingRequest, CreateApiRequest, CreateDomainNameRequest,
    CreateStageRequest, DeleteApiMappingRequest, DeleteApiMappingResponse, DeleteApiRequest,
    DeleteApiResponse, DeleteDomainNameRequest, DeleteDomainNameResponse, DeleteStageRequest,
    DeleteStageResponse, DomainName, GetApiMappingRequest, GetApiMappingsRequest,
    GetApiMappingsResponse, GetApiRequest, GetApisRequest, GetApisResponse, GetDomainNameRequest,
    GetDomainNamesRequest, GetDomainNamesResponse, GetStageRequest, GetStagesRequest,
    GetStagesResponse, Stage, TagResourceRequest, TagResourceResponse, UntagResourceRequest,
    UntagResourceResponse, UpdateApiMappingRequest, UpdateApiRequest, UpdateDomainNameRequest,
    UpdateStageRequest,
};
use crate::rest::error::AwsError;
use crate::rest::shapes;

/// A request message of the Registry service, bound to the one RPC that takes it.
pub(super) trait Rpc: Sized + Send {
    /// What the RPC answers.
    type Answer: Send;
    /// Runs the RPC's own gRPC handler on `svc` with `req`.
    fn call(
        svc: &RegistryService,
        req: Request<Self>,
    ) -> impl Future<Output = Result<Response<Self::Answer>, Status>> + Send;
}

/// `Message => rpc -> Answer`: `Message` is taken by the RPC `rpc`, which answers `Answer`.
macro_rules! rpcs {
    ($($msg:ident => $rpc:ident -> $answer:ident,)*) => {$(
        impl Rpc for $msg {
            type Answer = $answer;
            fn call(
                svc: &RegistryService,
                req: Request<Self>,
            ) -> impl Future<Output = Result<Response<$answer>, Status>> + Send {
                svc.$rpc(req)
            }
        }
    )*};
}

rpcs! {
    CreateApiRequest => create_api -> Api,
    GetApiRequest => get_api -> Api,
    GetApisRequest => get_apis -> GetApisResponse,
    UpdateApiRequest => update_api -> Api,
    DeleteApiRequest => delete_api -> DeleteApiResponse,
    CreateStageRequest => create_stage -> Stage,
    GetStageRequest => get_stage -> Stage,
    GetStagesRequest => get_stages -> GetStagesResponse,
    UpdateStageRequest => update_stage -> Stage,
    DeleteStageRequest => delete_stage -> DeleteStageResponse,
    CreateDomainNameRequest => create_domain_name -> DomainName,
    GetDomainNameRequest => get_domain_name -> DomainName,
    GetDomainNamesRequest => get_domain_names -> GetDomainNamesResponse,
    UpdateDomainNameRequest => update_domain_name -> DomainName,
    DeleteDomainNameRequest => delete_domain_name -> DeleteDomainNameResponse,
    CreateApiMappingRequest => create_api_mapping -> ApiMapping,
    GetApiMappingRequest => get_api_mapping -> ApiMapping,
    GetApiMappingsRequest => get_api_mappings -> GetApiMappingsResponse,
    UpdateApiMappingRequest => update_api_mapping -> ApiMapping,
    DeleteApiMappingRequest => delete_api_mapping -> DeleteApiMappingResponse,
    TagResourceRequest => tag_resource -> TagResourceResponse,
    UntagResourceRequest => untag_resource -> UntagResourceResponse,
}

/// What a write answers, with the revision of the write: a record's `mod_revision`, a
/// delete's or a tag change's `revision`.
pub(super) trait Written {
    /// The revision of the write (0 when it took none, e.g. `validate_only`).
    fn revision(&self) -> u64;
}

/// `field: Type, ...`: each `Type` is a write's answer carrying its revision in `field`.
macro_rules! written {
    ($field:ident: $($t:ident),*) => {$(
        impl Written for $t {
            fn revision(&self) -> u64 {
                self.$field
            }
        }
    )*};
}

written!(mod_revision: Api, Stage, DomainName, ApiMapping);
written!(
    revision: DeleteApiResponse,
    DeleteStageResponse,
    DeleteDomainNameResponse,
    DeleteApiMappingResponse,
    TagResourceResponse,
    UntagResourceResponse
);

/// A list request: paged by `maxResults`/`nextToken`, answered by a page of `Item`s.
pub(super) trait Listing: Rpc {
    /// What the page holds.
    type Item;
    /// The request asking for the page `p` names.
    fn paged(self, p: Paging) -> Self;
    /// The page's items, its `next_token` ("" on the last page) and the revision it reflects.
    fn page(answer: &Self::Answer) -> (&[Self::Item], &str, u64);
}

/// `Request -> Item, ...`: each `Request` lists `Item`s.
macro_rules! listings {
    ($($msg:ident -> $item:ident),*) => {$(
        impl Listing for $msg {
            type Item = $item;
            fn paged(self, p: Paging) -> Self {
                $msg {
                    max_results: p.max_results,
                    next_token: p.next_token,
                    ..self
                }
            }
            fn page(answer: &Self::Answer) -> (&[$item], &str, u64) {
                (&answer.items, &answer.next_token, answer.revision)
            }
        }
    )*};
}

listings!(
    GetApisRequest -> Api,
    GetStagesRequest -> Stage,
    GetDomainNamesRequest -> DomainName,
    GetApiMappingsRequest -> ApiMapping
);

/// The revision a read answered at (`mapreg-revision` metadata), or 0.
fn read_revision<T>(r: &Response<T>) -> u64 {
    r.metadata()
        .get("mapreg-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs the read `msg`: 200 with `shape` of the record, at the revision the read answered at.
pub(super) async fn read<M: Rpc>(
    cx: &Cx,
    msg: M,
    shape: impl FnOnce(&M::Answer) -> Value + Send,
) -> Result<Reply, AwsError> {
    let r = M::call(&cx.svc, cx.request(msg)).await?;
    Ok(Reply::ok(shape(r.get_ref()), read_revision(&r)))
}

/// Runs the list `msg` for the page `p` names: 200 with the page (`items`, each as `shape`
/// makes it, and `nextToken` unless it is the last), at the revision the page reflects.
pub(super) async fn list<M: Listing>(
    cx: &Cx,
    msg: M,
    p: Paging,
    shape: impl Fn(&M::Item) -> Value + Send,
) -> Result<Reply, AwsError> {
    let r = M::call(&cx.svc, cx.request(msg.paged(p)))
        .await?
        .into_inner();
    let (items, next_token, revision) = M::page(&r);
    let items = items.iter().map(shape).collect();
    Ok(Reply::ok(shapes::page(items, next_token), revision))
}

/// Runs the write `msg`: `reply` (e.g. [`Reply::created`]) of `shape` of what it answers, at
/// the write's revision.
pub(super) async fn write<M: Rpc>(
    cx: &Cx,
    msg: M,
    shape: impl FnOnce(&M::Answer) -> Value + Send,
    reply: fn(Value, u64) -> Reply,
) -> Result<Reply, AwsError>
where
    M::Answer: Written,
{
    let a = M::call(&cx.svc, cx.request(msg)).await?.into_inner();
    Ok(reply(shape(&a), a.revision()))
}

/// Runs the delete (or untag) `msg`: 204, no body, at its revision.
pub(super) async fn deleted<M: Rpc>(cx: &Cx, msg: M) -> Result<Reply, AwsError>
where
    M::Answer: Written,
{
    let a = M::call(&cx.svc, cx.request(msg)).await?.into_inner();
    Ok(Reply::deleted(a.revision()))
}
