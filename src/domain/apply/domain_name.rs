//! CreateDomainName, UpdateDomainName (re-checks rules 4 and 7 against its mappings),
//! DeleteDomainName (deletes its mappings in the same revision, one event each).

use std::collections::HashMap;

use super::{Ctx, Done, removed, resources, stored};
use crate::domain::ids;
use crate::domain::rules::{self, Violation, domain_in_account};
use crate::domain::state::{DomainEntry, State};
use crate::pb::{DomainName, DomainNameConfiguration, resource};

pub(super) fn create(
    state: &mut State,
    cx: &Ctx<'_>,
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
    let domain = new_record!(
        cx,
        dated DomainName {
            domain_name: domain_name.into(),
            domain_name_configurations: vec![cfg],
            api_mapping_selection_expression: "$request.basepath".to_string(),
            tags: tags.clone(),
        }
    );
    stored(state, resource::Resource::DomainName(domain))
}

/// The domain name, in the caller's account and at the write's expected revision (0: any).
pub(super) fn existing<'s>(
    state: &'s State,
    cx: &Ctx<'_>,
    domain_name: &str,
) -> Result<&'s DomainEntry, Violation> {
    let entry = domain_in_account(state, cx.account, domain_name)?;
    cx.expects(
        || format!("domain name {domain_name}"),
        entry.record.mod_revision,
    )?;
    Ok(entry)
}

pub(super) fn update(
    state: &mut State,
    cx: &Ctx<'_>,
    domain_name: &str,
    configuration: Option<&DomainNameConfiguration>,
) -> Done {
    let entry = existing(state, cx, domain_name)?;
    let mut domain = (*entry.record).clone();
    if let Some(patch) = configuration {
        let next = rules::apply_configuration_patch(&rules::configuration(entry), patch);
        rules::configuration_suits(entry, &next)?;
        domain.domain_name_configurations = vec![next];
    }
    domain.mod_revision = cx.revision;
    stored(state, resource::Resource::DomainName(domain))
}

/// Deletes the domain name's mappings, then the domain name: one DELETE event each, in that
/// order.
pub(super) fn delete(state: &mut State, cx: &Ctx<'_>, domain_name: &str) -> Done {
    let record = existing(state, cx, domain_name)?.record.clone();
    let domain = resource::Resource::DomainName((*record).clone());
    let mappings = resources(
        state.mappings_on(domain_name),
        resource::Resource::ApiMapping,
    );
    removed(state, cx.revision, mappings, domain)
}
