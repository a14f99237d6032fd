//! `mapreg.v1.Registry`: CRUD of APIs, stages, domain names and API mappings.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ReadRequest, paging, read_rpc, rpc};
use crate::auth::{Access, Caller};
use crate::domain::{arn, resolve, rules, selection, validate};
use crate::error::{Error, Result};
use crate::pb::registry_server::Registry;
use crate::pb::*;
use crate::store::writer::Writer;
use crate::store::{Registry as Store, WriteOp, WriteResult};

/// The Registry service: reads (Get*, lists, `ResolveRoute`) from the registry's current
/// durable version, one version per call; writes through the [`Writer`].
#[derive(Clone)]
pub struct RegistryService {
    store: Arc<Store>,
    writer: Writer,
}

impl RegistryService {
    /// A service reading `store`'s current version and writing through `writer`.
    pub fn new(store: Arc<Store>, writer: Writer) -> Self {
        RegistryService { store, writer }
    }

    /// Commits `op`, or with `validate_only` (AIP-163) only checks it as the writer would and
    /// answers what it would return, revision fields 0.
    async fn write(&self, op: WriteOp, validate_only: bool) -> Result<WriteResult> {
        if validate_only {
            self.writer.validate(op).await
        } else {
            self.writer.submit(op).await
        }
    }
}

/// An identifier that is looked up: required and not absurdly long; an unknown one is NOT_FOUND.
fn id(field: &str, value: &str) -> Result<()> {
    validate::resource_id(field, value)
}

/// A domain name that is looked up: lower-cased; a syntactically impossible one is simply absent.
fn lookup_domain(raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(Error::invalid("domain_name", "domain_name is required"));
    }
    if raw.chars().count() > 253 {
        return Err(Error::invalid(
            "domain_name",
            "domain_name is longer than 253 characters",
        ));
    }
    Ok(raw.to_ascii_lowercase())
}

fn unexpected(what: &str) -> Error {
    Error::internal(format!(
        "the writer answered with something other than {what}"
    ))
}

fn as_api(r: WriteResult) -> Result<Api> {
    match r {
        WriteResult::Api(a) => Ok(a),
        _ => Err(unexpected("an API")),
    }
}
fn as_stage(r: WriteResult) -> Result<Stage> {
    match r {
        WriteResult::Stage(s) => Ok(s),
        _ => Err(unexpected("a stage")),
    }
}
fn as_domain(r: WriteResult) -> Result<DomainName> {
    match r {
        WriteResult::DomainName(d) => Ok(d),
        _ => Err(unexpected("a domain name")),
    }
}
fn as_mapping(r: WriteResult) -> Result<ApiMapping> {
    match r {
        WriteResult::ApiMapping(m) => Ok(m),
        _ => Err(unexpected("an API mapping")),
    }
}
/// The revision and tags of a tagged record.
fn tagged(r: WriteResult) -> Result<(u64, std::collections::HashMap<String, String>)> {
    match r {
        WriteResult::Api(a) => Ok((a.mod_revision, a.tags)),
        WriteResult::Stage(s) => Ok((s.mod_revision, s.tags)),
        WriteResult::DomainName(d) => Ok((d.mod_revision, d.tags)),
        _ => Err(unexpected("a tagged record")),
    }
}
fn as_revision(r: WriteResult) -> Result<u64> {
    match r {
        WriteResult::Deleted(rev) => Ok(rev),
        _ => Err(unexpected("a delete")),
    }
}

macro_rules! read_requests {
    ($($t:ty),*) => {
        $(impl ReadRequest for $t {
            fn min_revision(&self) -> u64 {
                self.min_revision
            }
        })*
    };
}

read_requests!(
    GetApiRequest,
    GetApisRequest,
    GetStageRequest,
    GetStagesRequest,
    GetDomainNameRequest,
    GetDomainNamesRequest,
    GetApiMappingRequest,
    GetApiMappingsRequest,
    ResolveRouteRequest
);

