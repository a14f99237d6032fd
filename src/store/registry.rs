//! The registry over an engine: loads the state when it opens, holds the current durable
//! version for every reader, and reads the change log for watchers.
//!
//! Startup reads every record once, rebuilds the in-memory [`State`] with its indexes, and
//! checks it against the tail of the change log: the last revision's events must be exactly
//! what the records show (its PUTs stored with that `mod_revision`, its DELETEs absent), and no
//! record may be newer than the store's revision. A store that fails this is refused (a torn
//! copy, or records and log from different moments), rather than served wrong.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::history::{self, Hash};
use super::{Engine, Limits, codec, keys};
use crate::domain::ids;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::pb::{ChangeSet, EventType, resource};

/// The registry: an engine and the current durable version of its state.
pub struct Registry {
    engine: Arc<dyn Engine>,
    store_id: String,
    limits: Limits,
    current: ArcSwap<State>,
    /// The revision of `current`, for readers that wait for one ([`Registry::at_least`]).
    published: tokio::sync::watch::Sender<u64>,
    /// Hashes of the recent revisions (through the newest committed one).
    hashes: history::Recent,
    /// Where the high-water mark is kept, once [`Registry::keep_high_water`] was called.
    high_water: std::sync::OnceLock<super::highwater::Keeper>,
}

/// Follows the history hash chain over the whole retained log of `engine`, from the compaction
/// point to `revision`, checking every stored hash; returns the recent hashes.
pub fn load_history(engine: &dyn Engine, revision: u64) -> Result<history::Recent> {
    const CHUNK: usize = 1024;
    let compact = engine.compact_revision()?;
    let recent = history::Recent::default();
    let mut at = compact;
    let mut hash = engine.compact_hash()?;
    recent.push(at, hash);
    while at < revision {
        let entries = engine.read_log(at + 1, revision, CHUNK)?;
        if entries.is_empty() {
            return Err(Error::Corrupt(format!(
                "the change log has no entry for revision {} (the store is at {revision})",
                at + 1
            )));
        }
        for (rev, e) in &entries {
            hash = history::verify(at, hash, [(*rev, e.as_slice())])?;
            at = *rev;
            recent.push(at, hash);
        }
    }
    Ok(recent)
}

/// The `mod_revision` of a record.
pub fn mod_revision(r: &resource::Resource) -> u64 {
    match r {
        resource::Resource::Api(a) => a.mod_revision,
        resource::Resource::Stage(s) => s.mod_revision,
        resource::Resource::DomainName(d) => d.mod_revision,
        resource::Resource::ApiMapping(m) => m.mod_revision,
    }
}

/// Reads every record of `engine` into a state at the engine's revision, and checks it against
/// the last log entry (see the module documentation). One thread scans and decodes while the
/// calling one builds the state, in batches.
pub fn load(engine: &dyn Engine) -> Result<State> {
    const BATCH: usize = 4096;
    let (revision, records) = engine.scan_snapshot()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<resource::Resource>>>(8);
    let mut loader = State::loader();
    std::thread::scope(|scope| -> Result<()> {
        let reader = move || {
            let mut batch = Vec::with_capacity(BATCH);
            for kv in records {
                let decoded = kv.and_then(|(k, v)| {
                    let r = codec::decode_record(&k, &v)?;
                    if let Some(r) = &r {
                        let m = mod_revision(r);
                        if m > revision {
                            return Err(Error::Corrupt(format!(
                                "record {} has mod_revision {m}, above the store's revision {revision}",
                                String::from_utf8_lossy(&k).replace('\0', "/")
                            )));
                        }
                    }
                    Ok(r)
                });
                match decoded {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(batch));
        };
        std::thread::Builder::new()
            .name("mapreg-load".into())
            .spawn_scoped(scope, reader)
            .map_err(|e| Error::internal(format!("cannot start the loading thread: {e}")))?;
        for batch in rx {
            for r in batch? {
                loader.add(r)?;
            }
        }
        Ok(())
    })?;
    let finishing = std::time::Instant::now();
    let state = loader.finish(revision);
    tracing::debug!(
        seconds = finishing.elapsed().as_secs_f64(),
        "counters and references written into the state"
    );
    check_tail(engine, &state)?;
    Ok(state)
}

/// The last revision's change set must be what the records show.
fn check_tail(engine: &dyn Engine, state: &State) -> Result<()> {
    let revision = state.revision();
    if revision == 0 || revision <= engine.compact_revision()? {
        return Ok(());
    }
    let Some((rev, bytes)) = engine.read_log(revision, revision, 1)?.into_iter().next() else {
        return Err(Error::Corrupt(format!(
            "the change log has no entry for the store's revision {revision}"
        )));
    };
    let cs = codec::decode_change_set(history::split(&bytes).0)?;
    let mismatch = |what: String| {
        Error::Corrupt(format!(
            "the records do not match the change log at revision {rev}: {what}"
        ))
    };
    for e in &cs.events {
        let Some(r) = e.resource.as_ref().and_then(|r| r.resource.as_ref()) else {
            continue;
        };
        let key = keys::of(r);
        let shown = String::from_utf8_lossy(&key).replace('\0', "/");
        let stored = stored_revision(state, r);
        if e.r#type == EventType::Delete as i32 {
            if stored.is_some() {
                return Err(mismatch(format!("{shown} was deleted but is stored")));
            }
        } else if stored != Some(revision) {
            return Err(mismatch(format!(
                "{shown} was written but is stored at {stored:?}"
            )));
        }
    }
    Ok(())
}

