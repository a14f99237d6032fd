//! An exact snapshot as of one revision, read while writes go on, without stopping them.
//!
//! The snapshot reads one immutable version of the state ([`State`]): writes after it make new
//! versions and leave this one alone, so it is exact at its revision however long the client
//! takes. It is produced as the client reads, one chunk at a time, from a [`Cursor`] (which
//! section, and the sort key of the last record dealt with). Sections come in a fixed order:
//! APIs, stages, domain names, mappings; each is skipped when the filter's kinds exclude it.
//! With a `domain_names` filter, domain names and mappings are looked up per domain (a map
//! lookup and a key range each), so such a snapshot costs in proportion to what it returns,
//! not to the size of the registry.

use std::sync::Arc;

use prost::Message;

use super::Filter;
use crate::domain::state::{DomainEntry, State};
use crate::pb::{Api, ApiMapping, Resource, ResourceKind, Stage, resource};

/// Records in one `snapshot` message at most.
pub const CHUNK_RECORDS: usize = 500;
/// Encoded bytes in one `snapshot` message, roughly at most.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Records looked at (sent or filtered out) per chunk at most, so a chunk that sends few
/// records still returns soon.
const CHUNK_SCAN: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Apis,
    Stages,
    Domains,
    Mappings,
    Done,
}

impl Section {
    fn next(self) -> Section {
        match self {
            Section::Apis => Section::Stages,
            Section::Stages => Section::Domains,
            Section::Domains => Section::Mappings,
            Section::Mappings | Section::Done => Section::Done,
        }
    }
}

/// Where a snapshot is: its version, and the position in it.
pub struct Cursor {
    state: Arc<State>,
    filter: Filter,
    /// The filter's domains, sorted (None: every domain).
    domains: Option<Vec<String>>,
    section: Section,
    /// The sort key of the last record dealt with in `section`.
    after: Option<String>,
    /// With a domain filter: the index in `domains` of the domain being read.
    domain_index: usize,
}

impl Cursor {
    /// A snapshot of `state` as `filter` sees it.
    pub fn new(state: Arc<State>, filter: Filter) -> Cursor {
        let domains = filter.domain_list();
        Cursor {
            state,
            filter,
            domains,
            section: Section::Apis,
            after: None,
            domain_index: 0,
        }
    }

    /// The revision the snapshot is the state at.
    pub fn revision(&self) -> u64 {
        self.state.revision()
    }

    fn wants(&self, section: Section) -> bool {
        let kind = match section {
            Section::Apis => ResourceKind::Api,
            Section::Stages => ResourceKind::Stage,
            Section::Domains => ResourceKind::DomainName,
            Section::Mappings => ResourceKind::ApiMapping,
            Section::Done => return false,
        };
        self.filter.wants(kind)
    }

    /// The next chunk, or None when the snapshot is complete.
    pub fn next_chunk(&mut self) -> Option<Vec<Resource>> {
        let mut out = Chunk::default();
        while self.section != Section::Done && !out.full() {
            if !self.wants(self.section) {
                self.advance();
                continue;
            }
            let finished = match self.section {
                Section::Apis => self.apis(&mut out),
                Section::Stages => self.stages(&mut out),
                Section::Domains => self.domains(&mut out),
                Section::Mappings => self.mappings(&mut out),
                Section::Done => true,
            };
            if finished {
                self.advance();
            }
        }
        if out.records.is_empty() && self.section == Section::Done {
            None
        } else {
            Some(out.records)
        }
    }

    fn advance(&mut self) {
        self.section = self.section.next();
        self.after = None;
        self.domain_index = 0;
    }

