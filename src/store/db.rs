//! The registry's records on top of a [`Store`]: reads for any task, writes for the writer thread.
//!
//! Writes ([`Db::apply`]) must come from one thread at a time (the [`writer`](super::writer)
//! guarantees it). That lets a write read a domain's mapping list or an API's stage list by a
//! scan just before its transaction (sled transactions cannot scan) and still see exactly the
//! state the transaction commits on. Every rule itself is checked inside the transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use prost_types::Timestamp;

use super::{Space, Store, TxError, Txn, codec, keys, transact};
use crate::domain::{Family, RefCounts, ids, rules};
use crate::error::{Error, Result};
use crate::pb::{
    Api, ApiMapping, ChangeSet, DomainName, DomainNameConfiguration, Event, EventType,
    ProtocolType, Resource, Stage, resource,
};

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

/// Tunable limits of the rules.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rule 4: multi-level mappings per domain (default 200).
    pub max_multi_level_mappings_per_domain: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_multi_level_mappings_per_domain: 200,
        }
    }
}

/// A keyset page request: at most `size` items strictly after the sort key `after`.
#[derive(Debug, Clone)]
pub struct Page {
    /// Items per page.
    pub size: usize,
    /// The sort key of the last item of the previous page.
    pub after: Option<String>,
}

/// One page of a list, and the sort key to continue after (None on the last page).
#[derive(Debug)]
pub struct Listed<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts; None when this page is the last.
    pub next: Option<String>,
}

/// A validated write. Fields are already syntax-checked and normalised (lower-cased domain
/// names, defaults applied); [`Db::apply`] checks every rule that depends on stored state.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum WriteOp {
    CreateApi {
        account: String,
        name: String,
        protocol: ProtocolType,
        description: String,
        tags: HashMap<String, String>,
    },
    UpdateApi {
        account: String,
        api_id: String,
        name: Option<String>,
        description: Option<String>,
        expected_revision: u64,
    },
    DeleteApi {
        account: String,
        api_id: String,
        expected_revision: u64,
    },
    CreateStage {
        account: String,
        api_id: String,
        stage_name: String,
        description: String,
        tags: HashMap<String, String>,
    },
    UpdateStage {
        account: String,
        api_id: String,
        stage_name: String,
        description: Option<String>,
        expected_revision: u64,
    },
    DeleteStage {
        account: String,
        api_id: String,
        stage_name: String,
        expected_revision: u64,
    },
    CreateDomainName {
        account: String,
        domain_name: String,
        configuration: DomainNameConfiguration,
        tags: HashMap<String, String>,
    },
    UpdateDomainName {
        account: String,
        domain_name: String,
        configuration: Option<DomainNameConfiguration>,
        expected_revision: u64,
    },
    DeleteDomainName {
        account: String,
        domain_name: String,
        expected_revision: u64,
    },
    CreateApiMapping {
        account: String,
        domain_name: String,
        api_mapping_key: String,
        api_id: String,
        stage: String,
    },
    UpdateApiMapping {
        account: String,
        domain_name: String,
        api_mapping_id: String,
        api_mapping_key: Option<String>,
        api_id: Option<String>,
        stage: Option<String>,
        expected_revision: u64,
    },
    DeleteApiMapping {
        account: String,
        domain_name: String,
        api_mapping_id: String,
        expected_revision: u64,
    },
}

/// What a committed write produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// The API as stored.
    Api(Api),
    /// The stage as stored.
    Stage(Stage),
    /// The domain name as stored.
    DomainName(DomainName),
    /// The mapping as stored.
    ApiMapping(ApiMapping),
    /// A delete; the revision it took.
    Deleted(u64),
}

/// A committed (not yet flushed) write: its result, its revision and its events.
#[derive(Debug, Clone)]
pub struct Committed {
    /// What the caller gets back.
    pub result: WriteResult,
    /// The revision the write took.
    pub revision: u64,
    /// The write's events, in order, as appended to the change log.
    pub events: Vec<Event>,
}

/// Told, inside a write's transaction and before it becomes visible to any reader, which
/// records the write touches and what each looked like before (None: it did not exist).
/// The change feed uses this to read an exact snapshot while writes go on.
pub trait TouchObserver: Send + Sync {
    /// `key` is the record's data key; `prev` its committed state before this write.
    fn touched(&self, key: &[u8], prev: Option<&Resource>);
}

