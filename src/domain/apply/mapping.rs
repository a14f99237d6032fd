//! CreateApiMapping, UpdateApiMapping, DeleteApiMapping: rules 1 to 7 for the mapping's new
//! state, in the order a client sees their errors (prerequisites, key, then placement).

use std::sync::Arc;

use super::{Ctx, Done, removed, stored};
use crate::domain::ids;
use crate::domain::rules::{self, Violation, api_in_account, domain_in_account, stage_of};
use crate::domain::state::State;
use crate::pb::{ApiMapping, resource};

/// The mapping a write names.
pub(super) struct Target<'a> {
    pub(super) domain_name: &'a str,
    pub(super) api_mapping_id: &'a str,
}

/// An update's fields; None leaves the field as it is.
pub(super) struct Patch<'a> {
    pub(super) api_mapping_key: Option<&'a str>,
    pub(super) api_id: Option<&'a str>,
    pub(super) stage: Option<&'a str>,
}

/// Rules 1 to 7 for mapping `m` (its new state) in the caller's account; `except` is the
/// mapping being updated (it does not conflict with itself).
fn check_placement(
    state: &State,
    cx: &Ctx<'_>,
    m: &ApiMapping,
    except: Option<&str>,
) -> Result<(), Violation> {
    let (domain, key) = (m.domain_name.as_str(), m.api_mapping_key.as_str());
    let entry = domain_in_account(state, cx.account, domain)?;
    let api = api_in_account(state, cx.account, &m.api_id)?;
    stage_of(state, &m.api_id, &m.stage)?;
    rules::key_free(state, domain, key, except)?;
    let limit = cx.limits.max_multi_level_mappings_per_domain;
    rules::multi_level_allowed(state, entry, api, key, except, limit)?;
    rules::endpoint_suits(entry, api)?;
    rules::family_free(state, entry, api, except)?;
    Ok(())
}

pub(super) fn create(
    state: &mut State,
    cx: &Ctx<'_>,
    domain_name: &str,
    key: &str,
    api_id: &str,
    stage: &str,
) -> Done {
    let mut mapping = new_record!(
        cx,
        ApiMapping {
            api_mapping_id: String::new(),
            domain_name: domain_name.into(),
            api_mapping_key: key.into(),
            api_id: api_id.into(),
            stage: stage.into(),
        }
    );
    check_placement(state, cx, &mapping, None)?;
    mapping.api_mapping_id = loop {
        let id = ids::api_mapping_id();
        if state.mapping(domain_name, &id).is_none() {
            break id;
        }
    };
    stored(state, resource::Resource::ApiMapping(mapping))
}

/// The mapping named by `target`, if its domain is in the caller's account, at the write's
/// expected revision (0: any).
fn existing<'s>(
    state: &'s State,
    cx: &Ctx<'_>,
    target: &Target<'_>,
) -> Result<&'s Arc<ApiMapping>, Violation> {
    domain_in_account(state, cx.account, target.domain_name)?;
    let m = state
        .mapping(target.domain_name, target.api_mapping_id)
        .ok_or_else(|| Violation::MappingNotFound(target.api_mapping_id.into()))?;
    cx.expects(
        || format!("API mapping {}", target.api_mapping_id),
        m.mod_revision,
    )?;
    Ok(m)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    target: Target<'_>,
    patch: Patch<'_>,
) -> Done {
    let mut mapping = (**existing(state, cx, &target)?).clone();
    if let Some(k) = patch.api_mapping_key {
        mapping.api_mapping_key = k.into();
    }
    if let Some(a) = patch.api_id {
        mapping.api_id = a.into();
    }
    if let Some(s) = patch.stage {
        mapping.stage = s.into();
    }
    check_placement(state, cx, &mapping, Some(target.api_mapping_id))?;
    mapping.mod_revision = cx.revision;
    stored(state, resource::Resource::ApiMapping(mapping))
}

pub(super) fn delete(state: &mut State, cx: &Ctx<'_>, target: Target<'_>) -> Done {
    let mapping = existing(state, cx, &target)?.clone();
    let record = resource::Resource::ApiMapping((*mapping).clone());
    removed(state, cx.revision, Vec::new(), record)
}
