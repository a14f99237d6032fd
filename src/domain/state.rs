//! The registry's state at one revision: every record, and the indexes the rules and reads need,
//! as an immutable, cheaply shared version.
//!
//! A [`State`] is a set of persistent ordered maps (`imbl::OrdMap`, a B-tree with structural
//! sharing): cloning one is O(1), and changing the clone copies only the O(log n) nodes on the
//! changed paths. So the writer derives the next version from the current one while readers,
//! snapshots and watchers keep using the versions they hold, with no lock and no copy of the
//! registry. Why `imbl` rather than our own sharing: it is a maintained crate with ordered
//! range scans (keyset pagination, per-domain ranges), and its node size (16) keeps small
//! registries small.
//!
//! Index layout (composite keys are joined with NUL, which no identifier, name or key contains,
//! so a prefix range never runs into a neighbour's entries):
//!
//! | map | key | value |
//! |---|---|---|
//! | `apis` | `api_id` | Api |
//! | `account_apis` | `account\0api_id` | the account's APIs in id order |
//! | `stages` | `api_id\0stage` | Stage |
//! | `domains` | `domain` | DomainName + its mapping counters (rules 4, 6, 7) |
//! | `account_domains` | `account\0domain` | the account's domains in name order |
//! | `mappings` | (`domain`, `api_mapping_id`) | ApiMapping |
//! | `keys` | (`domain`, `api_mapping_key`) | the same ApiMapping: rule 5, lists in key order, routing |
//! | `api_refs` | `api_id\0domain` | mappings on `domain` pointing at the API (rule 8) |
//! | `stage_refs` | `api_id\0stage\0domain` | mappings on `domain` pointing at the stage |
//!
//! The two mapping indexes are sets of the shared record itself, ordered by the record's own
//! fields (`ById`, `ByKey`) and searched with a `Pos`: an entry is one pointer, with no
//! key string beside the record. Mappings are most of a large registry, and a joined key per
//! index entry (and the half-empty leaves that keys inserted in order leave behind) cost more
//! than the record itself.
//!
//! The mutators ([`State::put`], [`State::delete`]) keep every index consistent with the records
//! and check no rule: the rules are in [`rules`](super::rules) and the writes that use them in
//! [`apply`](super::apply). The same `State` is what a gateway's `MappingCache` keeps from the
//! change feed, and what `ResolveRoute` and every read answer from on the server.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};
use imbl::{OrdMap, OrdSet};

use super::resolve;
use super::rules::DomainCounters;
use crate::error::{Error, Result};
use crate::pb::{Api, ApiMapping, DomainName, Event, EventType, ProtocolType, Stage, resource};

/// Which records a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only this account's records; others' answer NOT_FOUND as if absent.
    Account(String),
    /// Every account's records (the gateway role).
    All,
}

impl Scope {
    /// Whether a record of `account` is visible.
    pub fn sees(&self, account: &str) -> bool {
        match self {
            Scope::Account(a) => a == account,
            Scope::All => true,
        }
    }
}

/// The most encoded bytes of items one list page holds (SPEC.md 8.7), so a default gRPC
/// client (4 MiB messages) can always read a page.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// A keyset page request: at most `size` items strictly after the sort key `after`, and at
/// most `max_bytes` of encoded items (but always at least one item, if there is one).
#[derive(Debug, Clone)]
pub struct Page {
    /// Items per page.
    pub size: usize,
    /// The sort key of the last item of the previous page.
    pub after: Option<String>,
    /// Encoded bytes of items per page ([`MAX_PAGE_BYTES`] for the API).
    pub max_bytes: usize,
}

/// One page of a list, and the sort key to continue after (None on the last page).
#[derive(Debug)]
pub struct Listed<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts; None when this page is the last.
    pub next: Option<String>,
}

/// A domain name and the counts of its mappings that rules 4, 6 and 7 decide on.
#[derive(Debug, Clone)]
pub struct DomainEntry {
    /// The record.
    pub record: Arc<DomainName>,
    /// Its mappings by protocol, and how many have multi-level keys.
    pub counters: DomainCounters,
}

/// A route found by [`State::route`], borrowing from the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'a> {
    /// The domain that matched: the host itself or its `*.` wildcard.
    pub domain_name: String,
    /// The mapping that serves the request.
    pub mapping: &'a ApiMapping,
    /// Its API, if the state has it (a gateway may watch mappings only).
    pub api: Option<&'a Api>,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
}

/// The answer of [`State::resolve`] (and so of `MappingCache::resolve`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The domain that matched: the host itself or its `*.` wildcard.
    pub domain_name: String,
    /// The mapping that serves the request.
    pub mapping: ApiMapping,
    /// Its API, if the state has it.
    pub api: Option<Api>,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
}

/// Why [`State::resolve`] found no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The host or path is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No domain name matches the host (API Gateway: 403 Forbidden).
    #[error("no custom domain name matches host {0}")]
    NoDomain(String),
    /// The domain has no mapping for the path and no root mapping (API Gateway: 404).
    #[error("no API mapping of {domain} matches path {path}")]
    NoMapping {
        /// The matched domain.
        domain: String,
        /// The normalized path.
        path: String,
    },
}

