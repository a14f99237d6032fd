//! TagResource / UntagResource: a tag change on an API, a stage or a domain name. The record
//! keeps every other field; it takes the write's revision and one PUT event, like any update.

use std::collections::HashMap;

use super::{Ctx, Done, stored};
use crate::domain::arn::Tagged;
use crate::domain::rules::{self, Checked, Violation, api_in_account, domain_in_account, stage_of};
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

pub(super) fn tag(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    target: &Tagged,
    change: Change<'_>,
    expected_revision: u64,
) -> Done {
    let record = match target {
        Tagged::Api { api_id } => {
            let mut api = (**api_in_account(state, account, api_id)?).clone();
            let what = || format!("API {api_id}");
            rules::revision_matches(what, expected_revision, api.mod_revision)?;
            changed(&mut api.tags, &change, what)?;
            api.mod_revision = cx.revision;
            resource::Resource::Api(api)
        }
        Tagged::Stage { api_id, stage_name } => {
            api_in_account(state, account, api_id)?;
            let mut stage = (**stage_of(state, api_id, stage_name)?).clone();
            let what = || format!("stage {stage_name}");
            rules::revision_matches(what, expected_revision, stage.mod_revision)?;
            changed(&mut stage.tags, &change, what)?;
            stage.last_updated_date = Some(cx.now);
            stage.mod_revision = cx.revision;
            resource::Resource::Stage(stage)
        }
        Tagged::DomainName { domain_name } => {
            let mut domain = (*domain_in_account(state, account, domain_name)?.record).clone();
            let what = || format!("domain name {domain_name}");
            rules::revision_matches(what, expected_revision, domain.mod_revision)?;
            changed(&mut domain.tags, &change, what)?;
            domain.mod_revision = cx.revision;
            resource::Resource::DomainName(domain)
        }
    };
    stored(state, record)
}