/// The registry over a [`Store`].
pub struct Db {
    store: Arc<dyn Store>,
    limits: Limits,
    store_id: String,
    observers: std::sync::Mutex<Vec<std::sync::Weak<dyn TouchObserver>>>,
    /// The last committed revision (as in the meta record), for reads that report it
    /// without a store lookup.
    revision: std::sync::atomic::AtomicU64,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn put_event(r: resource::Resource) -> Event {
    Event {
        r#type: EventType::Put as i32,
        resource: Some(Resource { resource: Some(r) }),
    }
}

fn delete_event(r: resource::Resource) -> Event {
    Event {
        r#type: EventType::Delete as i32,
        resource: Some(Resource { resource: Some(r) }),
    }
}

fn tget<M: Message + Default>(tx: &dyn Txn, key: &[u8]) -> Result<Option<M>, TxError> {
    match tx.get(Space::Data, key)? {
        Some(b) => Ok(Some(codec::decode(&b)?)),
        None => Ok(None),
    }
}

fn tput<M: Message>(tx: &dyn Txn, key: &[u8], m: &M) -> Result<(), TxError> {
    tx.put(Space::Data, key, &m.encode_to_vec())
}

fn tdel(tx: &dyn Txn, key: &[u8]) -> Result<(), TxError> {
    tx.delete(Space::Data, key)
}

/// The data key of a resource's record.
pub fn resource_key(r: &Resource) -> Option<Vec<u8>> {
    Some(match r.resource.as_ref()? {
        resource::Resource::Api(a) => keys::api(&a.api_id),
        resource::Resource::Stage(s) => keys::stage(&s.api_id, &s.stage_name),
        resource::Resource::DomainName(d) => keys::domain(&d.domain_name),
        resource::Resource::ApiMapping(m) => keys::mapping(&m.domain_name, &m.api_mapping_id),
    })
}

/// Decodes a record of the data space by its key prefix.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<Option<Resource>> {
    let r = match key.first() {
        Some(b'a') if key.get(1) == Some(&0) => resource::Resource::Api(codec::decode(value)?),
        Some(b's') if key.get(1) == Some(&0) => resource::Resource::Stage(codec::decode(value)?),
        Some(b'd') if key.get(1) == Some(&0) => {
            resource::Resource::DomainName(codec::decode(value)?)
        }
        Some(b'm') if key.get(1) == Some(&0) => {
            resource::Resource::ApiMapping(codec::decode(value)?)
        }
        _ => return Ok(None),
    };
    Ok(Some(Resource { resource: Some(r) }))
}

/// A record key and its committed value (None: absent) before a transaction wrote it.
type PreImage = (Vec<u8>, Option<Vec<u8>>);

/// A transaction that remembers, for each record key, its committed value before the
/// transaction's first write to it.
struct Observed<'a> {
    tx: &'a dyn Txn,
    pre: std::cell::RefCell<Vec<PreImage>>,
}

impl Observed<'_> {
    fn remember(&self, space: Space, key: &[u8]) -> Result<(), TxError> {
        if space != Space::Data || !is_record_key(key) {
            return Ok(());
        }
        if self.pre.borrow().iter().any(|(k, _)| k == key) {
            return Ok(());
        }
        let before = self.tx.get(space, key)?;
        self.pre.borrow_mut().push((key.to_vec(), before));
        Ok(())
    }
}

impl Txn for Observed<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.tx.get(space, key)
    }
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.remember(space, key)?;
        self.tx.put(space, key, value)
    }
    fn delete(&self, space: Space, key: &[u8]) -> Result<(), TxError> {
        self.remember(space, key)?;
        self.tx.delete(space, key)
    }
}

/// Whether a data key holds a record (API, stage, domain name, mapping), not an index.
fn is_record_key(key: &[u8]) -> bool {
    matches!(key, [b'a' | b's' | b'd' | b'm', 0, ..])
}

/// Takes the next revision and appends `events` to the log under it.
fn commit_revision(tx: &dyn Txn, events: &[Event]) -> Result<u64, TxError> {
    let revision = next_revision(tx)?;
    let cs = ChangeSet {
        events: events.to_vec(),
    };
    tx.put(Space::Log, &keys::log(revision), &cs.encode_to_vec())?;
    Ok(revision)
}

fn next_revision(tx: &dyn Txn) -> Result<u64, TxError> {
    let current = match tx.get(Space::Meta, keys::META_REVISION)? {
        Some(b) => codec::decode_u64(&b)?,
        None => 0,
    };
    let next = current + 1;
    tx.put(Space::Meta, keys::META_REVISION, &next.to_be_bytes())?;
    Ok(next)
}

/// Peeks the revision the transaction will take (the store has one writer, so it is exact).
fn peek_revision(tx: &dyn Txn) -> Result<u64, TxError> {
    Ok(match tx.get(Space::Meta, keys::META_REVISION)? {
        Some(b) => codec::decode_u64(&b)? + 1,
        None => 1,
    })
}

fn visible_api(tx: &dyn Txn, account: &str, api_id: &str) -> Result<Api, TxError> {
    match tget::<Api>(tx, &keys::api(api_id))? {
        Some(api) if api.account_id == account => Ok(api),
        _ => Err(rules::api_not_found(api_id).into()),
    }
}

fn visible_domain(tx: &dyn Txn, account: &str, domain: &str) -> Result<DomainName, TxError> {
    match tget::<DomainName>(tx, &keys::domain(domain))? {
        Some(d) if d.account_id == account => Ok(d),
        _ => Err(rules::domain_not_found(domain).into()),
    }
}

fn existing_stage(tx: &dyn Txn, api_id: &str, stage: &str) -> Result<Stage, TxError> {
    tget::<Stage>(tx, &keys::stage(api_id, stage))?
        .ok_or_else(|| rules::stage_not_found(stage).into())
}

