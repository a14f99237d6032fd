//! CreateDomainName, UpdateDomainName (re-checks rules 4 and 7 against its mappings),
//! DeleteDomainName (deletes its mappings in the same revision, one event each).

use std::collections::HashMap;

use super::{Ctx, Done, WriteResult, delete_event, stored};
use crate::domain::ids;
use crate::domain::rules::{self, Violation, domain_in_account};
use crate::domain::state::{DomainEntry, State};
use crate::pb::{DomainName, DomainNameConfiguration, resource};

pub(super) fn create(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    domain_name: &str,
    configuration: &DomainNameConfiguration,
    tags: &HashMap<String, String>,
) -> Done {
    // Domain names are unique across accounts.
    if state.domain(domain_name).is_some() {
        return Err(Violation::DomainExists(domain_name.into()));
    }
    let mut cfg = configuration.clone();
    cfg.api_gateway_domain_name = ids::api_gateway_domain_name();
    let domain = DomainName {
        domain_name: domain_name.into(),
        domain_name_configurations: vec![cfg],
        api_mapping_selection_expression: "$request.basepath".to_string(),
        tags: tags.clone(),
        created_date: Some(cx.now),
        account_id: account.into(),
        create_revision: cx.revision,
        mod_revision: cx.revision,
    };
    stored(state, resource::Resource::DomainName(domain))
}

/// The domain name, in the caller's account and at `expected_revision` (0: any).
pub(super) fn existing<'s>(
    state: &'s State,
    account: &str,
    domain_name: &str,
    expected_revision: u64,
) -> Result<&'s DomainEntry, Violation> {
    let entry = domain_in_account(state, account, domain_name)?;
    rules::revision_matches(
        || format!("domain name {domain_name}"),
        expected_revision,
        entry.record.mod_revision,
    )?;
    Ok(entry)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    domain_name: &str,
    configuration: Option<&DomainNameConfiguration>,
    expected_revision: u64,
) -> Done {
    let entry = existing(state, account, domain_name, expected_revision)?;
    let mut domain = (*entry.record).clone();
    if let Some(patch) = configuration {
        let next = rules::apply_configuration_patch(&rules::configuration(entry), patch);
        rules::configuration_suits(entry, &next)?;
        domain.domain_name_configurations = vec![next];
    }
    domain.mod_revision = cx.revision;
    stored(state, resource::Resource::DomainName(domain))
}

pub(super) fn delete(
    state: &mut State,
    cx: &Ctx<'_>,
    account: &str,
    domain_name: &str,
    expected_revision: u64,
) -> Done {
    let entry = existing(state, account, domain_name, expected_revision)?;
    let record = entry.record.clone();
    let mappings: Vec<_> = state.mappings_on(domain_name).cloned().collect();
    let mut events = Vec::with_capacity(mappings.len() + 1);
    for m in mappings {
        state.delete_mapping(domain_name, &m.api_mapping_id);
        events.push(delete_event(resource::Resource::ApiMapping((*m).clone())));
    }
    state.delete_domain(domain_name);
    events.push(delete_event(resource::Resource::DomainName(
        (*record).clone(),
    )));
    Ok((WriteResult::Deleted(cx.revision), events))
}
