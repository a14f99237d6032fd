//! Cascading deletes as ranges: DeleteDomainName removes the domain and every mapping on it,
//! DeleteApi the API and every stage of it, all in one revision (SPEC.md 2.8). One record
//! removed per child would make the batch as large as the domain (etcd takes at most 128
//! operations per transaction), so a batch instead **clears** the children's key prefix
//! ([`keys::mappings_of`], [`keys::stages_of`]): one operation, whatever their number
//! ([`Batch::cleared`](super::Batch::cleared)). The change-log entry still lists every deleted
//! child, one DELETE event each: watchers and other nodes see exactly what they saw before.
//!
//! A prefix is cleared only when that is exactly what the write does:
//!
//! - the state the batch is built on (its base revision; the commit is conditioned on the
//!   store being there) holds exactly the children the write deletes, and
//! - nothing else in the batch writes under the prefix (no earlier write touched a child, no
//!   later one recreates the parent with new children; etcd would also refuse a transaction
//!   that puts a key inside a range it deletes).
//!
//! Otherwise the children are removed one record each, as before. The writer cuts an engine's
//! batches (when it limits them) so that the second condition holds for every cascade.

use super::{Applied, codec, keys};
use crate::domain::state::State;
use crate::pb::{Event, EventType, resource};

/// The record key of an event's resource, and whether the event deletes it.
pub fn event_key(e: &Event) -> Option<(Vec<u8>, bool)> {
    let r = e.resource.as_ref()?.resource.as_ref()?;
    Some((keys::of(r), e.r#type == EventType::Delete as i32))
}

/// The record keys a write sets or removes, in event order.
pub fn touched(a: &Applied) -> impl Iterator<Item = Vec<u8>> + '_ {
    a.events.iter().filter_map(|e| event_key(e).map(|(k, _)| k))
}

/// The children's prefixes `a` may clear on a batch built on `at`: for each record it deletes
/// together with its children (a domain with its mappings, an API with its stages), the
/// children's prefix, when `at` holds exactly the children `a` deletes (at least one).
pub fn prefixes(a: &Applied, at: &State) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in &a.events {
        if e.r#type != EventType::Delete as i32 {
            continue;
        }
        let Some(r) = e.resource.as_ref().and_then(|r| r.resource.as_ref()) else {
            continue;
        };
        let (prefix, mut at_base): (Vec<u8>, Vec<Vec<u8>>) = match r {
            resource::Resource::DomainName(d) => (
                keys::mappings_of(&d.domain_name),
                at.mappings_on(&d.domain_name)
                    .map(|m| keys::mapping(&d.domain_name, &m.api_mapping_id))
                    .collect(),
            ),
            resource::Resource::Api(api) => (
                keys::stages_of(&api.api_id),
                at.stages_of(&api.api_id)
                    .map(|s| keys::stage(&api.api_id, &s.stage_name))
                    .collect(),
            ),
            _ => continue,
        };
        let mut deleted: Vec<Vec<u8>> = a
            .events
            .iter()
            .filter_map(event_key)
            .filter(|(k, delete)| *delete && k.starts_with(&prefix))
            .map(|(k, _)| k)
            .collect();
        if deleted.is_empty() {
            continue;
        }
        deleted.sort();
        at_base.sort();
        if deleted == at_base {
            out.push(prefix);
        }
    }
    out
}