fn protocol_of(api: &Api) -> ProtocolType {
    ProtocolType::try_from(api.protocol_type).unwrap_or(ProtocolType::Http)
}

fn domain_configuration(d: &DomainName) -> DomainNameConfiguration {
    d.domain_name_configurations
        .first()
        .cloned()
        .unwrap_or_default()
}

fn refs(tx: &dyn Txn, key: &[u8]) -> Result<RefCounts, TxError> {
    Ok(codec::decode_refs(tx.get(Space::Data, key)?.as_deref())?)
}

fn adjust(tx: &dyn Txn, key: &[u8], domain: &str, delta: i64) -> Result<(), TxError> {
    let mut r = refs(tx, key)?;
    rules::adjust_refs(&mut r, domain, delta);
    if r.is_empty() {
        tdel(tx, key)
    } else {
        tx.put(Space::Data, key, &codec::encode_refs(&r))
    }
}

impl Db {
    /// Opens the registry on `store`, giving a fresh store its random `store_id`.
    pub fn open(store: Arc<dyn Store>, limits: Limits) -> Result<Db> {
        let store_id = match store.get(Space::Meta, keys::META_STORE_ID)? {
            Some(id) => String::from_utf8(id).map_err(|_| Error::internal("corrupt store id"))?,
            None => {
                let id = ids::store_id();
                transact(store.as_ref(), |tx| {
                    tx.put(Space::Meta, keys::META_STORE_ID, id.as_bytes())
                })?;
                store.flush()?;
                id
            }
        };
        let revision = match store.get(Space::Meta, keys::META_REVISION)? {
            Some(b) => codec::decode_u64(&b)?,
            None => 0,
        };
        Ok(Db {
            store,
            limits,
            store_id,
            observers: std::sync::Mutex::new(Vec::new()),
            revision: std::sync::atomic::AtomicU64::new(revision),
        })
    }

    /// Registers an observer of every later write (until it is dropped). Only the writer
    /// thread calls this, between writes, so the observer sees every write after the
    /// current revision and none before.
    pub fn add_observer(&self, o: std::sync::Weak<dyn TouchObserver>) {
        if let Ok(mut obs) = self.observers.lock() {
            obs.retain(|w| w.strong_count() > 0);
            obs.push(o);
        }
    }

    /// Runs a write's transaction. While observers are registered, the transaction records
    /// the committed state of every record it is about to change (read through the transaction
    /// before its first write to that key) and tells the observers, still inside the
    /// transaction, so no reader can have seen the new state yet.
    fn txn<R>(&self, body: impl Fn(&dyn Txn) -> Result<R, TxError>) -> Result<R> {
        let observers: Vec<Arc<dyn TouchObserver>> = match self.observers.lock() {
            Ok(obs) => obs.iter().filter_map(|w| w.upgrade()).collect(),
            Err(_) => return Err(Error::internal("observer list poisoned")),
        };
        if observers.is_empty() {
            return transact(self.store.as_ref(), body);
        }
        transact(self.store.as_ref(), |tx| {
            let observed = Observed {
                tx,
                pre: Default::default(),
            };
            let r = body(&observed)?;
            for (key, before) in observed.pre.into_inner() {
                let prev = match before {
                    Some(v) => decode_record(&key, &v)?,
                    None => None,
                };
                for o in &observers {
                    o.touched(&key, prev.as_ref());
                }
            }
            Ok(r)
        })
    }

