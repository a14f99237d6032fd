//! `mapreg check`: an offline consistency check of a data dir.
//!
//! Reads every record and checks every rule's invariant over them: each stage's API and each
//! mapping's domain, API and stage exist in the mapping's account (rules 1, 2), keys are unique
//! per domain (5), no domain mixes WebSocket with HTTP/REST (6), WEBSOCKET and HTTP mappings and
//! multi-level keys are only on REGIONAL + TLS_1_2 domains and multi-level keys only for HTTP
//! and REST (4, 7). Then the change log: exactly the revisions after the compaction point up to
//! the store's revision, each decodable, and the records agree with its last entry (what the
//! server checks when it opens the store). Reads only.

use std::collections::{HashMap, HashSet};

use super::{Engine, codec, history, registry};
use crate::domain::rules::{DomainCounters, endpoint_of};
use crate::domain::validate;
use crate::error::Result;
use crate::pb::{EndpointType, ProtocolType, SecurityPolicy, resource};

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Records seen: APIs, stages, domain names, API mappings.
    pub counts: [u64; 4],
    /// The store's revision.
    pub revision: u64,
    /// The compaction point.
    pub compact_revision: u64,
    /// Change-log entries above the compaction point.
    pub log_entries: u64,
    /// Every violation, one sentence each. Empty: consistent.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether the data dir is consistent.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks `engine`'s store; see the module documentation. Errors only when it cannot be read.