/// What a batch of `applied` (built on `at`) does to the records: the prefixes it clears, and
/// every other record set or removed, in order. A cascade's prefix is cleared when both
/// conditions of the module documentation hold; otherwise its children are removed one by one.
#[allow(clippy::type_complexity)]
pub fn record_ops(
    applied: &[Applied],
    at: &State,
) -> (Vec<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let mut candidates: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, a) in applied.iter().enumerate() {
        candidates.extend(prefixes(a, at).into_iter().map(|p| (i, p)));
    }
    if candidates.is_empty() {
        let records = applied
            .iter()
            .flat_map(|a| codec::record_changes(&a.events))
            .collect();
        return (Vec::new(), records);
    }
    let cleared: Vec<Vec<u8>> = candidates
        .into_iter()
        .filter(|(i, p)| {
            // Only the write's own deletes of the children may be under it.
            !applied.iter().enumerate().any(|(j, a)| {
                a.events
                    .iter()
                    .filter_map(event_key)
                    .any(|(k, delete)| k.starts_with(p) && (j != *i || !delete))
            })
        })
        .map(|(_, p)| p)
        .collect();
    let records = applied
        .iter()
        .flat_map(|a| codec::record_changes(&a.events))
        .filter(|(k, v)| !(v.is_none() && cleared.iter().any(|p| k.starts_with(p))))
        .collect();
    (cleared, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::apply::{Limits, WriteOp, apply};

    const ACCOUNT: &str = "000000000000";

    fn run(state: &mut State, op: WriteOp) -> Applied {
        apply(state, &op, &Limits::default(), Default::default()).expect("applies")
    }

    /// Creates the HTTP API `shop` in `state`; its id.
    fn create_api(state: &mut State) -> String {
        let op = WriteOp::CreateApi {
            account: ACCOUNT.into(),
            name: "shop".into(),
            protocol: crate::pb::ProtocolType::Http,
            description: String::new(),
            tags: Default::default(),
            selection: Default::default(),
        };
        match run(state, op).result {
            crate::store::WriteResult::Api(a) => a.api_id,
            other => panic!("{other:?}"),
        }
    }

    /// A state with API `api` (stage `prod`) and domain `d.com` holding `n` mappings.
    fn setup(n: usize) -> (State, String) {
        let mut s = State::default();
        let api = create_api(&mut s);
        run(
            &mut s,
            WriteOp::CreateStage {
                account: ACCOUNT.into(),
                api_id: api.clone(),
                stage_name: "prod".into(),
                description: String::new(),
                tags: Default::default(),
            },
        );
        run(&mut s, create_domain("d.com"));
        for i in 0..n {
            run(&mut s, map("d.com", &api, &format!("k{i}")));
        }
        (s, api)
    }

    fn create_domain(name: &str) -> WriteOp {
        WriteOp::CreateDomainName {
            account: ACCOUNT.into(),
            domain_name: name.into(),
            configuration: Default::default(),
            tags: Default::default(),
        }
    }

    fn map(domain: &str, api: &str, key: &str) -> WriteOp {
        WriteOp::CreateApiMapping {
            account: ACCOUNT.into(),
            domain_name: domain.into(),
            api_mapping_key: key.into(),
            api_id: api.into(),
            stage: "prod".into(),
        }
    }

    fn delete_domain(name: &str) -> WriteOp {
        WriteOp::DeleteDomainName {
            account: ACCOUNT.into(),
            domain_name: name.into(),
            expected_revision: 0,
        }
    }

    #[test]
    fn a_domain_deleted_with_its_mappings_clears_their_prefix() {
        let (base, _) = setup(300);
        let mut s = base.clone();
        let a = run(&mut s, delete_domain("d.com"));
        assert_eq!(a.events.len(), 301);
        let (cleared, records) = record_ops(std::slice::from_ref(&a), &base);
        assert_eq!(cleared, vec![keys::mappings_of("d.com")]);
        assert_eq!(records, vec![(keys::domain("d.com"), None)]);
        // No mappings: nothing to clear.
        let mut s = base.clone();
        run(&mut s, create_domain("e.com"));
        let at = s.clone();
        let a = run(&mut s, delete_domain("e.com"));
        assert_eq!(record_ops(&[a], &at).0, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn an_api_deleted_with_its_stages_clears_their_prefix() {
        let mut s = State::default();
        let api = create_api(&mut s);
        for i in 0..200 {
            run(
                &mut s,
                WriteOp::CreateStage {
                    account: ACCOUNT.into(),
                    api_id: api.clone(),
                    stage_name: format!("s{i}"),
                    description: String::new(),
                    tags: Default::default(),
                },
            );
        }
        let base = s.clone();
        let a = run(
            &mut s,
            WriteOp::DeleteApi {
                account: ACCOUNT.into(),
                api_id: api.clone(),
                expected_revision: 0,
            },
        );
        let (cleared, records) = record_ops(&[a], &base);
        assert_eq!(cleared, vec![keys::stages_of(&api)]);
        assert_eq!(records, vec![(keys::api(&api), None)]);
    }

    #[test]
    fn other_writes_under_the_prefix_keep_the_deletes_one_by_one() {
        let (base, api) = setup(3);
        // An earlier write of the batch added a mapping: the base does not hold exactly the
        // children deleted, and the earlier put is under the prefix.
        let mut s = base.clone();
        let first = run(&mut s, map("d.com", &api, "late"));
        let before_delete = s.clone();
        let del = run(&mut s, delete_domain("d.com"));
        let (cleared, records) = record_ops(&[first, del.clone()], &base);
        assert!(cleared.is_empty());
        assert_eq!(records.len(), 1 + 4 + 1);
        // In a batch of its own, built on the state right before it, it clears.
        let (cleared, records) = record_ops(std::slice::from_ref(&del), &before_delete);
        assert_eq!(cleared.len(), 1);
        assert_eq!(records.len(), 1);
        // On a state that lacks one of the mappings it deletes, it does not.
        assert!(record_ops(&[del], &base).0.is_empty());
        // A later write recreates the domain and maps it again: deleted one by one.
        let mut s = base.clone();
        let del = run(&mut s, delete_domain("d.com"));
        let again = run(&mut s, create_domain("d.com"));
        let remap = run(&mut s, map("d.com", &api, "k0"));
        let (cleared, records) = record_ops(&[del, again, remap], &base);
        assert!(cleared.is_empty());
        assert_eq!(records.len(), 4 + 1 + 1);
    }
}