    /// Change sets of revisions `from..=to`, at most `max`, in order. Entries that are gone
    /// (compacted) are simply absent: compare with [`Db::compact_revision`].
    pub fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, ChangeSet)>> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        let after = from.checked_sub(1).map(keys::log);
        for kv in self
            .store
            .scan(Space::Log, b"", after.as_ref().map(|a| &a[..]))
        {
            let (k, v) = kv?;
            let rev = codec::decode_u64(&k)?;
            if rev > to || out.len() >= max {
                break;
            }
            out.push((rev, codec::decode::<ChangeSet>(&v)?));
        }
        Ok(out)
    }

    /// Every log entry at or below this revision is gone (0: nothing compacted).
    pub fn compact_revision(&self) -> Result<u64> {
        match self.store.get(Space::Meta, keys::META_COMPACT_REVISION)? {
            Some(b) => codec::decode_u64(&b),
            None => Ok(0),
        }
    }

    /// Drops log entries up to and including `upto`. The compaction point is raised first and
    /// made durable, so a reader never trusts an entry that is about to go.
    pub fn compact(&self, upto: u64) -> Result<usize> {
        let current = self.compact_revision()?;
        if upto <= current {
            return Ok(0);
        }
        transact(self.store.as_ref(), |tx| {
            tx.put(
                Space::Meta,
                keys::META_COMPACT_REVISION,
                &upto.to_be_bytes(),
            )
        })?;
        self.store.flush()?;
        let mut removed = 0;
        let after = keys::log(current);
        let doomed: Vec<Vec<u8>> = self
            .store
            .scan(
                Space::Log,
                b"",
                if current == 0 { None } else { Some(&after[..]) },
            )
            .map_while(|kv| match kv {
                Ok((k, _)) if codec::decode_u64(&k).is_ok_and(|r| r <= upto) => Some(k),
                _ => None,
            })
            .collect();
        for k in doomed {
            self.store.remove(Space::Log, &k)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Every record of the data space, in key order (APIs, domains, mappings, stages), read
    /// lazily: no list of them is built.
    pub fn scan_records(&self) -> impl Iterator<Item = Result<(Vec<u8>, Resource)>> + Send + use<> {
        let prefixes = [
            keys::apis(),
            keys::domains(),
            keys::mapping_prefix(),
            keys::stage_prefix(),
        ];
        let store = self.store.clone();
        prefixes.into_iter().flat_map(move |p| {
            store.scan(Space::Data, &p, None).filter_map(|kv| match kv {
                Ok((k, v)) => match decode_record(&k, &v) {
                    Ok(Some(r)) => Some(Ok((k, r))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                },
                Err(e) => Some(Err(e)),
            })
        })
    }

    /// The random id of this data dir, made when it was created.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The engine underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The last committed revision (0 before the first write).
    pub fn revision(&self) -> Result<u64> {
        Ok(self.revision.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The revision recorded in the store's meta record (what `revision` starts from when the
    /// data dir is opened); for the offline consistency check.
    pub fn stored_revision(&self) -> Result<u64> {
        match self.store.get(Space::Meta, keys::META_REVISION)? {
            Some(b) => codec::decode_u64(&b),
            None => Ok(0),
        }
    }

    /// Makes every committed write durable.
    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    fn get<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        match self.store.get(Space::Data, key)? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    // ---- reads -------------------------------------------------------------------------------

    /// The API, if it exists and `scope` sees it.
    pub fn get_api(&self, scope: &Scope, api_id: &str) -> Result<Api> {
        match self.get::<Api>(&keys::api(api_id))? {
            Some(a) if scope.sees(&a.account_id) => Ok(a),
            _ => Err(rules::api_not_found(api_id)),
        }
    }

    /// APIs visible to `scope`, by `api_id`.
    pub fn list_apis(&self, scope: &Scope, page: &Page) -> Result<Listed<Api>> {
        match scope {
            Scope::All => self.list_records(&keys::apis(), page, |k, v| {
                let _ = k;
                Ok(Some(codec::decode::<Api>(v)?))
            }),
            Scope::Account(a) => self.list_records(&keys::account_apis(a), page, |id, _| {
                self.get::<Api>(&keys::api(id))
            }),
        }
    }

    /// The stage, if its API exists and `scope` sees it.
    pub fn get_stage(&self, scope: &Scope, api_id: &str, stage: &str) -> Result<Stage> {
        self.get_api(scope, api_id)?;
        self.get::<Stage>(&keys::stage(api_id, stage))?
            .ok_or_else(|| rules::stage_not_found(stage))
    }

    /// Stages of an API visible to `scope`, by name.
    pub fn list_stages(&self, scope: &Scope, api_id: &str, page: &Page) -> Result<Listed<Stage>> {
        self.get_api(scope, api_id)?;
        self.list_records(&keys::stages(api_id), page, |_, v| {
            Ok(Some(codec::decode::<Stage>(v)?))
        })
    }

    /// The domain name, if it exists and `scope` sees it.
    pub fn get_domain(&self, scope: &Scope, domain: &str) -> Result<DomainName> {
        match self.get::<DomainName>(&keys::domain(domain))? {
            Some(d) if scope.sees(&d.account_id) => Ok(d),
            _ => Err(rules::domain_not_found(domain)),
        }
    }

    /// Domain names visible to `scope`, by name.
    pub fn list_domains(&self, scope: &Scope, page: &Page) -> Result<Listed<DomainName>> {
        match scope {
            Scope::All => self.list_records(&keys::domains(), page, |_, v| {
                Ok(Some(codec::decode::<DomainName>(v)?))
            }),
            Scope::Account(a) => self.list_records(&keys::account_domains(a), page, |d, _| {
                self.get::<DomainName>(&keys::domain(d))
            }),
        }
    }

    /// The mapping, if its domain exists and `scope` sees it.
    pub fn get_mapping(&self, scope: &Scope, domain: &str, mapping_id: &str) -> Result<ApiMapping> {
        self.get_domain(scope, domain)?;
        self.get::<ApiMapping>(&keys::mapping(domain, mapping_id))?
            .ok_or_else(|| rules::mapping_not_found(mapping_id))
    }

    /// Mappings of a domain visible to `scope`, by key.
    pub fn list_mappings(
        &self,
        scope: &Scope,
        domain: &str,
        page: &Page,
    ) -> Result<Listed<ApiMapping>> {
        self.get_domain(scope, domain)?;
        self.list_records(&keys::mapping_keys(domain), page, |_, id| {
            let id = String::from_utf8_lossy(id);
            self.get::<ApiMapping>(&keys::mapping(domain, &id))
        })
    }

    /// Keyset pagination over `prefix`: the sort key is the key's suffix after the prefix.
    /// `load` turns (suffix, value) into an item, or None when the item vanished meanwhile.
    fn list_records<T>(
        &self,
        prefix: &[u8],
        page: &Page,
        load: impl Fn(&str, &[u8]) -> Result<Option<T>>,
    ) -> Result<Listed<T>> {
        let mut items = Vec::with_capacity(page.size.min(128));
        let mut last = None;
        let mut more = false;
        for kv in self.store.scan(
            Space::Data,
            prefix,
            page.after.as_deref().map(str::as_bytes),
        ) {
            let (k, v) = kv?;
            let sort_key = keys::suffix(&k, prefix);
            if items.len() == page.size {
                more = true;
                break;
            }
            if let Some(item) = load(&sort_key, &v)? {
                items.push(item);
                last = Some(sort_key);
            }
        }
        Ok(Listed {
            items,
            next: if more { last } else { None },
        })
    }

    /// Keys (suffixes) under `prefix`, all of them. Only the writer calls this, just before a
    /// transaction, so the list is exactly what the transaction sees.
    fn scan_suffixes(&self, prefix: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
        self.store
            .scan(Space::Data, prefix, None)
            .map(|kv| kv.map(|(k, v)| (keys::suffix(&k, prefix), v)))
            .collect()
    }

    // ---- writes ------------------------------------------------------------------------------

    /// Applies one write as one transaction: checks its rules, writes records, indexes, the
    /// revision and the change log entry. Not yet durable: the writer flushes after a group.
    /// Must not be called from two threads at once.
    pub fn apply(&self, op: &WriteOp) -> Result<Committed> {
        let r = self.apply_inner(op);
        match r {
            Err(e) if e.reason() == "PROTOCOL_CONFLICT" => Err(self.name_protocol_conflict(op, e)),
            other => other,
        }
    }

    fn apply_inner(&self, op: &WriteOp) -> Result<Committed> {
        let ts = now();
        let (result, events, revision) = match op {
            WriteOp::CreateApi {
                account,
                name,
                protocol,
                description,
                tags,
            } => self.txn(|tx| {
                let revision = peek_revision(tx)?;
                let api_id = loop {
                    let id = ids::api_id();
                    if tx.get(Space::Data, &keys::api(&id))?.is_none() {
                        break id;
                    }
                };
                let api = Api {
                    api_id: api_id.clone(),
                    name: name.clone(),
                    protocol_type: *protocol as i32,
                    description: description.clone(),
                    tags: tags.clone(),
                    created_date: Some(ts),
                    account_id: account.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                };
                tput(tx, &keys::api(&api_id), &api)?;
                tx.put(Space::Data, &keys::account_api(account, &api_id), b"")?;
                let events = vec![put_event(resource::Resource::Api(api.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Api(api), events, revision))
            })?,

            WriteOp::UpdateApi {
                account,
                api_id,
                name,
                description,
                expected_revision,
            } => self.txn(|tx| {
                let mut api = visible_api(tx, account, api_id)?;
                rules::check_expected_revision(
                    &format!("API {api_id}"),
                    *expected_revision,
                    api.mod_revision,
                )?;
                if let Some(n) = name {
                    api.name = n.clone();
                }
                if let Some(d) = description {
                    api.description = d.clone();
                }
                api.mod_revision = peek_revision(tx)?;
                tput(tx, &keys::api(api_id), &api)?;
                let events = vec![put_event(resource::Resource::Api(api.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Api(api), events, revision))
            })?,

            WriteOp::DeleteApi {
                account,
                api_id,
                expected_revision,
            } => {
                let stage_names = self.scan_suffixes(&keys::stages(api_id))?;
                self.txn(|tx| {
                    let api = visible_api(tx, account, api_id)?;
                    rules::check_expected_revision(
                        &format!("API {api_id}"),
                        *expected_revision,
                        api.mod_revision,
                    )?;
                    rules::check_api_deletable(api_id, &refs(tx, &keys::api_refs(api_id))?)?;
                    let mut events = Vec::new();
                    for (stage_name, _) in &stage_names {
                        let stage = existing_stage(tx, api_id, stage_name)?;
                        rules::check_stage_deletable(
                            stage_name,
                            &refs(tx, &keys::stage_refs(api_id, stage_name))?,
                        )?;
                        tdel(tx, &keys::stage(api_id, stage_name))?;
                        events.push(delete_event(resource::Resource::Stage(stage)));
                    }
                    tdel(tx, &keys::api(api_id))?;
                    tdel(tx, &keys::account_api(account, api_id))?;
                    events.push(delete_event(resource::Resource::Api(api)));
                    let revision = commit_revision(tx, &events)?;
                    Ok((WriteResult::Deleted(revision), events, revision))
                })?
            }

            WriteOp::CreateStage {
                account,
                api_id,
                stage_name,
                description,
                tags,
            } => self.txn(|tx| {
                visible_api(tx, account, api_id)?;
                let key = keys::stage(api_id, stage_name);
                if tx.get(Space::Data, &key)?.is_some() {
                    return Err(rules::stage_exists(api_id, stage_name).into());
                }
                let revision = peek_revision(tx)?;
                let stage = Stage {
                    api_id: api_id.clone(),
                    stage_name: stage_name.clone(),
                    description: description.clone(),
                    tags: tags.clone(),
                    created_date: Some(ts),
                    last_updated_date: Some(ts),
                    account_id: account.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                };
                tput(tx, &key, &stage)?;
                let events = vec![put_event(resource::Resource::Stage(stage.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Stage(stage), events, revision))
            })?,

            WriteOp::UpdateStage {
                account,
                api_id,
                stage_name,
                description,
                expected_revision,
            } => self.txn(|tx| {
                visible_api(tx, account, api_id)?;
                let mut stage = existing_stage(tx, api_id, stage_name)?;
                rules::check_expected_revision(
                    &format!("stage {stage_name}"),
                    *expected_revision,
                    stage.mod_revision,
                )?;
                if let Some(d) = description {
                    stage.description = d.clone();
                }
                stage.last_updated_date = Some(ts);
                stage.mod_revision = peek_revision(tx)?;
                tput(tx, &keys::stage(api_id, stage_name), &stage)?;
                let events = vec![put_event(resource::Resource::Stage(stage.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Stage(stage), events, revision))
            })?,

            WriteOp::DeleteStage {
                account,
                api_id,
                stage_name,
                expected_revision,
            } => self.txn(|tx| {
                visible_api(tx, account, api_id)?;
                let stage = existing_stage(tx, api_id, stage_name)?;
                rules::check_expected_revision(
                    &format!("stage {stage_name}"),
                    *expected_revision,
                    stage.mod_revision,
                )?;
                rules::check_stage_deletable(
                    stage_name,
                    &refs(tx, &keys::stage_refs(api_id, stage_name))?,
                )?;
                tdel(tx, &keys::stage(api_id, stage_name))?;
                let events = vec![delete_event(resource::Resource::Stage(stage))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Deleted(revision), events, revision))
            })?,

            WriteOp::CreateDomainName {
                account,
                domain_name,
                configuration,
                tags,
            } => self.txn(|tx| {
                let key = keys::domain(domain_name);
                if tx.get(Space::Data, &key)?.is_some() {
                    return Err(rules::domain_exists(domain_name).into());
                }
                let revision = peek_revision(tx)?;
                let mut cfg = configuration.clone();
                cfg.api_gateway_domain_name = ids::api_gateway_domain_name();
                let domain = DomainName {
                    domain_name: domain_name.clone(),
                    domain_name_configurations: vec![cfg],
                    api_mapping_selection_expression: "$request.basepath".to_string(),
                    tags: tags.clone(),
                    created_date: Some(ts),
                    account_id: account.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                };
                tput(tx, &key, &domain)?;
                tx.put(
                    Space::Data,
                    &keys::account_domain(account, domain_name),
                    b"",
                )?;
                let events = vec![put_event(resource::Resource::DomainName(domain.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::DomainName(domain), events, revision))
            })?,

            WriteOp::UpdateDomainName {
                account,
                domain_name,
                configuration,
                expected_revision,
            } => self.txn(|tx| {
                let mut domain = visible_domain(tx, account, domain_name)?;
                rules::check_expected_revision(
                    &format!("domain name {domain_name}"),
                    *expected_revision,
                    domain.mod_revision,
                )?;
                if let Some(patch) = configuration {
                    let next =
                        rules::apply_configuration_patch(&domain_configuration(&domain), patch);
                    let counters = codec::decode_counters(
                        tx.get(Space::Data, &keys::domain_counters(domain_name))?
                            .as_deref(),
                    )?;
                    rules::check_configuration_change(domain_name, &next, &counters)?;
                    domain.domain_name_configurations = vec![next];
                }
                domain.mod_revision = peek_revision(tx)?;
                tput(tx, &keys::domain(domain_name), &domain)?;
                let events = vec![put_event(resource::Resource::DomainName(domain.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::DomainName(domain), events, revision))
            })?,

            WriteOp::DeleteDomainName {
                account,
                domain_name,
                expected_revision,
            } => {
                let mapping_ids = self.scan_suffixes(&keys::mapping_keys(domain_name))?;
                self.txn(|tx| {
                    let domain = visible_domain(tx, account, domain_name)?;
                    rules::check_expected_revision(
                        &format!("domain name {domain_name}"),
                        *expected_revision,
                        domain.mod_revision,
                    )?;
                    let counters_key = keys::domain_counters(domain_name);
                    let counters =
                        codec::decode_counters(tx.get(Space::Data, &counters_key)?.as_deref())?;
                    if counters.total() != mapping_ids.len() as u64 {
                        return Err(Error::internal(format!(
                            "index mismatch on {domain_name}: {} mappings counted, {} found",
                            counters.total(),
                            mapping_ids.len()
                        ))
                        .into());
                    }
                    let mut events = Vec::with_capacity(mapping_ids.len() + 1);
                    for (key, id) in &mapping_ids {
                        let id = String::from_utf8_lossy(id);
                        let mkey = keys::mapping(domain_name, &id);
                        let Some(m) = tget::<ApiMapping>(tx, &mkey)? else {
                            return Err(Error::internal(format!(
                                "index mismatch on {domain_name}: key '{key}' names missing mapping {id}"
                            ))
                            .into());
                        };
                        adjust(tx, &keys::api_refs(&m.api_id), domain_name, -1)?;
                        adjust(tx, &keys::stage_refs(&m.api_id, &m.stage), domain_name, -1)?;
                        tdel(tx, &keys::mapping_key(domain_name, key))?;
                        tdel(tx, &mkey)?;
                        events.push(delete_event(resource::Resource::ApiMapping(m)));
                    }
                    tdel(tx, &counters_key)?;
                    tdel(tx, &keys::domain(domain_name))?;
                    tdel(tx, &keys::account_domain(account, domain_name))?;
                    events.push(delete_event(resource::Resource::DomainName(domain)));
                    let revision = commit_revision(tx, &events)?;
                    Ok((WriteResult::Deleted(revision), events, revision))
                })?
            }

            WriteOp::CreateApiMapping {
                account,
                domain_name,
                api_mapping_key,
                api_id,
                stage,
            } => self.txn(|tx| {
                let domain = visible_domain(tx, account, domain_name)?;
                let api = visible_api(tx, account, api_id)?;
                existing_stage(tx, api_id, stage)?;
                let key_index = keys::mapping_key(domain_name, api_mapping_key);
                if tx.get(Space::Data, &key_index)?.is_some() {
                    return Err(rules::mapping_key_conflict(domain_name, api_mapping_key).into());
                }
                let counters_key = keys::domain_counters(domain_name);
                let mut counters =
                    codec::decode_counters(tx.get(Space::Data, &counters_key)?.as_deref())?;
                let protocol = protocol_of(&api);
                rules::check_mapping_placement(
                    domain_name,
                    &domain_configuration(&domain),
                    api_id,
                    protocol,
                    api_mapping_key,
                    &counters,
                    self.limits.max_multi_level_mappings_per_domain,
                )?;
                let mapping_id = loop {
                    let id = ids::api_mapping_id();
                    if tx
                        .get(Space::Data, &keys::mapping(domain_name, &id))?
                        .is_none()
                    {
                        break id;
                    }
                };
                let revision = peek_revision(tx)?;
                let mapping = ApiMapping {
                    api_mapping_id: mapping_id.clone(),
                    domain_name: domain_name.clone(),
                    api_mapping_key: api_mapping_key.clone(),
                    api_id: api_id.clone(),
                    stage: stage.clone(),
                    account_id: account.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                };
                counters.add(protocol, api_mapping_key);
                tx.put(
                    Space::Data,
                    &counters_key,
                    &codec::encode_counters(&counters),
                )?;
                tx.put(Space::Data, &key_index, mapping_id.as_bytes())?;
                tput(tx, &keys::mapping(domain_name, &mapping_id), &mapping)?;
                adjust(tx, &keys::api_refs(api_id), domain_name, 1)?;
                adjust(tx, &keys::stage_refs(api_id, stage), domain_name, 1)?;
                let events = vec![put_event(resource::Resource::ApiMapping(mapping.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::ApiMapping(mapping), events, revision))
            })?,

            WriteOp::UpdateApiMapping {
                account,
                domain_name,
                api_mapping_id,
                api_mapping_key,
                api_id,
                stage,
                expected_revision,
            } => self.txn(|tx| {
                let domain = visible_domain(tx, account, domain_name)?;
                let mkey = keys::mapping(domain_name, api_mapping_id);
                let Some(mut mapping) = tget::<ApiMapping>(tx, &mkey)? else {
                    return Err(rules::mapping_not_found(api_mapping_id).into());
                };
                rules::check_expected_revision(
                    &format!("API mapping {api_mapping_id}"),
                    *expected_revision,
                    mapping.mod_revision,
                )?;
                let old = mapping.clone();
                let new_key = api_mapping_key
                    .clone()
                    .unwrap_or(old.api_mapping_key.clone());
                let new_api_id = api_id.clone().unwrap_or(old.api_id.clone());
                let new_stage = stage.clone().unwrap_or(old.stage.clone());
                let new_api = visible_api(tx, account, &new_api_id)?;
                existing_stage(tx, &new_api_id, &new_stage)?;
                let new_index = keys::mapping_key(domain_name, &new_key);
                if new_key != old.api_mapping_key && tx.get(Space::Data, &new_index)?.is_some() {
                    return Err(rules::mapping_key_conflict(domain_name, &new_key).into());
                }
                let old_api = tget::<Api>(tx, &keys::api(&old.api_id))?;
                let counters_key = keys::domain_counters(domain_name);
                let mut counters =
                    codec::decode_counters(tx.get(Space::Data, &counters_key)?.as_deref())?;
                if let Some(old_api) = &old_api {
                    counters.remove(protocol_of(old_api), &old.api_mapping_key);
                }
                let protocol = protocol_of(&new_api);
                rules::check_mapping_placement(
                    domain_name,
                    &domain_configuration(&domain),
                    &new_api_id,
                    protocol,
                    &new_key,
                    &counters,
                    self.limits.max_multi_level_mappings_per_domain,
                )?;
                counters.add(protocol, &new_key);
                tx.put(
                    Space::Data,
                    &counters_key,
                    &codec::encode_counters(&counters),
                )?;
                if new_key != old.api_mapping_key {
                    tdel(tx, &keys::mapping_key(domain_name, &old.api_mapping_key))?;
                    tx.put(Space::Data, &new_index, api_mapping_id.as_bytes())?;
                }
                if new_api_id != old.api_id || new_stage != old.stage {
                    adjust(tx, &keys::api_refs(&old.api_id), domain_name, -1)?;
                    adjust(
                        tx,
                        &keys::stage_refs(&old.api_id, &old.stage),
                        domain_name,
                        -1,
                    )?;
                    adjust(tx, &keys::api_refs(&new_api_id), domain_name, 1)?;
                    adjust(
                        tx,
                        &keys::stage_refs(&new_api_id, &new_stage),
                        domain_name,
                        1,
                    )?;
                }
                mapping.api_mapping_key = new_key;
                mapping.api_id = new_api_id;
                mapping.stage = new_stage;
                mapping.mod_revision = peek_revision(tx)?;
                tput(tx, &mkey, &mapping)?;
                let events = vec![put_event(resource::Resource::ApiMapping(mapping.clone()))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::ApiMapping(mapping), events, revision))
            })?,

            WriteOp::DeleteApiMapping {
                account,
                domain_name,
                api_mapping_id,
                expected_revision,
            } => self.txn(|tx| {
                visible_domain(tx, account, domain_name)?;
                let mkey = keys::mapping(domain_name, api_mapping_id);
                let Some(mapping) = tget::<ApiMapping>(tx, &mkey)? else {
                    return Err(rules::mapping_not_found(api_mapping_id).into());
                };
                rules::check_expected_revision(
                    &format!("API mapping {api_mapping_id}"),
                    *expected_revision,
                    mapping.mod_revision,
                )?;
                let counters_key = keys::domain_counters(domain_name);
                let mut counters =
                    codec::decode_counters(tx.get(Space::Data, &counters_key)?.as_deref())?;
                if let Some(api) = tget::<Api>(tx, &keys::api(&mapping.api_id))? {
                    counters.remove(protocol_of(&api), &mapping.api_mapping_key);
                }
                if counters.total() == 0 {
                    tdel(tx, &counters_key)?;
                } else {
                    tx.put(
                        Space::Data,
                        &counters_key,
                        &codec::encode_counters(&counters),
                    )?;
                }
                tdel(
                    tx,
                    &keys::mapping_key(domain_name, &mapping.api_mapping_key),
                )?;
                tdel(tx, &mkey)?;
                adjust(tx, &keys::api_refs(&mapping.api_id), domain_name, -1)?;
                adjust(
                    tx,
                    &keys::stage_refs(&mapping.api_id, &mapping.stage),
                    domain_name,
                    -1,
                )?;
                let events = vec![delete_event(resource::Resource::ApiMapping(mapping))];
                let revision = commit_revision(tx, &events)?;
                Ok((WriteResult::Deleted(revision), events, revision))
            })?,
        };
        // After the transaction: a reader that sees this revision sees its records.
        self.revision
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        Ok(Committed {
            result,
            revision,
            events,
        })
    }

    /// Rule 6 names the conflicting mapping. Only the writer calls this, right after the
    /// refused transaction, so the scan sees the state the rule saw.
    fn name_protocol_conflict(&self, op: &WriteOp, e: Error) -> Error {
        let (domain, api_id, account, updated) = match op {
            WriteOp::CreateApiMapping {
                domain_name,
                api_id,
                account,
                ..
            } => (domain_name, api_id.clone(), account, None),
            WriteOp::UpdateApiMapping {
                domain_name,
                api_id,
                api_mapping_id,
                account,
                ..
            } => {
                let current = self
                    .get_mapping(
                        &Scope::Account(account.clone()),
                        domain_name,
                        api_mapping_id,
                    )
                    .map(|m| m.api_id)
                    .unwrap_or_default();
                (
                    domain_name,
                    api_id.clone().unwrap_or(current),
                    account,
                    Some(api_mapping_id),
                )
            }
            _ => return e,
        };
        let Ok(api) = self.get_api(&Scope::Account(account.clone()), &api_id) else {
            return e;
        };
        let family = Family::of(protocol_of(&api));
        let Ok(ids) = self.scan_suffixes(&keys::mapping_keys(domain)) else {
            return e;
        };
        for (key, id) in ids {
            let id = String::from_utf8_lossy(&id).into_owned();
            if updated == Some(&id) {
                continue; // the mapping being updated does not conflict with itself
            }
            let Ok(Some(m)) = self.get::<ApiMapping>(&keys::mapping(domain, &id)) else {
                continue;
            };
            let Ok(Some(other)) = self.get::<Api>(&keys::api(&m.api_id)) else {
                continue;
            };
            if Family::of(protocol_of(&other)) != family {
                return rules::protocol_conflict(domain, &api_id, family, Some((&id, &key)));
            }
        }
        e
    }
}
