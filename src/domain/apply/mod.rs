//! Writes applied to a [`State`]: one file per resource kind, dispatched here.
//!
//! [`apply`] checks every rule of the write against the version it is given (the functions of
//! [`rules`](super::rules)) and only then changes it, so a refused write leaves no trace and an
//! accepted one is the next revision of that version. It is pure: no I/O, no clock (the caller
//! passes `now`), ids drawn at random and checked for uniqueness against the version.
//!
//! The writer applies a group's writes one after the other to the current version, each seeing
//! the ones before it, then persists the group; a gateway's cache and startup replay
//! change sets with [`State::apply`](super::state::State::apply) instead.

mod api;
mod domain_name;
mod mapping;
mod stage;
mod tags;
pub mod wire;

use std::collections::HashMap;

use prost_types::Timestamp;

use super::rules::Violation;
use super::state::State;
use crate::pb::{
    Api, ApiMapping, DomainName, DomainNameConfiguration, Event, EventType, ProtocolType, Resource,
    Stage, resource,
};

/// Tunable limits of the rules.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rule 4: multi-level mappings per domain (default 200).
    pub max_multi_level_mappings_per_domain: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_multi_level_mappings_per_domain: 200,
        }
    }
}

/// A validated write. Fields are already syntax-checked and normalised (lower-cased domain
/// names, defaults applied); [`apply`] checks every rule that depends on the state.
///
/// Serializable ([`wire`]): a node that is not the store's writer hands it to the one that is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum WriteOp {
    CreateApi {
        account: String,
        name: String,
        #[serde(with = "wire::protocol")]
        protocol: ProtocolType,
        description: String,
        tags: HashMap<String, String>,
        /// Already decided for `protocol` by [`selection::for_create`](super::selection::for_create).
        selection: super::selection::Selection,
    },
    UpdateApi {
        account: String,
        api_id: String,
        name: Option<String>,
        description: Option<String>,
        /// Checked against the API's protocol by [`selection::for_update`](super::selection::for_update).
        route_selection_expression: Option<String>,
        api_key_selection_expression: Option<String>,
        expected_revision: u64,
    },
    DeleteApi {
        account: String,
        api_id: String,
        expected_revision: u64,
    },
    CreateStage {
        account: String,
        api_id: String,
        stage_name: String,
        description: String,
        tags: HashMap<String, String>,
    },
    UpdateStage {
        account: String,
        api_id: String,
        stage_name: String,
        description: Option<String>,
        expected_revision: u64,
    },
    DeleteStage {
        account: String,
        api_id: String,
        stage_name: String,
        expected_revision: u64,
    },
    CreateDomainName {
        account: String,
        domain_name: String,
        #[serde(with = "wire::message")]
        configuration: DomainNameConfiguration,
        tags: HashMap<String, String>,
    },
    UpdateDomainName {
        account: String,
        domain_name: String,
        #[serde(with = "wire::optional_message")]
        configuration: Option<DomainNameConfiguration>,
        expected_revision: u64,
    },
    DeleteDomainName {
        account: String,
        domain_name: String,
        expected_revision: u64,
    },
    CreateApiMapping {
        account: String,
        domain_name: String,
        api_mapping_key: String,
        api_id: String,
        stage: String,
    },
    UpdateApiMapping {
        account: String,
        domain_name: String,
        api_mapping_id: String,
        api_mapping_key: Option<String>,
        api_id: Option<String>,
        stage: Option<String>,
        expected_revision: u64,
    },
    DeleteApiMapping {
        account: String,
        domain_name: String,
        api_mapping_id: String,
        expected_revision: u64,
    },
    /// TagResource and UntagResource: removes `remove`, then sets `set`.
    Tag {
        account: String,
        target: crate::domain::arn::Tagged,
        set: HashMap<String, String>,
        remove: Vec<String>,
        expected_revision: u64,
    },
}

/// What an accepted write returns to its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// The API as stored.
    Api(Api),
    /// The stage as stored.
    Stage(Stage),
    /// The domain name as stored.
    DomainName(DomainName),
    /// The mapping as stored.
    ApiMapping(ApiMapping),
    /// A delete; the revision it took.
    Deleted(u64),
}

impl WriteResult {
    /// What a dry run (`validate_only`, AIP-163) answers: this result with every revision
    /// field 0 (`create_revision`, `mod_revision`, a delete's revision), since nothing was
    /// written and no revision was taken. Everything else is what the write would return.
    pub fn without_revisions(self) -> WriteResult {
        macro_rules! unrevised {
            ($($kind:ident),*) => {
                match self {
                    $(WriteResult::$kind(mut r) => {
                        (r.create_revision, r.mod_revision) = (0, 0);
                        WriteResult::$kind(r)
                    })*
                    WriteResult::Deleted(_) => WriteResult::Deleted(0),
                }
            };
        }
        unrevised!(Api, Stage, DomainName, ApiMapping)
    }
}

/// An accepted write: its result, its revision and its events (the change set of the
/// revision, in order).
#[derive(Debug, Clone)]
pub struct Applied {
    /// What the caller gets back.
    pub result: WriteResult,
    /// The revision the write took.
    pub revision: u64,
    /// The revision's events, in order.
    pub events: Vec<Event>,
    /// Who made it (set by the writer; see [`crate::audit`]).
    pub audit: std::sync::Arc<crate::audit::Audit>,
}