/// The `mod_revision` of the record of `r`'s identity in `state`, if there is one.
fn stored_revision(state: &State, r: &resource::Resource) -> Option<u64> {
    match r {
        resource::Resource::Api(a) => state.api(&a.api_id).map(|x| x.mod_revision),
        resource::Resource::Stage(s) => state
            .stage(&s.api_id, &s.stage_name)
            .map(|x| x.mod_revision),
        resource::Resource::DomainName(d) => {
            state.domain(&d.domain_name).map(|x| x.record.mod_revision)
        }
        resource::Resource::ApiMapping(m) => state
            .mapping(&m.domain_name, &m.api_mapping_id)
            .map(|x| x.mod_revision),
    }
}

impl Registry {
    /// Opens the registry on `engine`: gives a new store its random `store_id` and loads the
    /// state (see [`load`]).
    pub fn open(engine: Arc<dyn Engine>, limits: Limits) -> Result<Registry> {
        let store_id = engine.store_id(&ids::store_id)?;
        let started = std::time::Instant::now();
        let state = load(engine.as_ref())?;
        let hashes = load_history(engine.as_ref(), state.revision())?;
        let (apis, stages, domains, mappings) = state.counts();
        tracing::info!(
            revision = state.revision(),
            apis,
            stages,
            domains,
            mappings,
            seconds = started.elapsed().as_secs_f64(),
            "state loaded"
        );
        let (published, _) = tokio::sync::watch::channel(state.revision());
        Ok(Registry {
            engine,
            store_id,
            limits,
            current: ArcSwap::from_pointee(state),
            hashes,
            high_water: std::sync::OnceLock::new(),
            published,
        })
    }

    /// Keeps the high-water mark (see [`highwater`](super::highwater)) at `path` from now on,
    /// after checking the store against the mark already there: a store behind it, or with
    /// another history at its revision, is [`Error::Corrupt`] unless `accept_rollback`.
    pub fn keep_high_water(&self, path: std::path::PathBuf, accept_rollback: bool) -> Result<()> {
        if let Some(mark) = super::highwater::read(&path)? {
            let why = super::highwater::refusal(&mark, &self.store_id, self.revision(), |r| {
                self.history_hash(r)
            })?;
            match why {
                Some(why) if !accept_rollback => {
                    return Err(Error::Corrupt(format!(
                        "{why}. If this copy was restored on purpose, start once with \
                         --accept-rollback (gateways that followed the newer history are told \
                         STORE_CHANGED and take a fresh snapshot)"
                    )));
                }
                Some(why) => tracing::warn!("{why}; accepted (--accept-rollback)"),
                None => {}
            }
        }
        let first = self.mark(self.revision());
        let keeper = super::highwater::Keeper::start(path, first.as_ref())
            .map_err(|e| Error::internal(format!("cannot start the high-water thread: {e}")))?;
        let _ = self.high_water.set(keeper);
        Ok(())
    }

    /// The high-water mark of `revision`, if its history hash is known.
    fn mark(&self, revision: u64) -> Option<super::highwater::Mark> {
        let Ok(Some(hash)) = self.history_hash(revision) else {
            return None;
        };
        Some(super::highwater::Mark {
            store_id: self.store_id.clone(),
            revision,
            hash,
        })
    }

    /// Writes the high-water mark of the current version now (at a clean stop: the file is
    /// otherwise written from a thread of its own, shortly after each durable group).
    pub fn sync_high_water(&self) {
        if let Some(k) = self.high_water.get() {
            if let Some(mark) = self.mark(self.revision()) {
                k.note(mark);
            }
            k.sync();
        }
    }

