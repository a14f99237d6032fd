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
    let revision = engine.revision()?;
    let records = engine.scan_records();
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
                            return Err(Error::internal(format!(
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
        return Err(Error::internal(format!(
            "the change log has no entry for the store's revision {revision}"
        )));
    };
    let cs = codec::decode_change_set(&bytes)?;
    let mismatch = |what: String| {
        Error::internal(format!(
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
            published,
        })
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

    /// Change sets of revisions `from..=to`, at most `max`, in order. Entries that are gone
    /// (compacted) are simply absent: compare with [`Registry::compact_revision`].
    pub fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, ChangeSet)>> {
        self.engine
            .read_log(from, to, max)?
            .into_iter()
            .map(|(rev, v)| Ok((rev, codec::decode_change_set(&v)?)))
            .collect()
    }

    /// Every log entry at or below this revision is gone (0: nothing compacted).
    pub fn compact_revision(&self) -> Result<u64> {
        self.engine.compact_revision()
    }

    /// Drops log entries up to and including `upto`.
    pub fn compact(&self, upto: u64) -> Result<usize> {
        self.engine.compact(upto)
    }

    /// Makes every committed write durable.
    pub fn flush(&self) -> Result<()> {
        self.engine.flush()
    }
}