/// Builds a [`State`] from a store's records, which are unique by identity (no look-up of a
/// previous state): the per-domain counters and the API and stage references are summed in
/// hash maps and written into the state once, in key order, at [`Loader::finish`], instead of
/// one persistent map update per mapping. Records may come in any order.
#[derive(Default)]
pub struct Loader {
    state: State,
    counters: HashMap<String, DomainCounters>,
    /// Mappings read before their API: counted at the end.
    uncounted: Vec<Arc<ApiMapping>>,
    /// api_id -> stage -> domain -> mappings; an API's references are the sums over its stages.
    refs: HashMap<String, HashMap<String, HashMap<String, u64>>>,
}

/// The entry of a `HashMap<String, _>` under a `&str` key, allocating the key only when it is
/// new (a macro: a function returning the borrow cannot fall back to inserting).
macro_rules! entry {
    ($map:expr, $key:expr) => {
        match $map.get_mut($key) {
            Some(v) => v,
            None => $map.entry($key.to_string()).or_default(),
        }
    };
}

impl Loader {
    /// Adds one record. Two mappings under one key of a domain make the store corrupt: the
    /// key index could hold only one of them.
    pub fn add(&mut self, r: resource::Resource) -> Result<()> {
        let m = match r {
            resource::Resource::ApiMapping(m) => m,
            other => {
                self.state.put(other);
                return Ok(());
            }
        };
        let m = Arc::new(m);
        if let Some(other) = self.state.index_mapping(m.clone()) {
            return Err(Error::internal(format!(
                "mappings {} and {} of {} share the key '{}'",
                other.api_mapping_id, m.api_mapping_id, m.domain_name, m.api_mapping_key
            )));
        }
        let stages = entry!(self.refs, m.api_id.as_str());
        let domains = entry!(stages, m.stage.as_str());
        *entry!(domains, m.domain_name.as_str()) += 1;
        if self.state.api(&m.api_id).is_some() {
            self.count(&m);
        } else {
            self.uncounted.push(m);
        }
        Ok(())
    }

    fn count(&mut self, m: &ApiMapping) {
        let protocol = self.state.protocol_of(&m.api_id);
        entry!(self.counters, m.domain_name.as_str()).add(protocol, &m.api_mapping_key);
    }

    /// The state, its counters and references written in; at `revision`. Mappings read
    /// before their API are counted here, once every API is known.
    pub fn finish(mut self, revision: u64) -> State {
        for m in std::mem::take(&mut self.uncounted) {
            self.count(&m);
        }
        // In key order: an insert then follows the previous one's path, in cache.
        let mut counters: Vec<_> = self.counters.into_iter().collect();
        counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (domain, c) in counters {
            if let Some(e) = self.state.domains.get_mut(&domain) {
                e.counters = c;
            }
        }
        let (mut api_refs, mut stage_refs) = (Vec::new(), Vec::new());
        for (api, stages) in &self.refs {
            let mut by_domain: HashMap<&str, u64> = HashMap::new();
            for (stage, domains) in stages {
                for (domain, n) in domains {
                    stage_refs.push((join3(api, stage, domain), *n));
                    *by_domain.entry(domain).or_default() += n;
                }
            }
            api_refs.extend(by_domain.into_iter().map(|(d, n)| (join(api, d), n)));
        }
        drop(self.refs);
        for (refs, mut entries) in [
            (&mut self.state.api_refs, api_refs),
            (&mut self.state.stage_refs, stage_refs),
        ] {
            entries.sort_unstable();
            for (k, n) in entries {
                refs.insert(k, n);
            }
        }
        self.state.revision = revision;
        self.state
    }
}

/// The registry at one revision; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct State {
    revision: u64,
    apis: OrdMap<String, Arc<Api>>,
    account_apis: OrdSet<String>,
    stages: OrdMap<String, Arc<Stage>>,
    domains: OrdMap<String, DomainEntry>,
    account_domains: OrdSet<String>,
    mappings: OrdSet<ById>,
    keys: OrdSet<ByKey>,
    api_refs: OrdMap<String, u64>,
    stage_refs: OrdMap<String, u64>,
}

/// `a\0b`.
fn join(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + 1);
    s.push_str(a);
    s.push('\0');
    s.push_str(b);
    s
}

/// `a\0b\0c`.
fn join3(a: &str, b: &str, c: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + c.len() + 2);
    for (i, part) in [a, b, c].into_iter().enumerate() {
        if i > 0 {
            s.push('\0');
        }
        s.push_str(part);
    }
    s
}

/// An entry of an index ordered by two of the record's own fields: (domain, name).
trait Ordered {
    fn parts(&self) -> (&str, &str);
}

/// A mapping in the id index, ordered by (`domain_name`, `api_mapping_id`).
#[derive(Debug, Clone)]
struct ById(Arc<ApiMapping>);

/// A mapping in the key index, ordered by (`domain_name`, `api_mapping_key`): a domain's
/// mappings in key order, as lists and routing read them.
#[derive(Debug, Clone)]
struct ByKey(Arc<ApiMapping>);

impl Ordered for ById {
    fn parts(&self) -> (&str, &str) {
        (&self.0.domain_name, &self.0.api_mapping_id)
    }
}

impl Ordered for ByKey {
    fn parts(&self) -> (&str, &str) {
        (&self.0.domain_name, &self.0.api_mapping_key)
    }
}

macro_rules! ordered_by_parts {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.parts() == other.parts()
            }
        }
        impl Eq for $t {}
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> Ordering {
                self.parts().cmp(&other.parts())
            }
        }
    };
}
ordered_by_parts!(ById);
ordered_by_parts!(ByKey);