    /// Adds what the filter sees of `items` (sort key and [`Record`]) until
    /// the chunk is full; true when `items` ran out. A record is cloned only if it is sent.
    fn take<'a, T: Record + 'a>(
        filter: &Filter,
        after: &mut Option<String>,
        out: &mut Chunk,
        items: impl Iterator<Item = (impl Into<String>, &'a T)>,
    ) -> bool {
        for (key, r) in items {
            out.scanned += 1;
            let (account, domain) = r.parts();
            if filter.sees(T::KIND, account, domain) {
                out.push(Resource {
                    resource: Some(r.build()),
                });
            }
            *after = Some(key.into());
            if out.full() {
                return false;
            }
        }
        true
    }

    fn apis(&mut self, out: &mut Chunk) -> bool {
        let state = self.state.clone();
        let items = state.apis_from(self.after.as_deref());
        Self::take(&self.filter, &mut self.after, out, items)
    }

    fn stages(&mut self, out: &mut Chunk) -> bool {
        let state = self.state.clone();
        let items = state.stages_from(self.after.as_deref());
        Self::take(&self.filter, &mut self.after, out, items)
    }

    fn domains(&mut self, out: &mut Chunk) -> bool {
        let state = self.state.clone();
        match &self.domains {
            None => {
                let items = state.domains_from(self.after.as_deref());
                Self::take(&self.filter, &mut self.after, out, items)
            }
            Some(names) => {
                let start = self.domain_index;
                let items = names[start..]
                    .iter()
                    .filter_map(|n| state.domain(n).map(|d| (n.as_str(), d)));
                let mut after = None;
                let done = Self::take(&self.filter, &mut after, out, items);
                if let Some(last) = after {
                    self.domain_index = names
                        .iter()
                        .position(|n| *n == last)
                        .map_or(names.len(), |i| i + 1);
                }
                done
            }
        }
    }

    fn mappings(&mut self, out: &mut Chunk) -> bool {
        let state = self.state.clone();
        let Some(names) = self.domains.clone() else {
            let items = state.mappings_from(None, self.after.as_deref());
            return Self::take(&self.filter, &mut self.after, out, items);
        };
        while self.domain_index < names.len() {
            let d = &names[self.domain_index];
            // A domain the watcher may not see has nothing to send: skip its range.
            let visible = state.domain(d).is_some_and(|e| {
                self.filter
                    .sees(ResourceKind::ApiMapping, &e.record.account_id, Some(d))
            });
            if visible {
                let items = state.mappings_from(Some(d), self.after.as_deref());
                let done = Self::take(&self.filter, &mut self.after, out, items);
                if !done {
                    return false;
                }
            }
            self.domain_index += 1;
            self.after = None;
        }
        true
    }
}

/// A record of one section, as the snapshot reads and sends it.
trait Record {
    /// The kind a filter sees it as.
    const KIND: ResourceKind;
    /// Its account and, for a domain name or a mapping, its domain.
    fn parts(&self) -> (&str, Option<&str>);
    /// The record as sent.
    fn build(&self) -> resource::Resource;
}

// APIs and stages belong to an account and to no domain.
macro_rules! domainless {
    ($($kind:ident),*) => {$(
        impl Record for Arc<$kind> {
            const KIND: ResourceKind = ResourceKind::$kind;
            fn parts(&self) -> (&str, Option<&str>) {
                (&self.account_id, None)
            }
            fn build(&self) -> resource::Resource {
                resource::Resource::$kind((**self).clone())
            }
        }
    )*};
}

domainless!(Api, Stage);

impl Record for DomainEntry {
    const KIND: ResourceKind = ResourceKind::DomainName;
    fn parts(&self) -> (&str, Option<&str>) {
        (&self.record.account_id, Some(&self.record.domain_name))
    }
    fn build(&self) -> resource::Resource {
        resource::Resource::DomainName((*self.record).clone())
    }
}

impl Record for Arc<ApiMapping> {
    const KIND: ResourceKind = ResourceKind::ApiMapping;
    fn parts(&self) -> (&str, Option<&str>) {
        (&self.account_id, Some(&self.domain_name))
    }
    fn build(&self) -> resource::Resource {
        resource::Resource::ApiMapping((**self).clone())
    }
}

#[derive(Default)]
struct Chunk {
    records: Vec<Resource>,
    bytes: usize,
    scanned: usize,
}

impl Chunk {
    fn push(&mut self, r: Resource) {
        self.bytes += r.encoded_len();
        self.records.push(r);
    }

