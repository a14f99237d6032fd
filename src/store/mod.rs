//! Storage: the [`Engine`] trait every storage engine implements, its adapters ([`sled`], the
//! embedded default, [`etcd`], shared by several nodes, and [`memory`], for tests), the
//! [`Registry`] that loads the state from an engine and holds the current durable version, and
//! the single [`writer`] that commits one batch per group.
//!
//! An engine is deliberately small (the shape of garage's `db` crate): it stores opaque record
//! values by key, one change-log entry per revision and the revision counter, and commits a
//! [`Batch`] of all three atomically, only if it is still at the revision the batch was built
//! on. It never decides anything: every rule runs over the in-memory
//! [`State`](crate::domain::state::State) before the batch is built. So an engine needs no
//! transactions with reads, no scans on the write path, and no indexes: those are rebuilt in
//! memory when the registry opens.

pub mod cascade;
pub mod check;
pub mod codec;
#[cfg(test)]
mod conformance;
pub mod etcd;
pub mod highwater;
pub mod history;
pub mod keys;
pub mod memory;
pub mod registry;
pub mod sled;
pub mod snapshot;
pub mod writer;

use crate::error::{Error, Result};

/// How many [`catch_corruption`] calls are running: while any is, panics raised inside sled's
/// own sources are not reported by the panic hook (they become [`Error::Corrupt`]).
static CATCHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Installs, once, a panic hook that stays quiet about panics inside sled's sources while a
/// [`catch_corruption`] runs and reports every other panic as the previous hook did. The hook
/// is process-wide and never swapped back and forth, so concurrent callers cannot leave the
/// process with a silenced hook.
fn quiet_sled_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_sled = info
                .location()
                .is_some_and(|l| l.file().contains("/sled-") || l.file().contains("\\sled-"));
            if in_sled && CATCHING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                return;
            }
            previous(info)
        }));
    });
}

/// Runs `f`, turning a panic inside it (sled panics on some truncated or garbled files) into
/// [`Error::Corrupt`] naming `what`; sled's own panic report is not printed.
pub fn catch_corruption<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_sled_panics();
    CATCHING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    match r {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(Error::Corrupt(format!(
                "{what} failed inside the storage engine ({why}): the files are truncated or \
                 damaged"
            )))
        }
    }
}

pub use crate::domain::apply::{Applied, Limits, WriteOp, WriteResult};
pub use crate::domain::state::{Listed, Page, Scope};
pub use registry::Registry;

/// One group of writes, committed all or nothing.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The revision the store must be at for the batch to apply (what it was validated on).
    pub base: u64,
    /// The revision the store is at after the batch (the last of `log`).
    pub revision: u64,
    /// Record key prefixes under which every record is removed, before `records` apply: a
    /// delete that cascades to all of a record's children (a domain's mappings, an API's
    /// stages; see [`keys::mappings_of`]) as ONE operation, so that it fits in one etcd
    /// transaction however many children there are. The writer clears a prefix only when the
    /// state at `base` holds exactly the children the write deletes, and no entry of
    /// `records` is under it (etcd refuses a transaction that writes a key inside a range it
    /// deletes): an engine may rely on both.
    pub cleared: Vec<Vec<u8>>,
    /// Record keys set (Some) or removed (None), in order; a later entry for a key wins.
    pub records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Change-log entries: revision, encoded `ChangeSet`; `base + 1 ..= revision`, in order.
    pub log: Vec<(u64, Vec<u8>)>,
}

/// Why [`Engine::commit`] applied nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store is not at the batch's base revision (another writer got there first).
    #[error("the store is at revision {current}, not at the batch's base revision")]
    Conflict {
        /// Where the store is.
        current: u64,
    },
    /// The engine failed; nothing of the batch was applied.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// How large one [`Batch`] may be for an engine: etcd refuses transactions with more than