pub fn check(engine: &dyn Engine) -> Result<Report> {
    let mut r = Report {
        revision: engine.revision()?,
        compact_revision: engine.compact_revision()?,
        ..Report::default()
    };
    let mut apis = HashMap::new();
    let mut stages = HashSet::new();
    let mut domains = HashMap::new();
    let mut mappings = Vec::new();
    for kv in engine.scan_records() {
        let (k, v) = kv?;
        let shown = String::from_utf8_lossy(&k).replace('\0', "/");
        let res = match codec::decode_record(&k, &v) {
            Ok(Some(res)) => res,
            Ok(None) => {
                r.problems.push(format!("{shown} is not a record key"));
                continue;
            }
            Err(e) => {
                r.problems
                    .push(format!("record {shown} does not decode: {e}"));
                continue;
            }
        };
        let m = registry::mod_revision(&res);
        if m > r.revision {
            r.problems.push(format!(
                "record {shown} has mod_revision {m} above the store revision {}",
                r.revision
            ));
        }
        match res {
            resource::Resource::Api(a) => {
                r.counts[0] += 1;
                apis.insert(a.api_id.clone(), a);
            }
            resource::Resource::Stage(s) => {
                r.counts[1] += 1;
                stages.insert((s.api_id.clone(), s.stage_name.clone(), s.account_id.clone()));
            }
            resource::Resource::DomainName(d) => {
                r.counts[2] += 1;
                domains.insert(d.domain_name.clone(), d);
            }
            resource::Resource::ApiMapping(m) => {
                r.counts[3] += 1;
                mappings.push(m);
            }
        }
    }
    for (api_id, stage, account) in &stages {
        match apis.get(api_id) {
            None => r
                .problems
                .push(format!("stage {stage} belongs to missing API {api_id}")),
            Some(a) if &a.account_id != account => r.problems.push(format!(
                "stage {stage} of API {api_id} is in account {account}, its API in {}",
                a.account_id
            )),
            Some(_) => {}
        }
    }
    let mut counters: HashMap<String, DomainCounters> = HashMap::new();
    let mut keys = HashSet::new();
    for m in &mappings {
        let what = format!(
            "mapping {} (key {:?}) of {}",
            m.api_mapping_id, m.api_mapping_key, m.domain_name
        );
        let regional_tls12 = match domains.get(&m.domain_name) {
            None => {
                r.problems
                    .push(format!("{what}: its domain name is missing"));
                true
            }
            Some(d) => {
                if d.account_id != m.account_id {
                    r.problems
                        .push(format!("{what}: its domain is in another account"));
                }
                let cfg = d
                    .domain_name_configurations
                    .first()
                    .cloned()
                    .unwrap_or_default();
                endpoint_of(&cfg) == (EndpointType::Regional, SecurityPolicy::Tls12)
            }
        };
        let protocol = match apis.get(&m.api_id) {
            None => {
                r.problems
                    .push(format!("{what}: its API {} is missing", m.api_id));
                ProtocolType::Http
            }
            Some(a) => {
                if a.account_id != m.account_id {
                    r.problems
                        .push(format!("{what}: its API is in another account"));
                }
                ProtocolType::try_from(a.protocol_type).unwrap_or(ProtocolType::Http)
            }
        };
        if !stages.contains(&(m.api_id.clone(), m.stage.clone(), m.account_id.clone())) {
            r.problems
                .push(format!("{what}: its stage {} is missing", m.stage));
        }
        if !keys.insert((m.domain_name.clone(), m.api_mapping_key.clone())) {
            r.problems.push(format!("{what}: its key is used twice"));
        }
        let multi = validate::is_multi_level(&m.api_mapping_key);
        if multi && protocol == ProtocolType::Websocket {
            r.problems
                .push(format!("{what}: a multi-level key for a WEBSOCKET API"));
        }
        if !regional_tls12 && (multi || protocol != ProtocolType::Rest) {
            r.problems.push(format!(
                "{what}: its domain is not REGIONAL with TLS_1_2, which it needs"
            ));
        }
        counters
            .entry(m.domain_name.clone())
            .or_default()
            .add(protocol, &m.api_mapping_key);
    }
    for (domain, c) in &counters {
        if c.websocket > 0 && c.http + c.rest > 0 {
            r.problems.push(format!(
                "domain {domain} mixes WebSocket ({}) and HTTP/REST ({}) mappings",
                c.websocket,
                c.http + c.rest
            ));
        }
    }

    // The change log: exactly compact_revision+1 ..= revision, each entry's history hash
    // following from the one before (SPEC.md 8.3).
    let mut next = r.compact_revision + 1;
    let mut hash = engine.compact_hash()?;
    let mut chain_ok = true;
    loop {
        let entries = engine.read_log(next, r.revision, 1024)?;
        let Some(&(last, _)) = entries.last() else {
            break;
        };
        for (rev, v) in &entries {
            if *rev != next {
                r.problems.push(format!(
                    "change log: expected revision {next}, found {rev} (gap)"
                ));
            }
            let (cs, stored) = history::split(v);
            if codec::decode_change_set(cs).is_err() {
                r.problems
                    .push(format!("change log: revision {rev} does not decode"));
            }
            let computed = history::next(&hash, cs);
            if chain_ok && stored.is_some_and(|s| s != computed) {
                chain_ok = false;
                r.problems.push(format!(
                    "history hash chain broken at revision {rev}: its stored hash does not \
                     follow from the revisions before it"
                ));
            }
            hash = computed;
            next = rev + 1;
        }
        r.log_entries += entries.len() as u64;
        if last >= r.revision {
            break;
        }
    }
    if next != r.revision + 1 {
        r.problems.push(format!(
            "change log ends at revision {}, the store revision is {}",
            next - 1,
            r.revision
        ));
    }
    // What the server checks when it opens the store: records against the last log entry.
    if let Err(e) = registry::load(engine) {
        r.problems
            .push(format!("the server would refuse this store: {e}"));
    }
    Ok(r)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::memory::MemoryEngine;
    use crate::store::{Batch, keys};

    /// A mapping of `a.com` to stage `s` of API `x` at revision 1, none of which exist: it
    /// breaks rules 1 and 2 in any store (or snapshot) that holds only it.
    pub(in crate::store) fn dangling_mapping() -> resource::Resource {
        resource::Resource::ApiMapping(crate::pb::ApiMapping {
            domain_name: "a.com".into(),
            api_mapping_id: "abc123".into(),
            api_id: "x".into(),
            stage: "s".into(),
            mod_revision: 1,
            create_revision: 1,
            ..Default::default()
        })
    }

    #[test]
    fn finds_dangling_mappings_and_log_gaps() {
        let e = MemoryEngine::new();
        assert!(check(&e).unwrap().ok());
        // A mapping whose domain, API and stage are missing, at revision 1 with its log entry.
        let m = dangling_mapping();
        let batch = Batch {
            base: 0,
            revision: 1,
            cleared: Vec::new(),
            records: vec![(keys::of(&m), Some(codec::encode_record(&m)))],
            log: vec![(1, Vec::new())],
        };
        e.commit(&batch).unwrap();
        let r = check(&e).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("domain name is missing")),
            "{:?}",
            r.problems
        );
        assert!(r.problems.iter().any(|p| p.contains("stage s is missing")));
        // A revision with no log entry.
        let gap = Batch {
            base: 1,
            revision: 3,
            cleared: Vec::new(),
            records: vec![],
            log: vec![(3, Vec::new())],
        };
        e.commit(&gap).unwrap();
        let r = check(&e).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("gap")),
            "{:?}",
            r.problems
        );
    }
}