/// Writes `impl Registry for RegistryService`: each write is one `rpc` call that needs
/// [`Access::Write`] and runs its body with the caller and the request; each read one
/// `read_rpc` call that runs its body on the registry's current version (after waiting for
/// the request's `min_revision`). `$s` is `self`, handed in so the bodies may use it.
macro_rules! registry_service {
    (
        $s:ident;
        writes { $( $wfn:ident($WReq:ty) -> $WResp:ty as $wname:literal = |$wc:ident, $wm:ident| $wbody:block )* }
        reads { $( $rfn:ident($RReq:ty) -> $RResp:ty as $rname:literal = |$rc:ident, $rst:ident, $rm:ident| $rbody:block )* }
    ) => {
        #[tonic::async_trait]
        impl Registry for RegistryService {
            $(
                async fn $wfn(&$s, req: Request<$WReq>) -> Result<Response<$WResp>, Status> {
                    rpc($wname, Access::Write, req, async |$wc: Caller, $wm: $WReq| $wbody).await
                }
            )*
            $(
                async fn $rfn(&$s, req: Request<$RReq>) -> Result<Response<$RResp>, Status> {
                    read_rpc($rname, &$s.store, req, |$rc, $rst, $rm: $RReq| $rbody).await
                }
            )*
        }
    };
}