/// What a write's code gets besides the state: the revision it will take, the time, limits.
pub(crate) struct Ctx<'a> {
    pub(crate) revision: u64,
    pub(crate) now: Timestamp,
    pub(crate) limits: &'a Limits,
}

/// Applies `op` to `state`, which becomes the registry at the next revision, or refuses it
/// and leaves `state` exactly as it was.
pub fn apply(
    state: &mut State,
    op: &WriteOp,
    limits: &Limits,
    now: Timestamp,
) -> Result<Applied, Violation> {
    let cx = Ctx {
        revision: state.revision() + 1,
        now,
        limits,
    };
    let s = state;
    let (result, events) = match op {
        WriteOp::CreateApi {
            account,
            name,
            protocol,
            description,
            tags,
            selection,
        } => api::create(
            s,
            &cx,
            account,
            api::Fields {
                name,
                protocol: *protocol,
                description,
                tags,
                selection,
            },
        ),
        WriteOp::UpdateApi {
            account,
            api_id,
            name,
            description,
            route_selection_expression,
            api_key_selection_expression,
            expected_revision,
        } => api::update(
            s,
            &cx,
            account,
            api_id,
            api::Patch {
                name: name.as_deref(),
                description: description.as_deref(),
                route_selection_expression: route_selection_expression.as_deref(),
                api_key_selection_expression: api_key_selection_expression.as_deref(),
            },
            *expected_revision,
        ),
        WriteOp::DeleteApi {
            account,
            api_id,
            expected_revision,
        } => api::delete(s, &cx, account, api_id, *expected_revision),
        WriteOp::CreateStage {
            account,
            api_id,
            stage_name,
            description,
            tags,
        } => stage::create(s, &cx, account, api_id, stage_name, description, tags),
        WriteOp::UpdateStage {
            account,
            api_id,
            stage_name,
            description,
            expected_revision,
        } => stage::update(
            s,
            &cx,
            account,
            api_id,
            stage_name,
            description,
            *expected_revision,
        ),
        WriteOp::DeleteStage {
            account,
            api_id,
            stage_name,
            expected_revision,
        } => stage::delete(s, &cx, account, api_id, stage_name, *expected_revision),
        WriteOp::CreateDomainName {
            account,
            domain_name,
            configuration,
            tags,
        } => domain_name::create(s, &cx, account, domain_name, configuration, tags),
        WriteOp::UpdateDomainName {
            account,
            domain_name,
            configuration,
            expected_revision,
        } => domain_name::update(
            s,
            &cx,
            account,
            domain_name,
            configuration.as_ref(),
            *expected_revision,
        ),
        WriteOp::DeleteDomainName {
            account,
            domain_name,
            expected_revision,
        } => domain_name::delete(s, &cx, account, domain_name, *expected_revision),
        WriteOp::CreateApiMapping {
            account,
            domain_name,
            api_mapping_key,
            api_id,
            stage,
        } => mapping::create(s, &cx, account, domain_name, api_mapping_key, api_id, stage),
        WriteOp::UpdateApiMapping {
            account,
            domain_name,
            api_mapping_id,
            api_mapping_key,
            api_id,
            stage,
            expected_revision,
        } => mapping::update(
            s,
            &cx,
            account,
            mapping::Target {
                domain_name,
                api_mapping_id,
            },
            mapping::Patch {
                api_mapping_key: api_mapping_key.as_deref(),
                api_id: api_id.as_deref(),
                stage: stage.as_deref(),
            },
            *expected_revision,
        ),
        WriteOp::DeleteApiMapping {
            account,
            domain_name,
            api_mapping_id,
            expected_revision,
        } => mapping::delete(
            s,
            &cx,
            account,
            mapping::Target {
                domain_name,
                api_mapping_id,
            },
            *expected_revision,
        ),
        WriteOp::Tag {
            account,
            target,
            set,
            remove,
            expected_revision,
        } => tags::tag(
            s,
            &cx,
            account,
            target,
            tags::Change { set, remove },
            *expected_revision,
        ),
    }?;
    s.set_revision(cx.revision);
    Ok(Applied {
        result,
        revision: cx.revision,
        events,
        audit: Default::default(),
    })
}

/// A kind's write: its result and events, the state already changed.
type Done = Result<(WriteResult, Vec<Event>), Violation>;

/// Stores `r` (a record's new state) and answers it: the result is the record, the change set
/// its one PUT event.
fn stored(state: &mut State, r: resource::Resource) -> Done {
    let result = match &r {
        resource::Resource::Api(a) => WriteResult::Api(a.clone()),
        resource::Resource::Stage(s) => WriteResult::Stage(s.clone()),
        resource::Resource::DomainName(d) => WriteResult::DomainName(d.clone()),
        resource::Resource::ApiMapping(m) => WriteResult::ApiMapping(m.clone()),
    };
    let event = put_event(r.clone());
    state.put(r);
    Ok((result, vec![event]))
}

/// Removes the record `r` (its last state) and answers the delete at `revision`.
fn removed(state: &mut State, revision: u64, r: resource::Resource) -> Done {
    state.delete(&r);
    Ok((WriteResult::Deleted(revision), vec![delete_event(r)]))
}

fn put_event(r: resource::Resource) -> Event {
    Event {
        r#type: EventType::Put as i32,
        resource: Some(Resource { resource: Some(r) }),
    }
}

fn delete_event(r: resource::Resource) -> Event {
    Event {
        r#type: EventType::Delete as i32,
        resource: Some(Resource { resource: Some(r) }),
    }
}

#[cfg(test)]
mod tests;
