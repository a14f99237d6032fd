//! The single writer thread: every write is validated and applied in memory here, off the
//! async workers, and answered only after the group it belongs to is durable.
//!
//! Group commit: the thread takes every write that is waiting (up to [`MAX_GROUP`]) and
//! applies each to the working version of the state, in order, each seeing the ones before it
//! (a refused write leaves no trace and gets its error). The accepted ones become ONE engine
//! [`Batch`]: their records, one change-log entry per revision, the new revision counter. The
//! thread commits it, flushes once, publishes the new version to readers
//! ([`Registry::publish`]) and to the change feed, and only then answers. No storage read
//! happens on this path.
//!
//! Dry runs ([`Writer::validate`], a request's `validate_only`) go through the same queue and
//! are applied, in their place in the group, to a copy of the working version: exactly the
//! version a real write in that place would be checked against, so they answer exactly what it
//! would (revision fields 0). The copy is dropped: a dry run adds nothing to the batch, takes
//! no revision, publishes nothing, and later writes of the group do not see it.
//!
//! Failures: a batch the engine refused leaves the store as it was, so the working version
//! goes back to the last committed one and the group's accepted writes fail (refused ones keep
//! their own error). A batch committed but not flushed may or may not survive a crash: its
//! writes fail (like a timeout in etcd, their outcome is unknown to the caller), but they stay
//! in the working version, because the store has them; the next group, even one whose writes
//! are all refused, flushes again and publishes them. So readers and watchers never see a
//! revision before it is durable, and never miss one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use prost::Message;
use prost_types::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::history::{self, Hash};
use super::{Applied, Batch, CommitError, Registry, WriteOp, WriteResult, codec};
use crate::domain::apply::apply;
use crate::domain::state::State;
use crate::error::{Error, Result};

/// The most writes committed under one flush.
pub const MAX_GROUP: usize = 256;

/// How many writes may wait for the writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4096;

/// Called after each durable group with its accepted writes, in revision order, after the
/// registry's current version includes them.
pub type Publish = Box<dyn Fn(&[Applied]) + Send>;

struct Job {
    op: WriteOp,
    /// A dry run: checked and answered, never committed.
    dry_run: bool,
    /// Who submitted it (the submitting task's [`crate::audit::current`]).
    audit: Arc<crate::audit::Audit>,
    reply: oneshot::Sender<Result<WriteResult>>,
}

/// Counters of the writer, reported when the server stops.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Writes committed and made durable.
    pub writes: AtomicU64,
    /// Flushes done.
    pub flushes: AtomicU64,
}

/// A cloneable handle that submits writes to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread over `registry`. The thread ends, after a final flush, once
    /// every `Writer` handle is dropped; join the returned handle to wait for it.
    pub fn spawn(registry: Arc<Registry>, publish: Publish) -> Result<(Writer, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("mapreg-writer".into())
            .spawn(move || run(registry, rx, publish, thread_stats))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok((Writer { tx, stats }, handle))
    }

    /// Commits `op` and returns its result once it is durable.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteResult> {
        self.send(op, false).await
    }

    /// Checks `op` exactly as [`submit`](Writer::submit) would, against the version a write
    /// queued now would see, and answers what it would return with every revision field 0
    /// ([`WriteResult::without_revisions`]); or the error it would fail with. Nothing is
    /// written, no revision is taken, no event is sent.
    pub async fn validate(&self, op: WriteOp) -> Result<WriteResult> {
        self.send(op, true).await
    }

    async fn send(&self, op: WriteOp, dry_run: bool) -> Result<WriteResult> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                op,
                dry_run,
                audit: crate::audit::current(),
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

fn shutting_down() -> Error {
    Error::Unavailable {
        reason: "SHUTTING_DOWN",
        message: "the server is shutting down; retry on another instance or later".into(),
    }
}

/// The batch that persists `applied`, which were applied in order on a state at `base` whose
/// history hash is `head`; also returns each revision's history hash, in order.
pub fn batch(base: u64, head: &Hash, applied: &[Applied]) -> (Batch, Vec<(u64, Hash)>) {
    let mut b = Batch {
        base,
        revision: applied.last().map_or(base, |a| a.revision),
        records: Vec::new(),
        log: Vec::with_capacity(applied.len()),
    };
    let mut hashes = Vec::with_capacity(applied.len());
    let mut prev = *head;
    for a in applied {
        b.records.extend(codec::record_changes(&a.events));
        let cs = a.audit.change_set(a.events.clone());
        let encoded = cs.encode_to_vec();
        prev = history::next(&prev, &encoded);
        hashes.push((a.revision, prev));
        b.log.push((a.revision, history::entry(encoded, &prev)));
    }
    (b, hashes)
}

struct Loop {
    registry: Arc<Registry>,
    publish: Publish,
    stats: Arc<WriterStats>,
    /// Where the next write applies: the committed version plus nothing else.
    working: State,
    /// Committed to the engine but not yet known durable, in revision order.
    unpublished: Vec<Applied>,
    /// The history hash of the working version's revision.
    head: Hash,
}

