//! The sled engine: three trees (`data` for records, `log`, `meta`), a batch committed as one
//! sled multi-tree transaction that only writes (its single read is the revision counter it is
//! conditioned on), made durable by `flush`.
//!
//! Recovery from I/O failures (a full disk, SPEC.md 8.7): once sled fails a write to its files
//! it keeps that error and returns it from every later write and flush until the database is
//! opened again. So the engine remembers that it is *broken*, keeps serving reads from the open
//! handles (sled's memory still holds everything committed), and on the next commit or flush
//! that finds room on the disk again (a small probe file can be written beside the store),
//! drops every handle and reopens the database; nothing restarts. The reopened store holds
//! what was durable: a batch committed but never flushed may be gone. That is never hidden:
//!
//! - after a reopen that found the store below the revision the old handles had (revisions
//!   committed but not flushed are gone), every [`flush`](Engine::flush) fails until a commit
//!   applies again (with `UNAVAILABLE` `STORE_REOPENED`), and
//! - a [`commit`](Engine::commit) on such a store, whose batch's base is above it, fails with
//!   nothing applied (the same error, not a conflict: the caller may retry),
//!
//! so the writer, whose next commit then finds the store below its working revision, reloads
//! from the store instead of publishing revisions the store no longer has.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Batch, CommitError, Engine, RecordIter, codec, history, keys};
use crate::error::{Error, Result};

/// The file written (then removed) to learn whether the disk has room again.
const PROBE: &str = "mapreg-space-probe";

/// Bytes the probe needs: room for sled to start a new segment and write its snapshot.
const PROBE_BYTES: usize = 2 * 1024 * 1024;

/// How often a broken engine looks for room again, at most.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The open database and its trees; dropped all together (sled holds a file lock).
struct Trees {
    db: sled::Db,
    data: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
}

/// An [`Engine`] in a sled database directory.
pub struct SledEngine {
    dir: PathBuf,
    /// None only between dropping the old handles and a successful reopen.
    trees: RwLock<Option<Trees>>,
    /// sled failed an I/O: its error is sticky until the database is opened again.
    broken: AtomicBool,
    /// The error that broke it, returned while it stays broken.
    failure: Mutex<Option<Error>>,
    /// When recovery was last tried.
    last_try: Mutex<Option<Instant>>,
    /// The revision the dropped handles had, kept until a reopen succeeds (a failed reopen
    /// must not forget what the next one has to compare with).
    before_reopen: Mutex<Option<u64>>,
    /// A reopen lost revisions that were committed but not flushed; cleared by the next
    /// commit that applies.
    lost: AtomicBool,
    /// The revision this handle's last commit left the store at, while that is known (None
    /// after an open, a reopen or a failed commit); held across each commit, so commits are
    /// serialized. Only commits move the revision and sled locks its files to this process,
    /// so a batch whose base is this revision skips reading it back inside the transaction
    /// (that read was an eighth of the writer thread's time).
    committed: Mutex<Option<u64>>,
    /// Test hook, on when the data dir held the file [`FAILPOINTS`] at open: while the file
    /// [`FAILPOINT_FULL`] exists in the data dir, every commit, flush and compaction fails as
    /// sled does on ENOSPC and the disk is taken as having no room.
    failpoints: bool,
}

fn meta_u64(meta: &sled::Tree, key: &[u8]) -> Result<u64> {
    match meta.get(key)? {
        Some(b) => codec::decode_u64(&b),
        None => Ok(0),
    }
}

fn storage_full_io() -> sled::Error {
    sled::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC))
}

/// Test hook for tests that cannot mount a small file system: a data dir holding this file
/// when the engine opens has its failpoints on (see [`FAILPOINT_FULL`]). Never made by mapreg.
#[doc(hidden)]
pub const FAILPOINTS: &str = "mapreg-failpoints";

/// Test hook: while this file exists in a data dir whose failpoints are on ([`FAILPOINTS`]),
/// the engine behaves as on a full disk: writes fail ENOSPC, and no room is found.
#[doc(hidden)]
pub const FAILPOINT_FULL: &str = "mapreg-failpoint-full";