/// `--max-txn-ops` operations (128 by default) or requests over `--max-request-bytes`
/// (1.5 MiB by default). The writer splits a group into several batches to stay under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Operations per batch: one per record set or removed, one per cleared prefix, one per
    /// log entry, one for the revision counter.
    pub max_ops: usize,
    /// Bytes per batch: the keys and values of its records and log entries.
    pub max_bytes: usize,
}

impl BatchLimits {
    /// No limit (sled, memory).
    pub const UNLIMITED: BatchLimits = BatchLimits {
        max_ops: usize::MAX,
        max_bytes: usize::MAX,
    };
}

/// Records from a scan: (key, value).
pub type RecordIter = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send>;

/// A storage engine. An implementation guarantees:
///
/// - [`commit`](Engine::commit) is atomic (all of the batch or nothing, also across a crash once
///   flushed) and conditional (nothing if the store is not at `batch.base`);
/// - [`flush`](Engine::flush) returns once every committed batch is durable;
/// - reads ([`read_log`](Engine::read_log), [`scan_records`](Engine::scan_records)) never see
///   part of a batch;
/// - the store id, once set, never changes.
pub trait Engine: Send + Sync + 'static {
    /// The store's id, setting it to `fresh()` first if the store has none (a new store).
    fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String>;
    /// The last committed revision (0: none).
    fn revision(&self) -> Result<u64>;
    /// Every log entry at or below this revision is gone (0: nothing compacted).
    fn compact_revision(&self) -> Result<u64>;
    /// Applies `batch` if the store is at `batch.base`; see [`CommitError`].
    fn commit(&self, batch: &Batch) -> Result<(), CommitError>;
    /// Log entries of revisions `from..=to`, at most `max`, in order. Compacted entries are
    /// absent: compare with [`compact_revision`](Engine::compact_revision).
    fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Every record, in key order.
    fn scan_records(&self) -> RecordIter;
    /// The store's revision and every record at exactly that revision (one consistent
    /// snapshot, even while other nodes commit). The default reads the revision, then scans:
    /// right for an engine only this process writes to, since the registry loads before the
    /// writer starts and the writer reloads only from its own thread.
    fn scan_snapshot(&self) -> Result<(u64, RecordIter)> {
        Ok((self.revision()?, self.scan_records()))
    }
    /// Drops the log entries up to and including `upto` (raising the compaction point first,
    /// durably, with `hash`, the history hash at `upto`); returns how many went.
    fn compact(&self, upto: u64, hash: &history::Hash) -> Result<usize>;
    /// The history hash at the compaction point ([`history::ZERO`] at 0).
    fn compact_hash(&self) -> Result<history::Hash>;
    /// Makes every committed batch durable.
    fn flush(&self) -> Result<()>;
    /// How large one batch may be ([`BatchLimits::UNLIMITED`] unless the engine says so).
    fn batch_limits(&self) -> BatchLimits {
        BatchLimits::UNLIMITED
    }
    /// For an engine several nodes share (etcd): the newest revision committed to the store by
    /// anyone, as far as this engine has seen, updated as it moves (an etcd watch). The
    /// registry follows it: it reads the log up to that revision and applies it. None (the
    /// default): only this process writes to the store.
    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// For an engine several nodes share: takes part in choosing the one node that commits
    /// every node's writes (the others forward theirs to it; see [`writer`]). `me` is this
    /// node's advertised URL (None: it never becomes the writer, but still forwards). The
    /// receiver says who the writer is as it changes (None while nobody is, or while the
    /// engine cannot tell). Safety never depends on it: every commit stays conditional.
    /// None (the default): one process, nothing to elect.
    fn elect(&self, me: Option<String>) -> Option<tokio::sync::watch::Receiver<Option<Elected>>> {
        let _ = me;
        None
    }
}

/// The node elected to commit every node's writes, as this node sees it ([`Engine::elect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    /// The writer's advertised URL, where the other nodes forward their writes.
    pub url: String,
    /// Whether the writer is this node.
    pub me: bool,
    /// What every node of the store shares and a forwarded write carries: proof that it comes
    /// from a node of this store.
    pub secret: std::sync::Arc<str>,
}
