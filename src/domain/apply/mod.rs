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

/// A new record, `$kind { fields }` with the stamp every record a write creates carries: the
/// caller's account, and the write's revision as both its create and its mod revision. A
/// `dated` record (every kind but the mapping) is also created at the write's time.
macro_rules! new_record {
    ($cx:expr, dated $kind:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let cx: &$crate::domain::apply::Ctx<'_> = $cx;
        new_record!(cx, $kind { $($field $(: $value)?,)* created_date: Some(cx.now) })
    }};
    ($cx:expr, $kind:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let cx: &$crate::domain::apply::Ctx<'_> = $cx;
        $kind {
            $($field $(: $value)?,)*
            account_id: cx.account.into(),
            create_revision: cx.revision,
            mod_revision: cx.revision,
        }
    }};
}

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

/// What a write's code gets besides the state: the revision it will take, the time, limits,
/// the caller's account and the revision the write expects its record at.
pub(crate) struct Ctx<'a> {
    pub(crate) revision: u64,
    pub(crate) now: Timestamp,
    pub(crate) limits: &'a Limits,
    /// The account the write is made in.
    pub(crate) account: &'a str,
    /// The record's revision the write expects (0: any; a create names no record).
    pub(crate) expected_revision: u64,
}

impl Ctx<'_> {
    /// Optimistic concurrency for the record the write names, now at `mod_revision`: `Ok`
    /// if the write expects any revision (0) or that one, else the mismatch, naming the
    /// record by `what`.
    pub(crate) fn expects(
        &self,
        what: impl FnOnce() -> String,
        mod_revision: u64,
    ) -> super::rules::Checked {
        super::rules::revision_matches(what, self.expected_revision, mod_revision)
    }
}

/// The account `op` is made in, and the revision it expects its record at (0: any; a create
/// names no record).
fn caller(op: &WriteOp) -> (&str, u64) {
    use WriteOp::*;
    match op {
        CreateApi { account, .. }
        | CreateStage { account, .. }
        | CreateDomainName { account, .. }
        | CreateApiMapping { account, .. } => (account, 0),
        UpdateApi {
            account,
            expected_revision,
            ..
        }
        | DeleteApi {
            account,
            expected_revision,
            ..
        }
        | UpdateStage {
            account,
            expected_revision,
            ..
        }
        | DeleteStage {
            account,
            expected_revision,
            ..
        }
        | UpdateDomainName {
            account,
            expected_revision,
            ..
        }
        | DeleteDomainName {
            account,
            expected_revision,
            ..
        }
        | UpdateApiMapping {
            account,
            expected_revision,
            ..
        }
        | DeleteApiMapping {
            account,
            expected_revision,
            ..
        }
        | Tag {
            account,
            expected_revision,
            ..
        } => (account, *expected_revision),
    }
}

/// Applies `op` to `state`, which becomes the registry at the next revision, or refuses it
/// and leaves `state` exactly as it was.
pub fn apply(
    state: &mut State,
    op: &WriteOp,
    limits: &Limits,
    now: Timestamp,
) -> Result<Applied, Violation> {
    let (account, expected_revision) = caller(op);
    let cx = Ctx {
        revision: state.revision() + 1,
        now,
        limits,
        account,
        expected_revision,
    };
    let s = state;
    let (result, events) = match op {
        WriteOp::CreateApi {
            name,
            protocol,
            description,
            tags,
            selection,
            ..
        } => api::create(
            s,
            &cx,
            api::Fields {
                name,
                protocol: *protocol,
                description,
                tags,
                selection,
            },
        ),
        WriteOp::UpdateApi {
            api_id,
            name,
            description,
            route_selection_expression,
            api_key_selection_expression,
            ..
        } => api::update(
            s,
            &cx,
            api_id,
            api::Patch {
                name: name.as_deref(),
                description: description.as_deref(),
                route_selection_expression: route_selection_expression.as_deref(),
                api_key_selection_expression: api_key_selection_expression.as_deref(),
            },
        ),
        WriteOp::DeleteApi { api_id, .. } => api::delete(s, &cx, api_id),
        WriteOp::CreateStage {
            api_id,
            stage_name,
            description,
            tags,
            ..
        } => stage::create(s, &cx, api_id, stage_name, description, tags),
        WriteOp::UpdateStage {
            api_id,
            stage_name,
            description,
            ..
        } => stage::update(s, &cx, api_id, stage_name, description),
        WriteOp::DeleteStage {
            api_id, stage_name, ..
        } => stage::delete(s, &cx, api_id, stage_name),
        WriteOp::CreateDomainName {
            domain_name,
            configuration,
            tags,
            ..
        } => domain_name::create(s, &cx, domain_name, configuration, tags),
        WriteOp::UpdateDomainName {
            domain_name,
            configuration,
            ..
        } => domain_name::update(s, &cx, domain_name, configuration.as_ref()),
        WriteOp::DeleteDomainName { domain_name, .. } => domain_name::delete(s, &cx, domain_name),
        WriteOp::CreateApiMapping {
            domain_name,
            api_mapping_key,
            api_id,
            stage,
            ..
        } => mapping::create(s, &cx, domain_name, api_mapping_key, api_id, stage),
        WriteOp::UpdateApiMapping {
            domain_name,
            api_mapping_id,
            api_mapping_key,
            api_id,
            stage,
            ..
        } => mapping::update(
            s,
            &cx,
            mapping::Target {
                domain_name,
                api_mapping_id,
            },
            mapping::Patch {
                api_mapping_key: api_mapping_key.as_deref(),
                api_id: api_id.as_deref(),
                stage: stage.as_deref(),
            },
        ),
        WriteOp::DeleteApiMapping {
            domain_name,
            api_mapping_id,
            ..
        } => mapping::delete(
            s,
            &cx,
            mapping::Target {
                domain_name,
                api_mapping_id,
            },
        ),
        WriteOp::Tag {
            target,
            set,
            remove,
            ..
        } => tags::tag(s, &cx, target, tags::Change { set, remove }),
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

/// Removes `children` (the records that go with `r`), then `r`, each in its last state, and
/// answers the delete at `revision`: the change set is one DELETE event per record, in that
/// order.
fn removed(
    state: &mut State,
    revision: u64,
    children: Vec<resource::Resource>,
    r: resource::Resource,
) -> Done {
    let events = children
        .into_iter()
        .chain([r])
        .map(|r| {
            state.delete(&r);
            delete_event(r)
        })
        .collect();
    Ok((WriteResult::Deleted(revision), events))
}

/// `records`, each as a `kind` resource (for [`removed`], before the state changes).
fn resources<'s, T: Clone + 's>(
    records: impl Iterator<Item = &'s std::sync::Arc<T>>,
    kind: fn(T) -> resource::Resource,
) -> Vec<resource::Resource> {
    records.map(|r| kind((**r).clone())).collect()
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