/// The error of a commit or flush that found the reopened store below what was committed.
fn reopened(now: u64) -> Error {
    Error::Unavailable {
        reason: "STORE_REOPENED",
        message: format!(
            "the store was reopened after the disk was full and is back at its last durable \
             revision {now}; writes not acknowledged before were dropped: retry"
        ),
    }
}

/// What happened when a broken engine tried to recover.
enum Recovery {
    /// Not broken, or reopened: go on.
    Ready,
    /// Reopened, but the reopened store is at `now`, below the old handles
    /// revision): batches committed but not flushed are gone.
    Lost { now: u64 },
}

impl SledEngine {
    /// Opens (creating if needed) the store in `dir`. A data dir of mapreg 0.1 loses its
    /// on-disk index entries, which nothing reads any more.
    /// A damaged store is [`Error::Corrupt`] (sled's own panics on truncated files included);
    /// a store another process holds is [`Error::Internal`] saying so.
    pub fn open(dir: &Path) -> Result<Self> {
        let trees = super::catch_corruption("opening the store", || open_trees(dir))?;
        let engine = SledEngine {
            dir: dir.to_path_buf(),
            trees: RwLock::new(Some(trees)),
            broken: AtomicBool::new(false),
            failure: Mutex::new(None),
            last_try: Mutex::new(None),
            before_reopen: Mutex::new(None),
            lost: AtomicBool::new(false),
            committed: Mutex::new(None),
            failpoints: dir.join(FAILPOINTS).exists(),
        };
        engine.drop_old_indexes()?;
        Ok(engine)
    }

    fn read_trees(&self) -> RwLockReadGuard<'_, Option<Trees>> {
        self.trees.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open trees; an I/O failure marks the engine broken. With no open trees
    /// (a reopen failed), tries to open them first.
    fn with<T>(&self, f: impl FnOnce(&Trees) -> Result<T, sled::Error>) -> Result<T> {
        if self.read_trees().is_none() {
            self.recover()?;
        }
        let guard = self.read_trees();
        let Some(t) = guard.as_ref() else {
            return Err(self.failure());
        };
        f(t).map_err(|e| self.fail(e))
    }

    /// Records a sled error: an I/O failure breaks the engine (sled keeps it).
    fn fail(&self, e: sled::Error) -> Error {
        let io = matches!(e, sled::Error::Io(_));
        let error = Error::from(e);
        if io {
            if !self.broken.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    error = %error,
                    dir = %self.dir.display(),
                    "the store failed an I/O; writes fail until it can be reopened"
                );
            }
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        }
        error
    }

    /// The error a broken engine answers with.
    fn failure(&self) -> Error {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| Error::internal("the store is not open"))
    }

    /// Whether the disk has room again: a probe file of [`PROBE_BYTES`] can be written.
    fn room(&self) -> bool {
        if self.full_injected() {
            return false;
        }
        let path = self.dir.join(PROBE);
        let ok = std::fs::write(&path, vec![0u8; PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&path);
        ok
    }

    /// If broken, and the disk has room again (tried at most every [`RETRY_EVERY`]), reopens
    /// the database: Err (the failure) while it cannot.
    fn recover(&self) -> Result<Recovery> {
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(Recovery::Ready);
        }
        {
            let mut last = self.last_try.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return Err(self.failure());
            }
            *last = Some(Instant::now());
        }
        if !self.room() {
            return Err(self.failure());
        }
        let mut guard = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if !self.broken.load(Ordering::SeqCst) {
            // Another caller reopened it meanwhile.
            return Ok(Recovery::Ready);
        }
        let mut before = self.before_reopen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = guard
            .as_ref()
            .and_then(|t| meta_u64(&t.meta, keys::META_REVISION).ok())
        {
            *before = Some(before.map_or(r, |b| b.max(r)));
        }
        // Every handle goes first: sled holds a lock on its files.
        *guard = None;
        let started = Instant::now();
        let trees = super::catch_corruption("reopening the store", || open_trees(&self.dir))
            .map_err(|e| {
                tracing::warn!(error = %e, "reopening the store failed; trying again later");
                e
            })?;
        let now = meta_u64(&trees.meta, keys::META_REVISION)?;
        // What sled wrote before it failed may still be only in the OS's cache: what the
        // reopened store holds is made durable before anything is answered from it.
        std::fs::File::open(self.dir.join("db"))
            .and_then(|f| f.sync_all())
            .map_err(|e| self.fail(sled::Error::Io(e)))?;
        *guard = Some(trees);
        // What this handle committed may be gone with what was not flushed.
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.broken.store(false, Ordering::SeqCst);
        let before = before.take();
        tracing::warn!(
            revision = now,
            seconds = started.elapsed().as_secs_f64(),
            "the store was reopened after an I/O failure; writes work again"
        );
        match before {
            Some(before) if before > now => {
                self.lost.store(true, Ordering::SeqCst);
                tracing::warn!(
                    before,
                    now,
                    "revisions committed but never made durable were lost by the reopen"
                );
                Ok(Recovery::Lost { now })
            }
            _ => Ok(Recovery::Ready),
        }
    }

    fn drop_old_indexes(&self) -> Result<()> {
        self.with(|t| {
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for prefix in [&b"ai\0"[..], b"di\0", b"k\0", b"dc\0", b"ra\0", b"rs\0"] {
                for kv in t.data.scan_prefix(prefix) {
                    let (k, _) = kv?;
                    batch.remove(k);
                    n += 1;
                }
            }
            if n > 0 {
                t.data.apply_batch(batch)?;
                t.db.flush()?;
                tracing::info!(
                    entries = n,
                    "removed the on-disk indexes of a mapreg 0.1 data dir"
                );
            }
            Ok(())
        })
    }

    fn full_injected(&self) -> bool {
        self.failpoints && self.dir.join(FAILPOINT_FULL).exists()
    }

    fn injected(&self) -> Result<(), sled::Error> {
        if self.full_injected() {
            return Err(storage_full_io());
        }
        Ok(())
    }
}

