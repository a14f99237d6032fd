//! `mapreg check`: an offline consistency check of a data dir.
//!
//! Recomputes every index from the records and compares it with what is stored, checks that
//! every mapping's domain, API and stage exist in one account, that no domain mixes WebSocket
//! with HTTP/REST, and that the change log holds exactly the revisions after the compaction
//! point up to the meta revision, with no gap and no duplicate. Reads only.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Db, Space, codec, keys};
use crate::domain::{DomainCounters, RefCounts};
use crate::error::Result;
use crate::pb::{ProtocolType, resource};

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Records seen: APIs, stages, domain names, API mappings.
    pub counts: [u64; 4],
    /// The meta revision.
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

/// Checks `db`; see the module documentation. Errors only when the store cannot be read.
pub fn check(db: &Db) -> Result<Report> {
    let mut r = Report {
        revision: db.stored_revision()?,
        compact_revision: db.compact_revision()?,
        ..Report::default()
    };
    let mut apis = HashMap::new();
    let mut stages = HashSet::new();
    let mut domains = HashMap::new();
    let mut mappings = Vec::new();
    for item in db.scan_records() {
        let (_, res) = item?;
        let Some(res) = res.resource else { continue };
        let mod_revision = match &res {
            resource::Resource::Api(a) => a.mod_revision,
            resource::Resource::Stage(s) => s.mod_revision,
            resource::Resource::DomainName(d) => d.mod_revision,
            resource::Resource::ApiMapping(m) => m.mod_revision,
        };
        if mod_revision > r.revision {
            r.problems.push(format!(
                "a record has mod_revision {mod_revision} above the store revision {}: {res:?}",
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

    // The indexes the records imply.
    let mut expected: BTreeMap<Vec<u8>, Expect> = BTreeMap::new();
    for a in apis.values() {
        expected.insert(keys::account_api(&a.account_id, &a.api_id), Expect::Empty);
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
    for d in domains.values() {
        expected.insert(
            keys::account_domain(&d.account_id, &d.domain_name),
            Expect::Empty,
        );
    }
    let mut counters: HashMap<String, DomainCounters> = HashMap::new();
    let mut api_refs: HashMap<String, RefCounts> = HashMap::new();
    let mut stage_refs: HashMap<(String, String), RefCounts> = HashMap::new();
    for m in &mappings {
        let what = format!(
            "mapping {} (key {:?}) of {}",
            m.api_mapping_id, m.api_mapping_key, m.domain_name
        );
        match domains.get(&m.domain_name) {
            None => r
                .problems
                .push(format!("{what}: its domain name is missing")),
            Some(d) if d.account_id != m.account_id => r
                .problems
                .push(format!("{what}: its domain is in another account")),
            Some(_) => {}
        }
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
        if expected
            .insert(
                keys::mapping_key(&m.domain_name, &m.api_mapping_key),
                Expect::Value(m.api_mapping_id.as_bytes().to_vec()),
            )
            .is_some()
        {
            r.problems.push(format!("{what}: its key is used twice"));
        }
        counters
            .entry(m.domain_name.clone())
            .or_default()
            .add(protocol, &m.api_mapping_key);
        *api_refs
            .entry(m.api_id.clone())
            .or_default()
            .entry(m.domain_name.clone())
            .or_default() += 1;
        *stage_refs
            .entry((m.api_id.clone(), m.stage.clone()))
            .or_default()
            .entry(m.domain_name.clone())
            .or_default() += 1;
    }
    for (domain, c) in &counters {
        if c.websocket > 0 && c.http + c.rest > 0 {
            r.problems.push(format!(
                "domain {domain} mixes WebSocket ({}) and HTTP/REST ({}) mappings",
                c.websocket,
                c.http + c.rest
            ));
        }
        expected.insert(keys::domain_counters(domain), Expect::Counters(*c));
    }
    for (api, refs) in api_refs {
        expected.insert(keys::api_refs(&api), Expect::Refs(refs));
    }
    for ((api, stage), refs) in stage_refs {
        expected.insert(keys::stage_refs(&api, &stage), Expect::Refs(refs));
    }

    // Every stored index entry against the expected ones, and the reverse.
    for prefix in [&b"ai\0"[..], b"di\0", b"k\0", b"dc\0", b"ra\0", b"rs\0"] {
        for kv in db.store().scan(Space::Data, prefix, None) {
            let (k, v) = kv?;
            let shown = String::from_utf8_lossy(&k).replace('\0', "/");
            match expected.remove(&k) {
                None => {
                    // Zeroed counters and empty reference lists are as good as absent.
                    let harmless = (prefix == b"dc\0"
                        && codec::decode_counters(Some(&v))? == DomainCounters::default())
                        || ((prefix == b"ra\0" || prefix == b"rs\0")
                            && codec::decode_refs(Some(&v))?.is_empty());
                    if !harmless {
                        r.problems
                            .push(format!("index entry {shown} matches no record"));
                    }
                }
                Some(e) => {
                    if let Some(why) = e.mismatch(&v)? {
                        r.problems.push(format!("index entry {shown}: {why}"));
                    }
                }
            }
        }
    }
    for k in expected.keys() {
        let shown = String::from_utf8_lossy(k).replace('\0', "/");
        r.problems
            .push(format!("index entry {shown} is missing for a record"));
    }

    // The change log: exactly compact_revision+1 ..= revision.
    let mut next = r.compact_revision + 1;
    for kv in db.store().scan(Space::Log, b"", None) {
        let (k, v) = kv?;
        let rev = codec::decode_u64(&k)?;
        if rev <= r.compact_revision {
            continue; // left over by an interrupted compaction: never read, harmless
        }
        if rev != next {
            r.problems.push(format!(
                "change log: expected revision {next}, found {rev} (gap or duplicate)"
            ));
        }
        if codec::decode::<crate::pb::ChangeSet>(&v).is_err() {
            r.problems
                .push(format!("change log: revision {rev} does not decode"));
        }
        next = rev + 1;
        r.log_entries += 1;
    }
    if next != r.revision + 1 {
        r.problems.push(format!(
            "change log ends at revision {}, the store revision is {}",
            next - 1,
            r.revision
        ));
    }
    Ok(r)
}

enum Expect {
    Empty,
    Value(Vec<u8>),
    Counters(DomainCounters),
    Refs(RefCounts),
}

impl Expect {
    fn mismatch(&self, stored: &[u8]) -> Result<Option<String>> {
        Ok(match self {
            Expect::Empty => None,
            Expect::Value(v) if v.as_slice() == stored => None,
            Expect::Value(v) => Some(format!(
                "points at {}, the record says {}",
                String::from_utf8_lossy(stored),
                String::from_utf8_lossy(v)
            )),
            Expect::Counters(c) => {
                let got = codec::decode_counters(Some(stored))?;
                (got != *c).then(|| format!("counts {got:?}, the records give {c:?}"))
            }
            Expect::Refs(refs) => {
                let got = codec::decode_refs(Some(stored))?;
                (got != *refs).then(|| format!("references {got:?}, the records give {refs:?}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::sled::SledStore;
    use crate::store::{Limits, Store, transact};

    fn open(dir: &std::path::Path) -> (Arc<dyn Store>, Db) {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        let db = Db::open(store.clone(), Limits::default()).unwrap();
        (store, db)
    }

    #[test]
    fn finds_stray_indexes_and_log_gaps() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, db) = open(tmp.path());
        assert!(check(&db).unwrap().ok());
        // An index entry for a mapping that does not exist.
        transact(store.as_ref(), |tx| {
            tx.put(
                Space::Data,
                &keys::mapping_key("a.example.com", "v1"),
                b"abc123",
            )
        })
        .unwrap();
        let r = check(&db).unwrap();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("matches no record"));
        // A revision with no log entry.
        transact(store.as_ref(), |tx| {
            tx.put(Space::Meta, keys::META_REVISION, &1u64.to_be_bytes())
        })
        .unwrap();
        let r = check(&db).unwrap();
        assert!(
            r.problems.iter().any(|p| p.contains("change log ends")),
            "{:?}",
            r.problems
        );
    }
}
