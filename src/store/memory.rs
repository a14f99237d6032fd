//! The in-memory engine: what tests run the registry on, and the reference the conformance
//! suite holds every engine to. Not durable; [`MemoryEngine::reopen`] gives a second engine on
//! the same contents, as a restart of a durable engine would.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Batch, CommitError, Engine, RecordIter, history};
use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    store_id: Option<String>,
    revision: u64,
    compact_revision: u64,
    compact_hash: history::Hash,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    log: BTreeMap<u64, Vec<u8>>,
}

/// An [`Engine`] in memory.
#[derive(Default, Clone)]
pub struct MemoryEngine {
    inner: Arc<Mutex<Inner>>,
    /// Set for a store several registries share ([`MemoryEngine::shared`]): told every commit.
    follow: Option<Arc<tokio::sync::watch::Sender<u64>>>,
}

impl MemoryEngine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that several registries (nodes) in one process may share, as they
    /// share an etcd cluster: its [`Engine::follow`] tells each of them every commit. Clones
    /// are handles on the same store.
    pub fn shared() -> Self {
        MemoryEngine {
            inner: Default::default(),
            follow: Some(Arc::new(tokio::sync::watch::channel(0).0)),
        }
    }

    /// Another handle on the same contents (a "restart").
    pub fn reopen(&self) -> Self {
        self.clone()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::internal("memory engine lock poisoned"))
    }
}

impl Engine for MemoryEngine {
    fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String> {
        let mut g = self.lock()?;
        Ok(g.store_id.get_or_insert_with(fresh).clone())
    }

    fn revision(&self) -> Result<u64> {
        Ok(self.lock()?.revision)
    }

    fn compact_revision(&self) -> Result<u64> {
        Ok(self.lock()?.compact_revision)
    }

    fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
        let mut g = self.lock()?;
        if g.revision != batch.base {
            return Err(CommitError::Conflict {
                current: g.revision,
            });
        }
        for prefix in &batch.cleared {
            let under: Vec<Vec<u8>> = g
                .records
                .range(prefix.clone()..)
                .map(|(k, _)| k)
                .take_while(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            for k in under {
                g.records.remove(&k);
            }
        }
        for (k, v) in &batch.records {
            match v {
                Some(v) => g.records.insert(k.clone(), v.clone()),
                None => g.records.remove(k),
            };
        }
        for (rev, cs) in &batch.log {
            g.log.insert(*rev, cs.clone());
        }
        g.revision = batch.revision;
        if let Some(f) = &self.follow {
            f.send_replace(batch.revision);
        }
        Ok(())
    }

    fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let g = self.lock()?;
        Ok(g.log
            .range(from..=to)
            .take(max)
            .map(|(r, v)| (*r, v.clone()))
            .collect())
    }

    fn scan_records(&self) -> RecordIter {
        match self.lock() {
            Ok(g) => {
                let all: Vec<_> = g
                    .records
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.clone())))
                    .collect();
                Box::new(all.into_iter())
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn compact(&self, upto: u64, hash: &history::Hash) -> Result<usize> {
        let mut g = self.lock()?;
        if upto <= g.compact_revision {
            return Ok(0);
        }
        g.compact_revision = upto;
        g.compact_hash = *hash;
        let keep = g.log.split_off(&(upto + 1));
        let removed = g.log.len();
        g.log = keep;
        Ok(removed)
    }

    fn compact_hash(&self) -> Result<history::Hash> {
        Ok(self.lock()?.compact_hash)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.follow.as_ref().map(|f| f.subscribe())
    }
}
