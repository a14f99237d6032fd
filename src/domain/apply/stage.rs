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
    api_id: &str,
    stage_name: &str,
    description: &str,
    tags: &HashMap<String, String>,
) -> Done {
    api_in_account(state, cx.account, api_id)?;
    if state.stage(api_id, stage_name).is_some() {
        return Err(Violation::StageExists {
            api_id: api_id.into(),
            stage: stage_name.into(),
        });
    }
    let stage = new_record!(
        cx,
        dated Stage {
            api_id: api_id.into(),
            stage_name: stage_name.into(),
            description: description.into(),
            tags: tags.clone(),
            last_updated_date: Some(cx.now),
        }
    );
    stored(state, resource::Resource::Stage(stage))
}

/// The stage, of an API in the caller's account, at the write's expected revision (0: any).
pub(super) fn existing<'s>(
    state: &'s State,
    cx: &Ctx<'_>,
    api_id: &str,
    stage_name: &str,
) -> Result<&'s Arc<Stage>, Violation> {
    api_in_account(state, cx.account, api_id)?;
    let stage = stage_of(state, api_id, stage_name)?;
    cx.expects(|| format!("stage {stage_name}"), stage.mod_revision)?;
    Ok(stage)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    api_id: &str,
    stage_name: &str,
    description: &Option<String>,
) -> Done {
    let mut stage = (**existing(state, cx, api_id, stage_name)?).clone();
    if let Some(d) = description {
        stage.description = d.clone();
    }
    stage.last_updated_date = Some(cx.now);
    stage.mod_revision = cx.revision;
    stored(state, resource::Resource::Stage(stage))
}

pub(super) fn delete(state: &mut State, cx: &Ctx<'_>, api_id: &str, stage_name: &str) -> Done {
    let stage = existing(state, cx, api_id, stage_name)?.clone();
    rules::stage_deletable(state, api_id, stage_name)?;
    let record = resource::Resource::Stage((*stage).clone());
    removed(state, cx.revision, Vec::new(), record)
}
