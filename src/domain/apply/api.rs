//! CreateApi, UpdateApi, DeleteApi (which deletes the API's stages with it).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Ctx, Done, removed, resources, stored};
use crate::domain::ids;
use crate::domain::rules::{self, Violation, api_in_account};
use crate::domain::selection::{self, Selection};
use crate::domain::state::State;
use crate::pb::{Api, ProtocolType, resource};

/// A new API's fields, already checked.
pub(super) struct Fields<'a> {
    pub(super) name: &'a str,
    pub(super) protocol: ProtocolType,
    pub(super) description: &'a str,
    pub(super) tags: &'a HashMap<String, String>,
    pub(super) selection: &'a Selection,
}

/// An update's fields; None leaves the field as it is.
pub(super) struct Patch<'a> {
    pub(super) name: Option<&'a str>,
    pub(super) description: Option<&'a str>,
    pub(super) route_selection_expression: Option<&'a str>,
    pub(super) api_key_selection_expression: Option<&'a str>,
}

pub(super) fn create(state: &mut State, cx: &Ctx<'_>, f: Fields<'_>) -> Done {
    let api_id = loop {
        let id = ids::api_id();
        if state.api(&id).is_none() {
            break id;
        }
    };
    let api = new_record!(
        cx,
        dated Api {
            api_id,
            name: f.name.into(),
            protocol_type: f.protocol as i32,
            description: f.description.into(),
            tags: f.tags.clone(),
            route_selection_expression: f.selection.route.clone(),
            api_key_selection_expression: f.selection.api_key.clone(),
        }
    );
    stored(state, resource::Resource::Api(api))
}

/// The API, in the caller's account and at the write's expected revision (0: any).
pub(super) fn existing<'s>(
    state: &'s State,
    cx: &Ctx<'_>,
    api_id: &str,
) -> Result<&'s Arc<Api>, Violation> {
    let api = api_in_account(state, cx.account, api_id)?;
    cx.expects(|| format!("API {api_id}"), api.mod_revision)?;
    Ok(api)
}

pub(super) fn update(state: &mut State, cx: &Ctx<'_>, api_id: &str, patch: Patch<'_>) -> Done {
    let mut api = (**existing(state, cx, api_id)?).clone();
    let protocol = ProtocolType::try_from(api.protocol_type).unwrap_or(ProtocolType::Http);
    let sel = selection::for_update(
        protocol,
        &Selection::of(&api),
        patch.route_selection_expression,
        patch.api_key_selection_expression,
    )?;
    (
        api.route_selection_expression,
        api.api_key_selection_expression,
    ) = (sel.route, sel.api_key);
    if let Some(n) = patch.name {
        api.name = n.into();
    }
    if let Some(d) = patch.description {
        api.description = d.into();
    }
    api.mod_revision = cx.revision;
    stored(state, resource::Resource::Api(api))
}

/// Deletes the API's stages, then the API: one DELETE event each, in that order.
pub(super) fn delete(state: &mut State, cx: &Ctx<'_>, api_id: &str) -> Done {
    let api = resource::Resource::Api((**existing(state, cx, api_id)?).clone());
    // No mapping points at the API, so none points at any of its stages either.
    rules::api_deletable(state, api_id)?;
    let stages = resources(state.stages_of(api_id), resource::Resource::Stage);
    removed(state, cx.revision, stages, api)
}
