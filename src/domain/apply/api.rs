//! CreateApi, UpdateApi, DeleteApi (which deletes the API's stages with it).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Ctx, Done, WriteResult, delete_event, stored};
use crate::domain::ids;
use crate::domain::rules::{self, Violation, api_in_account};
use crate::domain::state::State;
use crate::pb::{Api, ProtocolType, resource};

pub(super) fn create(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    name: &str,
    protocol: ProtocolType,
    description: &str,
    tags: &HashMap<String, String>,
) -> Done {
    let api_id = loop {
        let id = ids::api_id();
        if state.api(&id).is_none() {
            break id;
        }
    };
    let api = Api {
        api_id,
        name: name.into(),
        protocol_type: protocol as i32,
        description: description.into(),
        tags: tags.clone(),
        created_date: Some(cx.now),
        account_id: account.into(),
        create_revision: cx.revision,
        mod_revision: cx.revision,
        ..Default::default()
    };
    stored(state, resource::Resource::Api(api))
}

/// The API, in the caller's account and at `expected_revision` (0: any).
fn existing<'s>(
    state: &'s State,
    account: &str,
    api_id: &str,
    expected_revision: u64,
) -> Result<&'s Arc<Api>, Violation> {
    let api = api_in_account(state, account, api_id)?;
    rules::revision_matches(
        || format!("API {api_id}"),
        expected_revision,
        api.mod_revision,
    )?;
    Ok(api)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    api_id: &str,
    name: &Option<String>,
    description: &Option<String>,
    expected_revision: u64,
) -> Done {
    let mut api = (**existing(state, account, api_id, expected_revision)?).clone();
    if let Some(n) = name {
        api.name = n.clone();
    }
    if let Some(d) = description {
        api.description = d.clone();
    }
    api.mod_revision = cx.revision;
    stored(state, resource::Resource::Api(api))
}

pub(super) fn delete(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    api_id: &str,
    expected_revision: u64,
) -> Done {
    let api = existing(state, account, api_id, expected_revision)?.clone();
    // No mapping points at the API, so none points at any of its stages either.
    rules::api_deletable(state, api_id)?;
    let stages: Vec<_> = state.stages_of(api_id).cloned().collect();
    let mut events = Vec::with_capacity(stages.len() + 1);
    for s in stages {
        state.delete_stage(api_id, &s.stage_name);
        events.push(delete_event(resource::Resource::Stage((*s).clone())));
    }
    state.delete_api(api_id);
    events.push(delete_event(resource::Resource::Api((*api).clone())));
    Ok((WriteResult::Deleted(cx.revision), events))
}