registry_service! {
    self;
    writes {
        create_api(CreateApiRequest) -> Api as "CreateApi" = |c, m| {
            validate::api_name(&m.name)?;
            let protocol = rules::protocol_type(m.protocol_type)?;
            validate::description("description", &m.description)?;
            validate::tags(&m.tags)?;
            let selection = selection::for_create(
                protocol,
                &m.route_selection_expression,
                &m.api_key_selection_expression,
            )?;
            let op = WriteOp::CreateApi {
                account: c.account_id,
                name: m.name,
                protocol,
                description: m.description,
                tags: m.tags,
                selection,
            };
            as_api(self.write(op, m.validate_only).await?)
        }

        update_api(UpdateApiRequest) -> Api as "UpdateApi" = |c, m| {
            id("api_id", &m.api_id)?;
            if let Some(n) = &m.name {
                validate::api_name(n)?;
            }
            if let Some(d) = &m.description {
                validate::description("description", d)?;
            }
            let op = WriteOp::UpdateApi {
                account: c.account_id,
                api_id: m.api_id,
                name: m.name,
                description: m.description,
                route_selection_expression: m.route_selection_expression,
                api_key_selection_expression: m.api_key_selection_expression,
                expected_revision: m.expected_revision,
            };
            as_api(self.write(op, m.validate_only).await?)
        }

        delete_api(DeleteApiRequest) -> DeleteApiResponse as "DeleteApi" = |c, m| {
            id("api_id", &m.api_id)?;
            let op = WriteOp::DeleteApi {
                account: c.account_id,
                api_id: m.api_id,
                expected_revision: m.expected_revision,
            };
            Ok(DeleteApiResponse {
                revision: as_revision(self.write(op, m.validate_only).await?)?,
            })
        }

        create_stage(CreateStageRequest) -> Stage as "CreateStage" = |c, m| {
            id("api_id", &m.api_id)?;
            validate::stage_name("stage_name", &m.stage_name)?;
            validate::description("description", &m.description)?;
            validate::tags(&m.tags)?;
            let op = WriteOp::CreateStage {
                account: c.account_id,
                api_id: m.api_id,
                stage_name: m.stage_name,
                description: m.description,
                tags: m.tags,
            };
            as_stage(self.write(op, m.validate_only).await?)
        }

        update_stage(UpdateStageRequest) -> Stage as "UpdateStage" = |c, m| {
            id("api_id", &m.api_id)?;
            id("stage_name", &m.stage_name)?;
            if let Some(d) = &m.description {
                validate::description("description", d)?;
            }
            let op = WriteOp::UpdateStage {
                account: c.account_id,
                api_id: m.api_id,
                stage_name: m.stage_name,
                description: m.description,
                expected_revision: m.expected_revision,
            };
            as_stage(self.write(op, m.validate_only).await?)
        }

        delete_stage(DeleteStageRequest) -> DeleteStageResponse as "DeleteStage" = |c, m| {
            id("api_id", &m.api_id)?;
            id("stage_name", &m.stage_name)?;
            let op = WriteOp::DeleteStage {
                account: c.account_id,
                api_id: m.api_id,
                stage_name: m.stage_name,
                expected_revision: m.expected_revision,
            };
            Ok(DeleteStageResponse {
                revision: as_revision(self.write(op, m.validate_only).await?)?,
            })
        }

        create_domain_name(CreateDomainNameRequest) -> DomainName as "CreateDomainName" = |c, m| {
            let domain_name = validate::normalize_domain_name("domain_name", &m.domain_name)?;
            let configuration = rules::configuration_for_create(m.domain_name_configurations)?;
            validate::tags(&m.tags)?;
            let op = WriteOp::CreateDomainName {
                account: c.account_id,
                domain_name,
                configuration,
                tags: m.tags,
            };
            as_domain(self.write(op, m.validate_only).await?)
        }

        update_domain_name(UpdateDomainNameRequest) -> DomainName as "UpdateDomainName" = |c, m| {
            let domain_name = lookup_domain(&m.domain_name)?;
            let configuration = rules::configuration_patch(m.domain_name_configurations)?;
            let op = WriteOp::UpdateDomainName {
                account: c.account_id,
                domain_name,
                configuration,
                expected_revision: m.expected_revision,
            };
            as_domain(self.write(op, m.validate_only).await?)
        }

        delete_domain_name(DeleteDomainNameRequest) -> DeleteDomainNameResponse as "DeleteDomainName" = |c, m| {
            let domain_name = lookup_domain(&m.domain_name)?;
            let op = WriteOp::DeleteDomainName {
                account: c.account_id,
                domain_name,
                expected_revision: m.expected_revision,
            };
            Ok(DeleteDomainNameResponse {
                revision: as_revision(self.write(op, m.validate_only).await?)?,
            })
        }

        create_api_mapping(CreateApiMappingRequest) -> ApiMapping as "CreateApiMapping" = |c, m| {
            let domain_name = lookup_domain(&m.domain_name)?;
            validate::api_mapping_key(&m.api_mapping_key)?;
            id("api_id", &m.api_id)?;
            id("stage", &m.stage)?;
            let op = WriteOp::CreateApiMapping {
                account: c.account_id,
                domain_name,
                api_mapping_key: m.api_mapping_key,
                api_id: m.api_id,
                stage: m.stage,
            };
            as_mapping(self.write(op, m.validate_only).await?)
        }

        update_api_mapping(UpdateApiMappingRequest) -> ApiMapping as "UpdateApiMapping" = |c, m| {
            let domain_name = lookup_domain(&m.domain_name)?;
            id("api_mapping_id", &m.api_mapping_id)?;
            if let Some(k) = &m.api_mapping_key {
                validate::api_mapping_key(k)?;
            }
            if let Some(a) = &m.api_id {
                id("api_id", a)?;
            }
            if let Some(s) = &m.stage {
                id("stage", s)?;
            }
            let op = WriteOp::UpdateApiMapping {
                account: c.account_id,
                domain_name,
                api_mapping_id: m.api_mapping_id,
                api_mapping_key: m.api_mapping_key,
                api_id: m.api_id,
                stage: m.stage,
                expected_revision: m.expected_revision,
            };
            as_mapping(self.write(op, m.validate_only).await?)
        }

        delete_api_mapping(DeleteApiMappingRequest) -> DeleteApiMappingResponse as "DeleteApiMapping" = |c, m| {
            let domain_name = lookup_domain(&m.domain_name)?;
            id("api_mapping_id", &m.api_mapping_id)?;
            let op = WriteOp::DeleteApiMapping {
                account: c.account_id,
                domain_name,
                api_mapping_id: m.api_mapping_id,
                expected_revision: m.expected_revision,
            };
            Ok(DeleteApiMappingResponse {
                revision: as_revision(self.write(op, m.validate_only).await?)?,
            })
        }

        tag_resource(TagResourceRequest) -> TagResourceResponse as "TagResource" = |c, m| {
            let target = arn::parse("resource_arn", &m.resource_arn)?;
            validate::tags(&m.tags)?;
            let op = WriteOp::Tag {
                account: c.account_id,
                target,
                set: m.tags,
                remove: Vec::new(),
                expected_revision: m.expected_revision,
            };
            let (revision, tags) = tagged(self.write(op, false).await?)?;
            Ok(TagResourceResponse { revision, tags })
        }

        untag_resource(UntagResourceRequest) -> UntagResourceResponse as "UntagResource" = |c, m| {
            let target = arn::parse("resource_arn", &m.resource_arn)?;
            validate::tag_keys(&m.tag_keys)?;
            let op = WriteOp::Tag {
                account: c.account_id,
                target,
                set: Default::default(),
                remove: m.tag_keys,
                expected_revision: m.expected_revision,
            };
            let (revision, tags) = tagged(self.write(op, false).await?)?;
            Ok(UntagResourceResponse { revision, tags })
        }
    }
    reads {
        get_api(GetApiRequest) -> Api as "GetApi" = |c, state, m| {
            id("api_id", &m.api_id)?;
            Ok((**state.get_api(&c.scope(), &m.api_id)?).clone())
        }

        get_apis(GetApisRequest) -> GetApisResponse as "GetApis" = |c, state, m| {
            let page = paging::page("apis", "", m.max_results, &m.next_token)?;
            let listed = state.list_apis(&c.scope(), &page);
            Ok(GetApisResponse {
                items: listed.items,
                next_token: paging::encode("apis", "", listed.next.as_deref()),
                revision: state.revision(),
            })
        }

        get_stage(GetStageRequest) -> Stage as "GetStage" = |c, state, m| {
            id("api_id", &m.api_id)?;
            id("stage_name", &m.stage_name)?;
            Ok((**state.get_stage(&c.scope(), &m.api_id, &m.stage_name)?).clone())
        }

        get_stages(GetStagesRequest) -> GetStagesResponse as "GetStages" = |c, state, m| {
            id("api_id", &m.api_id)?;
            let page = paging::page("stages", &m.api_id, m.max_results, &m.next_token)?;
            let listed = state.list_stages(&c.scope(), &m.api_id, &page)?;
            Ok(GetStagesResponse {
                items: listed.items,
                next_token: paging::encode("stages", &m.api_id, listed.next.as_deref()),
                revision: state.revision(),
            })
        }

        get_domain_name(GetDomainNameRequest) -> DomainName as "GetDomainName" = |c, state, m| {
            let domain = lookup_domain(&m.domain_name)?;
            Ok((*state.get_domain(&c.scope(), &domain)?.record).clone())
        }

        get_domain_names(GetDomainNamesRequest) -> GetDomainNamesResponse as "GetDomainNames" = |c, state, m| {
            let page = paging::page("domains", "", m.max_results, &m.next_token)?;
            let listed = state.list_domains(&c.scope(), &page);
            Ok(GetDomainNamesResponse {
                items: listed.items,
                next_token: paging::encode("domains", "", listed.next.as_deref()),
                revision: state.revision(),
            })
        }

        get_api_mapping(GetApiMappingRequest) -> ApiMapping as "GetApiMapping" = |c, state, m| {
            let domain = lookup_domain(&m.domain_name)?;
            id("api_mapping_id", &m.api_mapping_id)?;
            Ok((**state.get_mapping(&c.scope(), &domain, &m.api_mapping_id)?).clone())
        }

        get_api_mappings(GetApiMappingsRequest) -> GetApiMappingsResponse as "GetApiMappings" = |c, state, m| {
            let domain = lookup_domain(&m.domain_name)?;
            let page = paging::page("mappings", &domain, m.max_results, &m.next_token)?;
            let listed = state.list_mappings(&c.scope(), &domain, &page)?;
            Ok(GetApiMappingsResponse {
                items: listed.items,
                next_token: paging::encode("mappings", &domain, listed.next.as_deref()),
                revision: state.revision(),
            })
        }

        resolve_route(ResolveRouteRequest) -> ResolveRouteResponse as "ResolveRoute" = |c, state, m| {
            let host = resolve::normalize_host(&m.host)?;
            let path = resolve::normalize_path(&m.path)?;
            // From memory: the state at one durable revision, which the answer reports.
            let (route, api) = state.resolve_for(&c.scope(), &host, &path)?;
            Ok(ResolveRouteResponse {
                api_mapping: Some(route.mapping.clone()),
                api: Some(api.clone()),
                matched_domain_name: route.domain_name,
                remaining_path: route.remaining_path,
                revision: state.revision(),
            })
        }
    }
}