/// A position in an index ordered by (domain, name), to look up or bound a range with. The
/// order is that of the joined `domain\0name` (NUL sorts first and no name contains it), so
/// sort keys and page tokens are unchanged.
#[derive(Debug, Clone, Copy)]
enum Pos<'a> {
    /// Before every entry of the domain.
    Start(&'a str),
    /// The entry (domain, name).
    At(&'a str, &'a str),
    /// After every entry of the domain.
    End(&'a str),
}

impl Pos<'_> {
    fn cmp_parts(&self, (domain, name): (&str, &str)) -> Ordering {
        match *self {
            Pos::Start(d) => d.cmp(domain).then(Ordering::Less),
            Pos::At(d, n) => (d, n).cmp(&(domain, name)),
            Pos::End(d) => d.cmp(domain).then(Ordering::Greater),
        }
    }
}

impl<T: Ordered> Equivalent<T> for Pos<'_> {
    fn equivalent(&self, key: &T) -> bool {
        self.cmp_parts(key.parts()) == Ordering::Equal
    }
}

impl<T: Ordered> Comparable<T> for Pos<'_> {
    fn compare(&self, key: &T) -> Ordering {
        self.cmp_parts(key.parts())
    }
}

/// The entries of `domain` in an index ordered by (domain, name), strictly after `after` (a
/// name) when it is given.
fn of_domain<'a, T: Ordered + Ord + Clone>(
    set: &'a OrdSet<T>,
    domain: &'a str,
    after: Option<&'a str>,
) -> impl Iterator<Item = &'a T> + 'a {
    let start = match after {
        Some(a) => Bound::Excluded(Pos::At(domain, a)),
        None => Bound::Included(Pos::Start(domain)),
    };
    set.range((start, Bound::Excluded(Pos::End(domain))))
}

/// The sort key of a mapping in snapshots: `domain\0api_mapping_key`.
fn key_of(m: &ApiMapping) -> String {
    join(&m.domain_name, &m.api_mapping_key)
}

/// The entries of `map` whose key is `prefix\0...`, in key order, strictly after
/// `prefix\0after` when `after` is given; yields (the key's part after the prefix, value).
fn under<'a, V: Clone>(
    map: &'a OrdMap<String, V>,
    prefix: &str,
    after: Option<&str>,
) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
    let skip = prefix.len() + 1;
    map.range(bounds(prefix, after))
        .map(move |(k, v)| (k.get(skip..).unwrap_or_default(), v))
}

/// The range of keys `prefix\0...` strictly after `prefix\0after`.
fn bounds(prefix: &str, after: Option<&str>) -> (Bound<String>, Bound<String>) {
    let start = match after {
        Some(a) => Bound::Excluded(join(prefix, a)),
        None => Bound::Included(join(prefix, "")),
    };
    let mut end = prefix.to_string();
    end.push('\u{1}');
    (start, Bound::Excluded(end))
}

/// Like [`under`] for a set.
fn under_set<'a>(
    set: &'a OrdSet<String>,
    prefix: &str,
    after: Option<&str>,
) -> impl Iterator<Item = &'a str> + 'a {
    let skip = prefix.len() + 1;
    set.range(bounds(prefix, after))
        .map(move |k| k.get(skip..).unwrap_or_default())
}

/// Keyset pagination: at most `page.size` items of `items` (already after the page's start)
/// and at most `page.max_bytes` of them encoded as a repeated field (the first item always
/// fits), and where to continue.
fn paginate<'a, T: prost::Message + 'a>(
    page: &Page,
    items: impl Iterator<Item = (&'a str, T)>,
) -> Listed<T> {
    let mut out = Vec::with_capacity(page.size.min(128));
    let mut bytes = 0usize;
    let mut last: Option<&str> = None;
    for (sort_key, item) in items {
        // As a `repeated` field: one tag byte, the length, the message.
        let len = item.encoded_len();
        let cost = 1 + prost::length_delimiter_len(len) + len;
        let full = out.len() == page.size || (!out.is_empty() && bytes + cost > page.max_bytes);
        if full {
            return Listed {
                items: out,
                next: last.map(str::to_string),
            };
        }
        bytes += cost;
        out.push(item);
        last = Some(sort_key);
    }
    Listed {
        items: out,
        next: None,
    }
}

/// The entries of `map` with key strictly after `after`, in key order.
fn from<'a, V: Clone>(
    map: &'a OrdMap<String, V>,
    after: Option<&str>,
) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
    map.range((excluded(after), Bound::Unbounded))
        .map(|(k, v)| (k.as_str(), v))
}

fn excluded(after: Option<&str>) -> Bound<String> {
    match after {
        Some(a) => Bound::Excluded(a.to_string()),
        None => Bound::Unbounded,
    }
}

fn adjust(map: &mut OrdMap<String, u64>, key: String, delta: i64) {
    let n = map.get(&key).copied().unwrap_or(0);
    let n = if delta >= 0 {
        n + delta as u64
    } else {
        n.saturating_sub(delta.unsigned_abs())
    };
    if n == 0 {
        map.remove(&key);
    } else {
        map.insert(key, n);
    }
}

impl State {
    // ---- versions ----------------------------------------------------------------------------