fn run(
    registry: Arc<Registry>,
    mut rx: mpsc::Receiver<Job>,
    publish: Publish,
    stats: Arc<WriterStats>,
) {
    let working = (*registry.current()).clone();
    let (_, head) = registry.head_hash();
    let mut l = Loop {
        registry,
        publish,
        stats,
        working,
        unpublished: Vec::new(),
        head,
    };
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        l.group(&mut group);
    }
    if let Err(e) = l.registry.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

impl Loop {
    fn group(&mut self, group: &mut Vec<Job>) {
        let base = self.working.revision();
        let committed = self.working.clone();
        let now = Timestamp::from(SystemTime::now());
        let limits = self.registry.limits().clone();
        let mut outcomes: Vec<Result<WriteResult>> = Vec::with_capacity(group.len());
        let mut accepted: Vec<Applied> = Vec::new();
        for job in group.iter() {
            if job.dry_run {
                // The version a real write here would see; the copy is O(1) and dropped.
                let mut scratch = self.working.clone();
                outcomes.push(
                    apply(&mut scratch, &job.op, &limits, now)
                        .map(|a| a.result.without_revisions())
                        .map_err(Error::from),
                );
                continue;
            }
            match apply(&mut self.working, &job.op, &limits, now) {
                Ok(mut a) => {
                    a.audit = job.audit.committed_at(now);
                    outcomes.push(Ok(a.result.clone()));
                    accepted.push(a);
                }
                Err(v) => outcomes.push(Err(v.into())),
            }
        }
        let failed = self
            .commit(base, committed, accepted)
            .and_then(|()| self.flush_and_publish());
        if let Err(e) = failed {
            // The accepted writes of the group are not known durable: their callers are not
            // told they worked. Refused ones keep their own error.
            // Dry runs committed nothing: their answer stands.
            for (job, r) in group.iter().zip(outcomes.iter_mut()) {
                if r.is_ok() && !job.dry_run {
                    *r = Err(e.clone());
                }
            }
        }
        for (job, r) in group.drain(..).zip(outcomes) {
            let _ = job.reply.send(r);
        }
    }

    /// Commits the accepted writes (applied on `committed`, at `base`) as one batch.
    fn commit(&mut self, base: u64, committed: State, accepted: Vec<Applied>) -> Result<()> {
        if accepted.is_empty() {
            return Ok(());
        }
        let before = self.head;
        let (b, hashes) = batch(base, &before, &accepted);
        let engine = self.registry.engine().clone();
        let committed_hashes = |l: &mut Loop| {
            if let Some((_, h)) = hashes.last() {
                l.head = *h;
            }
            // Known before the flush; asked for only up to the durable revision.
            l.registry.record_hashes(&hashes);
        };
        let e = match engine.commit(&b) {
            Ok(()) => {
                committed_hashes(self);
                self.unpublished.extend(accepted);
                return Ok(());
            }
            Err(e) => e,
        };
        let e = match e {
            CommitError::Failed(e) => e,
            CommitError::Conflict { current } => Error::internal(format!(
                "the store moved to revision {current} under the writer (at {base})"
            )),
        };
        tracing::error!(error = %e, "commit failed; failing the group's writes");
        match engine.revision() {
            // Applied after all (the error came late): committed, not known durable.
            Ok(r) if r == b.revision => {
                committed_hashes(self);
                self.unpublished.extend(accepted)
            }
            // Nothing applied: back to the committed version.
            Ok(r) if r == base => self.working = committed,
            // Somebody else moved the store: start again from what it holds.
            _ => self.resync(),
        }
        Err(e)
    }