fn open_trees(dir: &Path) -> Result<Trees> {
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
    Ok(Trees {
        data: db.open_tree("data")?,
        log: db.open_tree("log")?,
        meta: db.open_tree("meta")?,
        db,
    })
}

impl Engine for SledEngine {
    fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String> {
        let found = self.with(|t| t.meta.get(keys::META_STORE_ID))?;
        if let Some(id) = found {
            return String::from_utf8(id.to_vec()).map_err(|_| Error::internal("corrupt store id"));
        }
        let id = fresh();
        let prev = self.with(|t| {
            let prev = t.meta.compare_and_swap(
                keys::META_STORE_ID,
                None as Option<&[u8]>,
                Some(id.as_bytes()),
            )?;
            t.db.flush()?;
            Ok(prev)
        })?;
        match prev {
            Ok(()) => Ok(id),
            // Someone set it first: theirs stands.
            Err(cas) => String::from_utf8(cas.current.map(|v| v.to_vec()).unwrap_or_default())
                .map_err(|_| Error::internal("corrupt store id")),
        }
    }

    fn revision(&self) -> Result<u64> {
        self.with(|t| Ok(meta_u64(&t.meta, keys::META_REVISION)))?
    }

    fn compact_revision(&self) -> Result<u64> {
        self.with(|t| Ok(meta_u64(&t.meta, keys::META_COMPACT_REVISION)))?
    }

    fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
        if let Recovery::Lost { now, .. } = self.recover()?
            && batch.base > now
        {
            return Err(CommitError::Failed(reopened(now)));
        }
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let known = committed.take() == Some(batch.base)
            && !self.broken.load(Ordering::SeqCst)
            && !self.lost.load(Ordering::SeqCst);
        let guard = self.read_trees();
        let Some(t) = guard.as_ref() else {
            return Err(CommitError::Failed(self.failure()));
        };
        if let Err(e) = self.injected() {
            return Err(CommitError::Failed(self.fail(e)));
        }
        // A sled transaction cannot scan: the keys under each cleared prefix are listed
        // first, on a store at the batch's base (checked before the listing, and again by the
        // transaction). Only this process writes the store (sled locks its files) and every
        // batch after `base` moves the revision, so the list is the store's at `base`.
        let mut cleared: Vec<sled::IVec> = Vec::new();
        if !batch.cleared.is_empty() {
            let current = match t.meta.get(keys::META_REVISION) {
                Ok(Some(b)) => codec::decode_u64(&b)?,
                Ok(None) => 0,
                Err(e) => return Err(CommitError::Failed(self.fail(e))),
            };
            if current != batch.base {
                return Err(
                    if current < batch.base && self.lost.load(Ordering::SeqCst) {
                        CommitError::Failed(reopened(current))
                    } else {
                        CommitError::Conflict { current }
                    },
                );
            }
            for prefix in &batch.cleared {
                for kv in t.data.scan_prefix(prefix) {
                    match kv {
                        Ok((k, _)) => cleared.push(k),
                        Err(e) => return Err(CommitError::Failed(self.fail(e))),
                    }
                }
            }
        }
        let r = (&t.data, &t.log, &t.meta).transaction(|(data, log, meta)| {
            let current = if known {
                batch.base
            } else {
                match meta.get(keys::META_REVISION)? {
                    Some(b) => codec::decode_u64(&b)
                        .map_err(|e| ConflictableTransactionError::Abort(CommitError::Failed(e)))?,
                    None => 0,
                }
            };
            if current != batch.base {
                return Err(ConflictableTransactionError::Abort(CommitError::Conflict {
                    current,
                }));
            }
            for k in &cleared {
                data.remove(k.as_ref())?;
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
            Ok(()) => {
                self.lost.store(false, Ordering::SeqCst);
                *committed = Some(batch.revision);
                Ok(())
            }
            // Below the base after a reopen lost unflushed revisions: say so, not "conflict".
            Err(TransactionError::Abort(CommitError::Conflict { current }))
                if current < batch.base && self.lost.load(Ordering::SeqCst) =>
            {
                Err(CommitError::Failed(reopened(current)))
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(CommitError::Failed(self.fail(e))),
        }
    }

    fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.with(|t| {
            for kv in t.log.range(keys::log(from)..=keys::log(to)) {
                if out.len() >= max {
                    break;
                }
                let (k, v) = kv?;
                out.push((k, v));
            }
            Ok(())
        })?;
        out.into_iter()
            .map(|(k, v)| Ok((codec::decode_u64(&k)?, v.to_vec())))
            .collect()
    }

    fn scan_records(&self) -> RecordIter {
        // The iterator holds its own handle to the tree: a reopen waits for it to be dropped
        // (it is only used while loading).
        match self.with(|t| Ok(t.data.clone())) {
            Ok(data) => Box::new(data.iter().map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(Error::from)
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn compact(&self, upto: u64, hash: &history::Hash) -> Result<usize> {
        let current = self.compact_revision()?;
        if upto <= current {
            return Ok(0);
        }
        self.with(|t| {
            self.injected()?;
            // The point first, durably: a reader never trusts an entry that is about to go.
            let mut point = sled::Batch::default();
            point.insert(keys::META_COMPACT_REVISION, &upto.to_be_bytes());
            point.insert(keys::META_COMPACT_HASH, &hash[..]);
            t.meta.apply_batch(point)?;
            t.db.flush()?;
            let mut batch = sled::Batch::default();
            let mut removed = 0;
            for kv in t.log.range(..=keys::log(upto)) {
                let (k, _) = kv?;
                batch.remove(k);
                removed += 1;
            }
            t.log.apply_batch(batch)?;
            Ok(removed)
        })
    }

    fn compact_hash(&self) -> Result<history::Hash> {
        match self.with(|t| t.meta.get(keys::META_COMPACT_HASH))? {
            Some(b) => <history::Hash>::try_from(&b[..]).map_err(|_| {
                Error::Corrupt("the compaction point's history hash is not 32 bytes".into())
            }),
            None => Ok(history::ZERO),
        }
    }

    fn flush(&self) -> Result<()> {
        self.recover()?;
        if self.lost.load(Ordering::SeqCst) {
            // The writer's unflushed revisions are gone: it must not publish them. Cleared by
            // the next commit that applies (the writer has reloaded from the store by then).
            return Err(reopened(self.revision()?));
        }
        self.with(|t| {
            self.injected()?;
            t.db.flush()?;
            Ok(())
        })
    }
}