    /// The revision this state is the registry at (0: empty, before the first write).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Marks this state as the registry at `revision`.
    pub fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }

    /// Number of APIs, stages, domain names and API mappings held.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.apis.len(),
            self.stages.len(),
            self.domains.len(),
            self.mappings.len(),
        )
    }

    // ---- mutators: keep the indexes, check no rule -------------------------------------------

    /// Stores `r` (an event's PUT), replacing the record of the same identity and updating
    /// every index: a mapping's old key stops routing to it, its old API and stage lose a
    /// reference.
    pub fn put(&mut self, r: resource::Resource) {
        match r {
            resource::Resource::Api(a) => self.put_api(Arc::new(a)),
            resource::Resource::Stage(s) => self.put_stage(Arc::new(s)),
            resource::Resource::DomainName(d) => self.put_domain(Arc::new(d)),
            resource::Resource::ApiMapping(m) => self.put_mapping(Arc::new(m)),
        }
    }

    /// Removes the record of `r`'s identity (an event's DELETE) and its index entries.
    pub fn delete(&mut self, r: &resource::Resource) {
        match r {
            resource::Resource::Api(a) => self.delete_api(&a.api_id),
            resource::Resource::Stage(s) => self.delete_stage(&s.api_id, &s.stage_name),
            resource::Resource::DomainName(d) => self.delete_domain(&d.domain_name),
            resource::Resource::ApiMapping(m) => {
                self.delete_mapping(&m.domain_name, &m.api_mapping_id)
            }
        }
    }

    /// A [`Loader`] building a state from a store's records.
    pub fn loader() -> Loader {
        Loader::default()
    }

    /// Applies one change event.
    pub fn apply(&mut self, e: Event) {
        let Some(r) = e.resource.and_then(|r| r.resource) else {
            return;
        };
        if e.r#type == EventType::Delete as i32 {
            self.delete(&r);
        } else {
            self.put(r);
        }
    }

    pub(crate) fn put_api(&mut self, a: Arc<Api>) {
        self.account_apis.insert(join(&a.account_id, &a.api_id));
        self.apis.insert(a.api_id.clone(), a);
    }

    pub(crate) fn delete_api(&mut self, api_id: &str) {
        if let Some(a) = self.apis.remove(api_id) {
            self.account_apis.remove(&join(&a.account_id, api_id));
        }
    }

    pub(crate) fn put_stage(&mut self, s: Arc<Stage>) {
        self.stages.insert(join(&s.api_id, &s.stage_name), s);
    }

    pub(crate) fn delete_stage(&mut self, api_id: &str, stage: &str) {
        self.stages.remove(&join(api_id, stage));
    }

    pub(crate) fn put_domain(&mut self, d: Arc<DomainName>) {
        let counters = self
            .domains
            .get(&d.domain_name)
            .map(|e| e.counters)
            .unwrap_or_default();
        self.account_domains
            .insert(join(&d.account_id, &d.domain_name));
        self.domains.insert(
            d.domain_name.clone(),
            DomainEntry {
                record: d,
                counters,
            },
        );
    }

    pub(crate) fn delete_domain(&mut self, domain: &str) {
        if let Some(e) = self.domains.remove(domain) {
            self.account_domains
                .remove(&join(&e.record.account_id, domain));
        }
    }

    /// The protocol of an API; an API the state does not hold (a gateway watching mappings
    /// only) counts as HTTP.
    pub fn protocol_of(&self, api_id: &str) -> ProtocolType {
        self.apis
            .get(api_id)
            .and_then(|a| ProtocolType::try_from(a.protocol_type).ok())
            .unwrap_or(ProtocolType::Http)
    }

    /// Adds (1) or removes (-1) a mapping's contribution to its domain's counters and to its
    /// API's and stage's references.
    fn count_mapping(&mut self, m: &ApiMapping, delta: i64) {
        let protocol = self.protocol_of(&m.api_id);
        if let Some(e) = self.domains.get_mut(&m.domain_name) {
            if delta > 0 {
                e.counters.add(protocol, &m.api_mapping_key);
            } else {
                e.counters.remove(protocol, &m.api_mapping_key);
            }
        }
        adjust(&mut self.api_refs, join(&m.api_id, &m.domain_name), delta);
        adjust(
            &mut self.stage_refs,
            join3(&m.api_id, &m.stage, &m.domain_name),
            delta,
        );
    }

    pub(crate) fn put_mapping(&mut self, m: Arc<ApiMapping>) {
        self.delete_mapping(&m.domain_name, &m.api_mapping_id);
        self.add_mapping(m);
    }

    fn add_mapping(&mut self, m: Arc<ApiMapping>) {
        self.count_mapping(&m, 1);
        // The rules keep keys unique; a gateway's cache takes the newest mapping under a key.
        let _replaced = self.index_mapping(m);
    }

    /// The mapping's entries in the id and key indexes; returns the mapping it replaced in
    /// the key index, if another one held its key.
    fn index_mapping(&mut self, m: Arc<ApiMapping>) -> Option<Arc<ApiMapping>> {
        let replaced = self.keys.insert(ByKey(m.clone()));
        self.mappings.insert(ById(m));
        replaced.map(|e| e.0)
    }

    pub(crate) fn delete_mapping(&mut self, domain: &str, mapping_id: &str) {
        if let Some(ById(old)) = self.mappings.remove(&Pos::At(domain, mapping_id)) {
            let at = Pos::At(domain, &old.api_mapping_key);
            if self
                .keys
                .get(&at)
                .is_some_and(|m| m.0.api_mapping_id == mapping_id)
            {
                self.keys.remove(&at);
            }
            self.count_mapping(&old, -1);
        }
    }

    // ---- lookups ------------------------------------------------------------------------------

    /// An API by id, in any account.
    pub fn api(&self, api_id: &str) -> Option<&Arc<Api>> {
        self.apis.get(api_id)
    }

    /// A stage by API and name.
    pub fn stage(&self, api_id: &str, stage: &str) -> Option<&Arc<Stage>> {
        self.stages.get(&join(api_id, stage))
    }

    /// A domain name and its counters, in any account.
    pub fn domain(&self, domain: &str) -> Option<&DomainEntry> {
        self.domains.get(domain)
    }

    /// A mapping by domain and id.
    pub fn mapping(&self, domain: &str, mapping_id: &str) -> Option<&Arc<ApiMapping>> {
        self.mappings
            .get(&Pos::At(domain, mapping_id))
            .map(|e| &e.0)
    }

    /// The mapping under `key` on `domain`.
    pub fn mapping_by_key(&self, domain: &str, key: &str) -> Option<&Arc<ApiMapping>> {
        self.keys.get(&Pos::At(domain, key)).map(|e| &e.0)
    }

    /// Every mapping of `domain`, in key order.
    pub fn mappings_on<'a>(
        &'a self,
        domain: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ApiMapping>> + 'a {
        of_domain(&self.keys, domain, None).map(|e| &e.0)
    }

    /// Every stage of an API, in name order.
    pub fn stages_of(&self, api_id: &str) -> impl Iterator<Item = &Arc<Stage>> + '_ {
        under(&self.stages, api_id, None).map(|(_, s)| s)
    }

    /// The domains with a mapping pointing at the API, in name order.
    pub fn domains_using_api(&self, api_id: &str) -> Vec<String> {
        under(&self.api_refs, api_id, None)
            .map(|(d, _)| d.to_string())
            .collect()
    }

    /// The domains with a mapping pointing at the stage, in name order.
    pub fn domains_using_stage(&self, api_id: &str, stage: &str) -> Vec<String> {
        under(&self.stage_refs, &join(api_id, stage), None)
            .map(|(d, _)| d.to_string())
            .collect()
    }

    /// Every mapping of `domain` (for a gateway's cache), in key order.
    pub fn mappings_of(&self, domain: &str) -> Vec<ApiMapping> {
        self.mappings_on(domain).map(|m| (**m).clone()).collect()
    }

    /// Every domain name, sorted.
    pub fn domain_names(&self) -> Vec<String> {
        self.domains.keys().cloned().collect()
    }

    // ---- ordered scans from a position (snapshots) ------------------------------------------

    /// APIs with id strictly after `after`, in id order, with their sort keys.
    pub fn apis_from<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<Api>)> + 'a {
        from(&self.apis, after)
    }

    /// Stages with sort key (`api_id\0stage`) strictly after `after`, in that order.
    pub fn stages_from<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<Stage>)> + 'a {
        from(&self.stages, after)
    }

    /// Domain names strictly after `after`, in name order.
    pub fn domains_from<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a DomainEntry)> + 'a {
        from(&self.domains, after)
    }

    /// Mappings with sort key (`domain\0api_mapping_key`, made by this call) strictly after
    /// `after`, by domain then key; with `domain`, only that domain's (a range: cost in
    /// proportion to them).
    pub fn mappings_from<'a>(
        &'a self,
        domain: Option<&str>,
        after: Option<&str>,
    ) -> impl Iterator<Item = (String, &'a Arc<ApiMapping>)> + use<'a> {
        // Where `after` falls: after the entry it names, or before the domain it names alone.
        let after = after.map(|a| match a.split_once('\0') {
            Some((d, k)) => (d, Bound::Excluded(Pos::At(d, k))),
            None => (a, Bound::Included(Pos::Start(a))),
        });
        let (start, end) = match (domain, after) {
            (None, None) => (Bound::Unbounded, Bound::Unbounded),
            (None, Some((_, start))) => (start, Bound::Unbounded),
            (Some(d), after) => {
                let start = match after {
                    Some((ad, start)) if ad == d => start,
                    // `after` is past this domain: nothing is left of it.
                    Some((ad, _)) if ad > d => Bound::Excluded(Pos::End(d)),
                    _ => Bound::Included(Pos::Start(d)),
                };
                (start, Bound::Excluded(Pos::End(d)))
            }
        };
        self.keys.range((start, end)).map(|e| (key_of(&e.0), &e.0))
    }

    // ---- reads for a caller -------------------------------------------------------------------

    /// The API, if it exists and `scope` sees it.
    pub fn get_api(&self, scope: &Scope, api_id: &str) -> Result<&Arc<Api>> {
        match self.apis.get(api_id) {
            Some(a) if scope.sees(&a.account_id) => Ok(a),
            _ => Err(super::rules::Violation::ApiNotFound(api_id.into()).into()),
        }
    }

    /// The stage, if its API exists and `scope` sees it.
    pub fn get_stage(&self, scope: &Scope, api_id: &str, stage: &str) -> Result<&Arc<Stage>> {
        self.get_api(scope, api_id)?;
        self.stage(api_id, stage)
            .ok_or_else(|| super::rules::Violation::StageNotFound(stage.into()).into())
    }

    /// The domain name, if it exists and `scope` sees it.
    pub fn get_domain(&self, scope: &Scope, domain: &str) -> Result<&DomainEntry> {
        match self.domains.get(domain) {
            Some(d) if scope.sees(&d.record.account_id) => Ok(d),
            _ => Err(super::rules::Violation::DomainNotFound(domain.into()).into()),
        }
    }

    /// The mapping, if its domain exists and `scope` sees it.
    pub fn get_mapping(
        &self,
        scope: &Scope,
        domain: &str,
        mapping_id: &str,
    ) -> Result<&Arc<ApiMapping>> {
        self.get_domain(scope, domain)?;
        self.mapping(domain, mapping_id)
            .ok_or_else(|| super::rules::Violation::MappingNotFound(mapping_id.into()).into())
    }

    /// APIs visible to `scope`, by `api_id`.
    pub fn list_apis(&self, scope: &Scope, page: &Page) -> Listed<Api> {
        match scope {
            Scope::All => {
                let items =
                    from(&self.apis, page.after.as_deref()).map(|(k, a)| (k, (**a).clone()));
                paginate(page, items)
            }
            Scope::Account(acc) => {
                let items = under_set(&self.account_apis, acc, page.after.as_deref())
                    .filter_map(|id| self.apis.get(id).map(|a| (id, (**a).clone())));
                paginate(page, items)
            }
        }
    }

    /// Stages of an API visible to `scope`, by name.
    pub fn list_stages(&self, scope: &Scope, api_id: &str, page: &Page) -> Result<Listed<Stage>> {
        self.get_api(scope, api_id)?;
        let items = under(&self.stages, api_id, page.after.as_deref())
            .map(|(name, s)| (name, (**s).clone()));
        Ok(paginate(page, items))
    }

    /// Domain names visible to `scope`, by name.
    pub fn list_domains(&self, scope: &Scope, page: &Page) -> Listed<DomainName> {
        match scope {
            Scope::All => {
                let items = from(&self.domains, page.after.as_deref())
                    .map(|(k, d)| (k, (*d.record).clone()));
                paginate(page, items)
            }
            Scope::Account(acc) => {
                let items = under_set(&self.account_domains, acc, page.after.as_deref())
                    .filter_map(|d| self.domains.get(d).map(|e| (d, (*e.record).clone())));
                paginate(page, items)
            }
        }
    }

    /// Mappings of a domain visible to `scope`, by key.
    pub fn list_mappings(
        &self,
        scope: &Scope,
        domain: &str,
        page: &Page,
    ) -> Result<Listed<ApiMapping>> {
        self.get_domain(scope, domain)?;
        let items = of_domain(&self.keys, domain, page.after.as_deref())
            .map(|e| (e.0.api_mapping_key.as_str(), (*e.0).clone()));
        Ok(paginate(page, items))
    }

    // ---- routing ------------------------------------------------------------------------------

    /// Resolves a normalized host and path (see [`resolve::normalize_host`] and
    /// [`resolve::normalize_path`]) like `ResolveRoute`, among the domains whose account
    /// `sees` accepts (others are absent). Borrows the mapping and its API.
    pub fn route(
        &self,
        host: &str,
        path: &str,
        sees: impl Fn(&str) -> bool,
    ) -> Result<Route<'_>, resolve::Miss> {
        let found = resolve::resolve_host::<_, std::convert::Infallible>(
            host,
            path,
            |d| {
                Ok(self
                    .domains
                    .get(d)
                    .filter(|e| sees(&e.record.account_id))
                    .map(|e| e.counters.multi_level > 0))
            },
            |d, k| Ok(self.keys.get(&Pos::At(d, k)).map(|e| &e.0)),
        );
        let found = match found {
            Ok(found) => found?,
            Err(never) => match never {},
        };
        let mapping: &ApiMapping = found.route.target;
        Ok(Route {
            api: self.apis.get(&mapping.api_id).map(|a| &**a),
            mapping,
            domain_name: found.domain,
            remaining_path: found.route.remaining_path,
        })
    }

    /// Resolves `host` + `path` (normalized here) like the server's `ResolveRoute`, seeing
    /// every account.
    pub fn resolve(&self, host: &str, path: &str) -> Result<Resolution, ResolveError> {
        let host =
            resolve::normalize_host(host).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        let path =
            resolve::normalize_path(path).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        match self.route(&host, &path, |_| true) {
            Ok(r) => Ok(Resolution {
                domain_name: r.domain_name,
                mapping: r.mapping.clone(),
                api: r.api.cloned(),
                remaining_path: r.remaining_path,
            }),
            Err(resolve::Miss::NoMapping { domain }) => {
                Err(ResolveError::NoMapping { domain, path })
            }
            Err(resolve::Miss::NoDomain) => Err(ResolveError::NoDomain(host)),
        }
    }

    /// `ResolveRoute` for a caller of `scope`: the route and its API, or the error the client
    /// sees (`DOMAIN_NAME_NOT_FOUND`, `ROUTE_NOT_FOUND`).
    pub fn resolve_for(&self, scope: &Scope, host: &str, path: &str) -> Result<(Route<'_>, &Api)> {
        let route = match self.route(host, path, |account| scope.sees(account)) {
            Ok(route) => route,
            Err(resolve::Miss::NoDomain) => {
                return Err(Error::NotFound {
                    reason: "DOMAIN_NAME_NOT_FOUND",
                    message: format!(
                        "Invalid domain name identifier specified: no custom domain name matches host {host}"
                    ),
                });
            }
            Err(resolve::Miss::NoMapping { domain }) => {
                return Err(Error::NotFound {
                    reason: "ROUTE_NOT_FOUND",
                    message: format!(
                        "no API mapping of {domain} matches path {path} and it has no root mapping"
                    ),
                });
            }
        };
        // A mapping's API cannot be deleted while the mapping exists (SPEC section 2.8).
        let api = route
            .api
            .ok_or_else(|| super::rules::Violation::ApiNotFound(route.mapping.api_id.clone()))?;
        Ok((route, api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(domain: &str, id: &str, key: &str) -> resource::Resource {
        resource::Resource::ApiMapping(ApiMapping {
            domain_name: domain.into(),
            api_mapping_id: id.into(),
            api_mapping_key: key.into(),
            api_id: "api1".into(),
            stage: "test".into(),
            ..Default::default()
        })
    }

    fn domain(d: &str) -> resource::Resource {
        resource::Resource::DomainName(DomainName {
            domain_name: d.into(),
            ..Default::default()
        })
    }

    #[test]
    fn resolves_and_follows_key_changes() {
        let mut r = State::default();
        r.put(domain("api.example.com"));
        r.put(domain("*.example.com"));
        r.put(mapping("api.example.com", "m1", "orders"));
        r.put(mapping("*.example.com", "m2", ""));
        let x = r.resolve("API.example.com:443", "/orders/1").unwrap();
        assert_eq!(
            (x.mapping.api_mapping_id.as_str(), x.remaining_path.as_str()),
            ("m1", "/1")
        );
        assert_eq!(
            r.resolve("b.example.com", "/x").unwrap().domain_name,
            "*.example.com"
        );
        // Moving the key frees the old one.
        r.put(mapping("api.example.com", "m1", "shop"));
        assert!(matches!(
            r.resolve("api.example.com", "/orders/1"),
            Err(ResolveError::NoMapping { .. })
        ));
        assert_eq!(
            r.resolve("api.example.com", "/shop")
                .unwrap()
                .remaining_path,
            "/"
        );
        r.delete(&mapping("api.example.com", "m1", "shop"));
        assert!(r.resolve("api.example.com", "/shop").is_err());
        assert!(matches!(
            r.resolve("nothing.test", "/"),
            Err(ResolveError::NoDomain(_))
        ));
    }

    #[test]
    fn route_sees_only_accepted_accounts() {
        let mut r = State::default();
        let owned = |d: &str, account: &str| {
            resource::Resource::DomainName(DomainName {
                domain_name: d.into(),
                account_id: account.into(),
                ..Default::default()
            })
        };
        r.put(owned("api.example.com", "111122223333"));
        r.put(owned("*.example.com", "444455556666"));
        r.put(mapping("api.example.com", "m1", ""));
        r.put(mapping("*.example.com", "m2", ""));
        let mine = |a: &str| a == "111122223333";
        let theirs = |a: &str| a == "444455556666";
        assert_eq!(
            r.route("api.example.com", "/", mine)
                .unwrap()
                .mapping
                .api_mapping_id,
            "m1"
        );
        // Another account's exact domain is absent, so the wildcard (if visible) answers.
        assert_eq!(
            r.route("api.example.com", "/", theirs).unwrap().domain_name,
            "*.example.com"
        );
        assert_eq!(
            r.route("shop.example.com", "/", mine),
            Err(resolve::Miss::NoDomain)
        );
    }

    #[test]
    fn indexes_follow_puts_and_deletes_and_versions_stay_apart() {
        let mut s = State::default();
        s.put(domain("a.com"));
        s.put(mapping("a.com", "m1", "x/y"));
        s.put(mapping("a.com", "m2", "z"));
        let before = s.clone();
        assert_eq!(s.domain("a.com").unwrap().counters.multi_level, 1);
        assert_eq!(s.domains_using_api("api1"), vec!["a.com".to_string()]);
        // Re-keying m1 to a single-level key drops the multi-level count.
        s.put(mapping("a.com", "m1", "x"));
        assert_eq!(s.domain("a.com").unwrap().counters.multi_level, 0);
        assert!(s.mapping_by_key("a.com", "x/y").is_none());
        s.delete(&mapping("a.com", "m1", "x"));
        s.delete(&mapping("a.com", "m2", "z"));
        assert!(s.domains_using_api("api1").is_empty());
        assert_eq!(s.domain("a.com").unwrap().counters.total(), 0);
        // The older version is untouched.
        assert_eq!(before.mappings_of("a.com").len(), 2);
        assert_eq!(before.domain("a.com").unwrap().counters.total(), 2);
    }

    #[test]
    fn a_loaded_state_has_the_indexes_of_one_built_by_puts() {
        let mut records = vec![domain("a.com"), domain("b.com")];
        records.push(resource::Resource::Api(Api {
            api_id: "api1".into(),
            protocol_type: ProtocolType::Rest as i32,
            ..Default::default()
        }));
        records.push(mapping("a.com", "m1", "x/y"));
        records.push(mapping("a.com", "m2", "z"));
        records.push(mapping("b.com", "m3", ""));
        let mut built = State::default();
        let mut loader = State::loader();
        for r in &records {
            built.put(r.clone());
        }
        // The loader takes them in any order: mappings before their domain and API here.
        for r in records.into_iter().rev() {
            loader.add(r).unwrap();
        }
        let loaded = loader.finish(9);
        assert_eq!(loaded.revision(), 9);
        assert_eq!(loaded.counts(), built.counts());
        for d in ["a.com", "b.com"] {
            assert_eq!(
                loaded.domain(d).map(|e| e.counters),
                built.domain(d).map(|e| e.counters)
            );
            assert_eq!(loaded.mappings_of(d), built.mappings_of(d));
        }
        assert_eq!(loaded.domain("a.com").unwrap().counters.rest, 2);
        assert_eq!(
            loaded.domains_using_api("api1"),
            built.domains_using_api("api1")
        );
        assert_eq!(
            loaded.domains_using_stage("api1", "test"),
            vec!["a.com".to_string(), "b.com".to_string()]
        );
    }

    #[test]
    fn a_store_with_two_mappings_under_one_key_is_refused() {
        let mut loader = State::loader();
        loader.add(domain("a.com")).unwrap();
        loader.add(mapping("a.com", "m1", "x")).unwrap();
        let e = loader.add(mapping("a.com", "m2", "x")).unwrap_err();
        assert!(e.to_string().contains("share the key 'x'"), "{e}");
    }

    #[test]
    fn mapping_sort_keys_keep_the_order_of_the_joined_key() {
        let mut s = State::default();
        // "x.io" is a prefix of "x.io.y": its entries still come first, as `x.io\0...` does.
        for d in ["x.io.y", "x.io", "w.io"] {
            s.put(domain(d));
            for (id, k) in [("m1", "b"), ("m2", ""), ("m3", "a/c")] {
                s.put(mapping(d, &format!("{d}{id}"), k));
            }
        }
        let all: Vec<String> = s.mappings_from(None, None).map(|(k, _)| k).collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all.len(), 9);
        // Resuming after any sort key gives exactly the keys after it, in or out of a domain.
        for (i, after) in all.iter().enumerate() {
            let rest: Vec<String> = s.mappings_from(None, Some(after)).map(|(k, _)| k).collect();
            assert_eq!(rest, all[i + 1..]);
        }
        let of = |d: &str, after: Option<&str>| -> Vec<String> {
            s.mappings_from(Some(d), after).map(|(k, _)| k).collect()
        };
        assert_eq!(of("x.io", None), ["x.io\0", "x.io\0a/c", "x.io\0b"]);
        assert_eq!(of("x.io", Some("x.io\0a/c")), ["x.io\0b"]);
        // A position before the domain starts it; one past it leaves nothing.
        assert_eq!(of("x.io", Some("w.io\0b")).len(), 3);
        assert!(of("x.io", Some("x.io.y\0")).is_empty());
        assert!(of("x.io", Some("x.io\0b")).is_empty());
        assert!(of("v.io", None).is_empty());
        assert_eq!(
            s.mapping("x.io", "x.iom3")
                .map(|m| m.api_mapping_key.as_str()),
            Some("a/c")
        );
        assert_eq!(
            s.mapping_by_key("x.io.y", "")
                .map(|m| m.api_mapping_id.as_str()),
            Some("x.io.ym2")
        );
        assert!(s.mapping_by_key("x.io", "a").is_none());
    }

    /// A state with domain a.com holding the mappings of keys a to e.
    fn five_mappings() -> State {
        let mut s = State::default();
        s.put(domain("a.com"));
        for k in ["a", "b", "c", "d", "e"] {
            s.put(mapping("a.com", &format!("id{k}"), k));
        }
        s
    }

    /// The page of a.com's mappings of at most `size` items and `max_bytes` after `after`.
    fn page_of(
        s: &State,
        size: usize,
        after: Option<String>,
        max_bytes: usize,
    ) -> Listed<ApiMapping> {
        let page = Page {
            size,
            after,
            max_bytes,
        };
        s.list_mappings(&Scope::All, "a.com", &page).unwrap()
    }

    /// The keys of a.com's mappings, page by page, following each page's `next`.
    fn every_page(s: &State, size: usize, max_bytes: usize) -> Vec<Vec<String>> {
        let mut after = None;
        let mut pages = Vec::new();
        loop {
            let page = page_of(s, size, after, max_bytes);
            pages.push(page.items.into_iter().map(|m| m.api_mapping_key).collect());
            match page.next {
                Some(n) => after = Some(n),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_resume_after_their_sort_key() {
        let s = five_mappings();
        let seen = every_page(&s, 2, MAX_PAGE_BYTES).concat();
        assert_eq!(seen, vec!["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn pages_stop_at_their_byte_budget() {
        use prost::Message;
        let s = five_mappings();
        let one = page_of(&s, 1, None, MAX_PAGE_BYTES).items[0].encoded_len();
        // Room for two items (each costs its length plus two bytes), not three.
        let budget = 2 * (one + 2) + 1;
        let pages: Vec<usize> = every_page(&s, 100, budget).iter().map(Vec::len).collect();
        assert_eq!(pages, vec![2, 2, 1]);
        // A budget smaller than one item still makes progress.
        let page = page_of(&s, 100, None, 1);
        assert_eq!(page.items.len(), 1);
        assert!(page.next.is_some());
    }
}
