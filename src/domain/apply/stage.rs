//! CreateStage, UpdateStage, DeleteStage.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Ctx, Done, removed, stored};
use crate::domain::rules::{self, Violation, api_in_account, stage_of};
use crate::domain::state::State;
use crate::pb::{Stage, resource};

pub(super) fn create(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    api_id: &str,
    stage_name: &str,
    description: &str,
    tags: &HashMap<String, String>,
) -> Done {
    api_in_account(state, account, api_id)?;
    if state.stage(api_id, stage_name).is_some() {
        return Err(Violation::StageExists {
            api_id: api_id.into(),
            stage: stage_name.into(),
        });
    }
    let stage = Stage {
        api_id: api_id.into(),
        stage_name: stage_name.into(),
        description: description.into(),
        tags: tags.clone(),
        created_date: Some(cx.now),
        last_updated_date: Some(cx.now),
        account_id: account.into(),
        create_revision: cx.revision,
        mod_revision: cx.revision,
    };
    stored(state, resource::Resource::Stage(stage))
}

/// The stage, of an API in the caller's account, at `expected_revision` (0: any).
pub(super) fn existing<'s>(
    state: &'s State,
    account: &str,
    api_id: &str,
    stage_name: &str,
    expected_revision: u64,
) -> Result<&'s Arc<Stage>, Violation> {
    api_in_account(state, account, api_id)?;
    let stage = stage_of(state, api_id, stage_name)?;
    rules::revision_matches(
        || format!("stage {stage_name}"),
        expected_revision,
        stage.mod_revision,
    )?;
    Ok(stage)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    api_id: &str,
    stage_name: &str,
    description: &Option<String>,
    expected_revision: u64,
) -> Done {
    let mut stage = (**existing(state, account, api_id, stage_name, expected_revision)?).clone();
    if let Some(d) = description {
        stage.description = d.clone();
    }
    stage.last_updated_date = Some(cx.now);
    stage.mod_revision = cx.revision;
    stored(state, resource::Resource::Stage(stage))
}

pub(super) fn delete(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    api_id: &str,
    stage_name: &str,
    expected_revision: u64,
) -> Done {
    let stage = existing(state, account, api_id, stage_name, expected_revision)?.clone();
    rules::stage_deletable(state, api_id, stage_name)?;
    removed(
        state,
        cx.revision,
        resource::Resource::Stage((*stage).clone()),
    )
}