    /// The history hash of `revision` (SPEC.md 8.3), if this store knows it: revision 0, a
    /// committed revision still in the log, or the compaction point. None below the
    /// compaction point or above the newest committed revision.
    pub fn history_hash(&self, revision: u64) -> Result<Option<Hash>> {
        if revision == 0 {
            return Ok(Some(history::ZERO));
        }
        if let Some(h) = self.hashes.get(revision) {
            return Ok(Some(h));
        }
        if self.hashes.head().is_some_and(|(head, _)| revision > head) {
            return Ok(None);
        }
        let compact = self.engine.compact_revision()?;
        if revision == compact {
            return Ok(Some(self.engine.compact_hash()?));
        }
        if revision < compact {
            return Ok(None);
        }
        let Some((_, e)) = self
            .engine
            .read_log(revision, revision, 1)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        match history::split(&e) {
            (_, Some(h)) => Ok(Some(h)),
            // An entry from before hashes: follow the chain from the compaction point.
            (_, None) => {
                let entries = self.engine.read_log(compact + 1, revision, usize::MAX)?;
                let h = history::verify(
                    compact,
                    self.engine.compact_hash()?,
                    entries.iter().map(|(r, e)| (*r, e.as_slice())),
                )?;
                Ok(Some(h))
            }
        }
    }

    /// The newest committed revision and its history hash.
    pub fn head_hash(&self) -> (u64, Hash) {
        self.hashes.head().unwrap_or((0, history::ZERO))
    }

    /// Records the hashes of newly committed revisions, in order. Only the writer calls this.
    pub(crate) fn record_hashes(&self, hashes: &[(u64, Hash)]) {
        for (r, h) in hashes {
            self.hashes.push(*r, *h);
        }
    }

    /// Re-reads the hash chain from the engine (after the writer lost track of the store).
    pub(crate) fn reload_history(&self) -> Result<()> {
        let revision = self.engine.revision()?;
        let fresh = load_history(self.engine.as_ref(), revision)?;
        self.hashes.truncate_after(0);
        if let Some((r, _)) = fresh.head() {
            let from = r.saturating_sub(history::RECENT as u64 - 1);
            for rev in from..=r {
                if let Some(h) = fresh.get(rev) {
                    self.hashes.push(rev, h);
                }
            }
        }
        Ok(())
    }

    /// The current durable version: every write up to its revision is acknowledged-durable,
    /// none after it is visible. Cheap (a reference count); hold it as long as needed.
    pub fn current(&self) -> Arc<State> {
        self.current.load_full()
    }

    /// The current durable version for a short read (one RPC): cheaper than
    /// [`current`](Registry::current), which takes a reference count that every reader
    /// thread contends on. Do not hold it across an `.await` that may last.
    pub fn read(&self) -> arc_swap::Guard<Arc<State>> {
        self.current.load()
    }

    /// Makes `state` the current version. Only the writer calls this, after the flush that
    /// made `state`'s revision durable, in revision order.
    pub(crate) fn publish(&self, state: Arc<State>) {
        let revision = state.revision();
        self.current.store(state);
        // After the store: a reader woken for `revision` finds a version at least that new.
        self.published.send_replace(revision);
        if let Some(k) = self.high_water.get()
            && let Some(mark) = self.mark(revision)
        {
            k.note(mark);
        }
    }

    /// Waits, at most `wait`, until the current version is at `revision` or newer (SPEC.md
    /// 8.2 `min_revision`); true once it is, false if `wait` ran out first. Returns at once
    /// when it already is. Woken by [`publish`](Registry::publish), never by polling.
    pub async fn at_least(&self, revision: u64, wait: std::time::Duration) -> bool {
        let mut published = self.published.subscribe();
        if *published.borrow_and_update() >= revision {
            return true;
        }
        matches!(
            tokio::time::timeout(wait, published.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        )
    }

    /// The revision of the current version.
    pub fn revision(&self) -> u64 {
        self.current.load().revision()
    }

    /// The random id of this store, made when it was created.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The limits the rules apply.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Change sets of revisions `from..=to`, at most `max`, in order, with their history
    /// hashes. Entries that are gone (compacted) are simply absent: compare with
    /// [`Registry::compact_revision`].
    pub fn read_log(
        &self,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<Vec<(u64, ChangeSet, Option<Hash>)>> {
        self.engine
            .read_log(from, to, max)?
            .into_iter()
            .map(|(rev, v)| {
                let (cs, h) = history::split(&v);
                let h = match h {
                    Some(h) => Some(h),
                    None => self.hashes.get(rev),
                };
                Ok((rev, codec::decode_change_set(cs)?, h))
            })
            .collect()
    }

    /// Every log entry at or below this revision is gone (0: nothing compacted).
    pub fn compact_revision(&self) -> Result<u64> {
        self.engine.compact_revision()
    }

    /// Drops log entries up to and including `upto`, keeping the history hash at `upto`.
    pub fn compact(&self, upto: u64) -> Result<usize> {
        let Some(hash) = self.history_hash(upto)? else {
            return Err(Error::internal(format!(
                "no history hash for revision {upto}; not compacting"
            )));
        };
        self.engine.compact(upto, &hash)
    }

    /// Makes every committed write durable.
    pub fn flush(&self) -> Result<()> {
        self.engine.flush()
    }
}