    /// Flushes what is committed but unpublished (this group's writes, and those of earlier
    /// groups whose flush failed), then publishes it: the registry's version first, then the
    /// change feed.
    fn flush_and_publish(&mut self) -> Result<()> {
        if self.unpublished.is_empty() {
            return Ok(());
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.registry.engine().flush() {
            tracing::error!(error = %e, "flush failed; failing the group's writes");
            return Err(e);
        }
        let durable = std::mem::take(&mut self.unpublished);
        self.stats
            .writes
            .fetch_add(durable.len() as u64, Ordering::Relaxed);
        self.registry.publish(Arc::new(self.working.clone()));
        (self.publish)(&durable);
        Ok(())
    }

    /// Reloads the working version from the engine, after the store changed in a way the
    /// writer did not follow. What was unpublished is dropped: watchers read those revisions
    /// from the log once a later one is published.
    fn resync(&mut self) {
        match super::registry::load(self.registry.engine().as_ref()) {
            Ok(state) => {
                self.working = state;
                self.unpublished.clear();
                if let Err(e) = self.registry.reload_history() {
                    tracing::error!(error = %e, "cannot reload the history hashes from the store");
                }
                self.head = self.registry.head_hash().1;
            }
            Err(e) => tracing::error!(error = %e, "cannot reload the state from the store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::memory::MemoryEngine;
    use crate::store::{Engine, RecordIter};

    /// A memory engine whose next flush or commit can be made to fail.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryEngine,
        fail_flush: AtomicBool,
        fail_commit: AtomicBool,
    }

    impl Engine for Flaky {
        fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String> {
            self.inner.store_id(fresh)
        }
        fn revision(&self) -> Result<u64> {
            self.inner.revision()
        }
        fn compact_revision(&self) -> Result<u64> {
            self.inner.compact_revision()
        }
        fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
            if self.fail_commit.swap(false, Ordering::SeqCst) {
                return Err(CommitError::Failed(Error::internal("disk on fire")));
            }
            self.inner.commit(batch)
        }
        fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
            self.inner.read_log(from, to, max)
        }
        fn scan_records(&self) -> RecordIter {
            self.inner.scan_records()
        }
        fn compact(&self, upto: u64, hash: &crate::store::history::Hash) -> Result<usize> {
            self.inner.compact(upto, hash)
        }
        fn compact_hash(&self) -> Result<crate::store::history::Hash> {
            self.inner.compact_hash()
        }
        fn flush(&self) -> Result<()> {
            if self.fail_flush.swap(false, Ordering::SeqCst) {
                return Err(Error::internal("fsync failed"));
            }
            Ok(())
        }
    }

    fn create_domain(name: &str) -> WriteOp {
        WriteOp::CreateDomainName {
            account: "000000000000".into(),
            domain_name: name.into(),
            configuration: Default::default(),
            tags: Default::default(),
        }
    }

    #[tokio::test]
    async fn failed_flushes_and_commits_publish_nothing_early_and_lose_nothing() {
        let engine = Arc::new(Flaky::default());
        let registry = Arc::new(Registry::open(engine.clone(), Default::default()).unwrap());
        let published = Arc::new(Mutex::new(Vec::new()));
        let sink = published.clone();
        let (writer, thread) = Writer::spawn(
            registry.clone(),
            Box::new(move |applied: &[Applied]| {
                sink.lock()
                    .unwrap()
                    .extend(applied.iter().map(|a| a.revision))
            }),
        )
        .unwrap();

        // Committed, flush failed: the caller is not told it worked, nothing is published.
        engine.fail_flush.store(true, Ordering::SeqCst);
        let e = writer.submit(create_domain("a.com")).await.unwrap_err();
        assert_eq!(e.reason(), "INTERNAL");
        assert!(registry.current().domain("a.com").is_none());
        assert!(published.lock().unwrap().is_empty());
        // A retry is refused by its own rule (the store has it), and that group's flush
        // publishes the earlier write.
        let e = writer.submit(create_domain("a.com")).await.unwrap_err();
        assert_eq!(e.reason(), "DOMAIN_NAME_EXISTS");
        assert!(registry.current().domain("a.com").is_some());
        assert_eq!(*published.lock().unwrap(), vec![1]);

        // A failed commit applies nothing and takes no revision.
        engine.fail_commit.store(true, Ordering::SeqCst);
        assert!(writer.submit(create_domain("b.com")).await.is_err());
        assert!(registry.current().domain("b.com").is_none());
        writer.submit(create_domain("c.com")).await.unwrap();
        let current = registry.current();
        assert_eq!(current.revision(), 2);
        assert!(current.domain("b.com").is_none());
        assert_eq!(*published.lock().unwrap(), vec![1, 2]);
        drop(writer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn dry_runs_answer_like_the_write_and_leave_no_trace() {
        let engine = Arc::new(MemoryEngine::default());
        let registry = Arc::new(Registry::open(engine.clone(), Default::default()).unwrap());
        let published = Arc::new(Mutex::new(Vec::new()));
        let sink = published.clone();
        let (writer, thread) = Writer::spawn(
            registry.clone(),
            Box::new(move |applied: &[Applied]| {
                sink.lock()
                    .unwrap()
                    .extend(applied.iter().map(|a| a.revision))
            }),
        )
        .unwrap();
        writer.submit(create_domain("a.com")).await.unwrap();
        let dry = writer.validate(create_domain("b.com")).await.unwrap();
        match dry {
            WriteResult::DomainName(d) => {
                assert_eq!(d.domain_name, "b.com");
                assert_eq!((d.create_revision, d.mod_revision), (0, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(registry.current().domain("b.com").is_none());
        assert_eq!(engine.revision().unwrap(), 1);
        // The error of a dry run is the real write's.
        let real = writer.submit(create_domain("a.com")).await.unwrap_err();
        let dry = writer.validate(create_domain("a.com")).await.unwrap_err();
        assert_eq!(real, dry);
        // A real write after a dry run takes the next revision; nothing else was published.
        writer.submit(create_domain("b.com")).await.unwrap();
        assert_eq!(registry.current().revision(), 2);
        assert_eq!(*published.lock().unwrap(), vec![1, 2]);
        drop(writer);
        thread.join().unwrap();
    }
}
