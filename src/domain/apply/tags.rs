//! TagResource / UntagResource: a tag change on an API, a stage or a domain name. The record
//! keeps every other field; it takes the write's revision and one PUT event, like any update.

use std::collections::HashMap;

use super::{Ctx, Done, api, domain_name, stage, stored};
use crate::domain::arn::Tagged;
use crate::domain::rules::{Checked, Violation};
use crate::domain::state::State;
use crate::domain::validate::MAX_TAGS;
use crate::pb::resource;

/// What a tag write does: keys to remove first, then tags to set (added or overwritten).
pub(super) struct Change<'a> {
    pub(super) set: &'a HashMap<String, String>,
    pub(super) remove: &'a [String],
}

/// Applies `change` to `tags` of the record `what`; refuses a result over [`MAX_TAGS`].
fn changed(
    tags: &mut HashMap<String, String>,
    change: &Change<'_>,
    what: impl FnOnce() -> String,
) -> Checked {
    for k in change.remove {
        tags.remove(k);
    }
    tags.extend(change.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    if tags.len() > MAX_TAGS {
        return Err(Violation::TooManyTags {
            what: what(),
            count: tags.len(),
        });
    }
    Ok(())
}

pub(super) fn tag(state: &mut State, cx: &Ctx<'_>, target: &Tagged, change: Change<'_>) -> Done {
    let record = match target {
        Tagged::Api { api_id } => {
            let mut api = (**api::existing(state, cx, api_id)?).clone();
            changed(&mut api.tags, &change, || format!("API {api_id}"))?;
            api.mod_revision = cx.revision;
            resource::Resource::Api(api)
        }
        Tagged::Stage { api_id, stage_name } => {
            let existing = stage::existing(state, cx, api_id, stage_name)?;
            let mut stage = (**existing).clone();
            changed(&mut stage.tags, &change, || format!("stage {stage_name}"))?;
            stage.last_updated_date = Some(cx.now);
            stage.mod_revision = cx.revision;
            resource::Resource::Stage(stage)
        }
        Tagged::DomainName { domain_name } => {
            let existing = domain_name::existing(state, cx, domain_name)?;
            let mut domain = (*existing.record).clone();
            changed(&mut domain.tags, &change, || {
                format!("domain name {domain_name}")
            })?;
            domain.mod_revision = cx.revision;
            resource::Resource::DomainName(domain)
        }
    };
    stored(state, record)
}