    fn full(&self) -> bool {
        self.records.len() >= CHUNK_RECORDS
            || self.bytes >= CHUNK_BYTES
            || self.scanned >= CHUNK_SCAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::Scope;
    use crate::pb::{Api, ApiMapping, DomainName};

    fn state(domains: usize, per_domain: usize) -> Arc<State> {
        let mut s = State::default();
        s.put(resource::Resource::Api(Api {
            api_id: "api1".into(),
            account_id: "1".into(),
            ..Default::default()
        }));
        for d in 0..domains {
            let name = format!("d{d:04}.example.com");
            s.put(resource::Resource::DomainName(DomainName {
                domain_name: name.clone(),
                account_id: if d % 2 == 0 { "1" } else { "2" }.into(),
                ..Default::default()
            }));
            for k in 0..per_domain {
                s.put(resource::Resource::ApiMapping(ApiMapping {
                    domain_name: name.clone(),
                    api_mapping_id: format!("m{k:05}"),
                    api_mapping_key: format!("k{k:05}"),
                    api_id: "api1".into(),
                    account_id: if d % 2 == 0 { "1" } else { "2" }.into(),
                    ..Default::default()
                }));
            }
        }
        s.set_revision(7);
        Arc::new(s)
    }

    fn all(mut c: Cursor) -> Vec<Resource> {
        let mut out = Vec::new();
        while let Some(chunk) = c.next_chunk() {
            assert!(chunk.len() <= CHUNK_RECORDS);
            out.extend(chunk);
        }
        out
    }

    #[test]
    fn everything_once_in_order_across_chunks() {
        let s = state(30, 40);
        let got = all(Cursor::new(
            s.clone(),
            Filter::new(&[], &[], Scope::All).unwrap(),
        ));
        let expected: usize = 1 + 30 + 30 * 40;
        assert_eq!(got.len(), expected);
        let mut seen = std::collections::HashSet::new();
        for r in &got {
            assert!(seen.insert(format!("{r:?}")), "duplicate {r:?}");
        }
    }

    #[test]
    fn domain_filter_reads_only_those_domains_and_scope_applies() {
        let s = state(30, 700);
        let f = Filter::new(
            &[
                ResourceKind::DomainName as i32,
                ResourceKind::ApiMapping as i32,
            ],
            &[
                "d0004.example.com".into(),
                "d0002.example.com".into(),
                "d0003.example.com".into(),
                "none.example.com".into(),
            ],
            Scope::Account("1".into()),
        )
        .unwrap();
        let got = all(Cursor::new(s, f));
        // d0002 and d0004 are account 1's; d0003 is account 2's.
        assert_eq!(got.len(), 2 + 2 * 700);
        let mut domains: Vec<_> = got
            .iter()
            .filter_map(|r| match r.resource.as_ref() {
                Some(resource::Resource::ApiMapping(m)) => Some(m.domain_name.clone()),
                _ => None,
            })
            .collect();
        domains.dedup();
        assert_eq!(domains, vec!["d0002.example.com", "d0004.example.com"]);
    }

    #[test]
    fn the_snapshot_ignores_later_versions() {
        let s = state(2, 2);
        let mut c = Cursor::new(s.clone(), Filter::new(&[], &[], Scope::All).unwrap());
        let mut later = (*s).clone();
        later.delete(&resource::Resource::DomainName(DomainName {
            domain_name: "d0000.example.com".into(),
            ..Default::default()
        }));
        drop(later);
        assert_eq!(c.revision(), 7);
        let n: usize = std::iter::from_fn(|| c.next_chunk()).map(|v| v.len()).sum();
        assert_eq!(n, 1 + 2 + 4);
    }
}
