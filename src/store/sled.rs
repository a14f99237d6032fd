//! The sled engine: three trees (`data` for records, `log`, `meta`), a batch committed as one
//! sled multi-tree transaction that only writes (its single read is the revision counter it is
//! conditioned on), made durable by `flush`.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, CommitError, Engine, RecordIter, codec, history, keys};
use crate::error::{Error, Result};

/// An [`Engine`] in a sled database directory.
pub struct SledEngine {
    db: sled::Db,
    data: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
}

fn meta_u64(meta: &sled::Tree, key: &[u8]) -> Result<u64> {
    match meta.get(key)? {
        Some(b) => codec::decode_u64(&b),
        None => Ok(0),
    }
}

impl SledEngine {
    /// Opens (creating if needed) the store in `dir`. A data dir of mapreg 0.1 loses its
    /// on-disk index entries, which nothing reads any more.
    /// A damaged store is [`Error::Corrupt`] (sled's own panics on truncated files included);
    /// a store another process holds is [`Error::Internal`] saying so.
    pub fn open(dir: &Path) -> Result<Self> {
        super::catch_corruption("opening the store", || Self::open_inner(dir))
    }

    fn open_inner(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            // Records are read once, at startup; the page cache serves log reads of watchers
            // that catch up.
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    Error::internal(format!(
                        "{} is in use by another process (is a server still running on it?)",
                        dir.display()
                    ))
                }
                other => Error::from(other),
            })?;
        let engine = SledEngine {
            data: db.open_tree("data")?,
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            db,
        };
        engine.drop_old_indexes()?;
        Ok(engine)
    }

    fn drop_old_indexes(&self) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        for prefix in [&b"ai\0"[..], b"di\0", b"k\0", b"dc\0", b"ra\0", b"rs\0"] {
            for kv in self.data.scan_prefix(prefix) {
                let (k, _) = kv?;
                batch.remove(k);
                n += 1;
            }
        }
        if n > 0 {
            self.data.apply_batch(batch)?;
            self.db.flush()?;
            tracing::info!(
                entries = n,
                "removed the on-disk indexes of a mapreg 0.1 data dir"
            );
        }
        Ok(())
    }
}

impl Engine for SledEngine {
    fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String> {
        if let Some(id) = self.meta.get(keys::META_STORE_ID)? {
            return String::from_utf8(id.to_vec()).map_err(|_| Error::internal("corrupt store id"));
        }
        let id = fresh();
        let prev = self.meta.compare_and_swap(
            keys::META_STORE_ID,
            None as Option<&[u8]>,
            Some(id.as_bytes()),
        )?;
        self.db.flush()?;
        match prev {
            Ok(()) => Ok(id),
            // Someone set it first: theirs stands.
            Err(cas) => String::from_utf8(cas.current.map(|v| v.to_vec()).unwrap_or_default())
                .map_err(|_| Error::internal("corrupt store id")),
        }
    }

    fn revision(&self) -> Result<u64> {
        meta_u64(&self.meta, keys::META_REVISION)
    }

    fn compact_revision(&self) -> Result<u64> {
        meta_u64(&self.meta, keys::META_COMPACT_REVISION)
    }

    fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
        let r = (&self.data, &self.log, &self.meta).transaction(|(data, log, meta)| {
            let current = match meta.get(keys::META_REVISION)? {
                Some(b) => codec::decode_u64(&b)
                    .map_err(|e| ConflictableTransactionError::Abort(CommitError::Failed(e)))?,
                None => 0,
            };
            if current != batch.base {
                return Err(ConflictableTransactionError::Abort(CommitError::Conflict {
                    current,
                }));
            }
            for (k, v) in &batch.records {
                match v {
                    Some(v) => data.insert(k.as_slice(), v.as_slice())?,
                    None => data.remove(k.as_slice())?,
                };
            }
            for (rev, cs) in &batch.log {
                log.insert(&keys::log(*rev), cs.as_slice())?;
            }
            meta.insert(keys::META_REVISION, &batch.revision.to_be_bytes())?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(CommitError::Failed(e.into())),
        }
    }

    fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        for kv in self.log.range(keys::log(from)..=keys::log(to)) {
            if out.len() >= max {
                break;
            }
            let (k, v) = kv?;
            out.push((codec::decode_u64(&k)?, v.to_vec()));
        }
        Ok(out)
    }

    fn scan_records(&self) -> RecordIter {
        Box::new(self.data.iter().map(|kv| {
            kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(Error::from)
        }))
    }

    fn compact(&self, upto: u64, hash: &history::Hash) -> Result<usize> {
        let current = self.compact_revision()?;
        if upto <= current {
            return Ok(0);
        }
        // The point first, durably: a reader never trusts an entry that is about to go.
        let mut point = sled::Batch::default();
        point.insert(keys::META_COMPACT_REVISION, &upto.to_be_bytes());
        point.insert(keys::META_COMPACT_HASH, &hash[..]);
        self.meta.apply_batch(point)?;
        self.db.flush()?;
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for kv in self.log.range(..=keys::log(upto)) {
            let (k, _) = kv?;
            batch.remove(k);
            removed += 1;
        }
        self.log.apply_batch(batch)?;
        Ok(removed)
    }

    fn compact_hash(&self) -> Result<history::Hash> {
        match self.meta.get(keys::META_COMPACT_HASH)? {
            Some(b) => <history::Hash>::try_from(&b[..]).map_err(|_| {
                Error::Corrupt("the compaction point's history hash is not 32 bytes".into())
            }),
            None => Ok(history::ZERO),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
