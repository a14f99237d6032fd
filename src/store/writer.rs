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
//! Failures: a batch the engine refused leaves the store as it was, so the working version
//! goes back to the last committed one and the group's writes fail. A batch committed but not
//! flushed may or may not survive a crash: its writes fail (like a timeout in etcd, their
//! outcome is unknown to the caller), but they stay in the working version, because the store
//! has them; they are published with the next group whose flush succeeds, so readers and
//! watchers never see a revision before it is durable, and never miss one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use prost::Message;
use prost_types::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::{Applied, Batch, CommitError, Registry, WriteOp, WriteResult, codec};
use crate::domain::apply::apply;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::pb::ChangeSet;

/// The most writes committed under one flush.
pub const MAX_GROUP: usize = 256;

/// How many writes may wait for the writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4096;

/// Called after each durable group with its accepted writes, in revision order, after the
/// registry's current version includes them.
pub type Publish = Box<dyn Fn(&[Applied]) + Send>;

struct Job {
    op: WriteOp,
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
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
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

/// The batch that persists `applied`, which were applied in order on a state at `base`.
pub fn batch(base: u64, applied: &[Applied]) -> Batch {
    let mut b = Batch {
        base,
        revision: applied.last().map_or(base, |a| a.revision),
        records: Vec::new(),
        log: Vec::with_capacity(applied.len()),
    };
    for a in applied {
        b.records.extend(codec::record_changes(&a.events));
        let cs = ChangeSet {
            events: a.events.clone(),
        };
        b.log.push((a.revision, cs.encode_to_vec()));
    }
    b
}

struct Loop {
    registry: Arc<Registry>,
    publish: Publish,
    stats: Arc<WriterStats>,
    /// Where the next write applies: the committed version plus nothing else.
    working: State,
    /// Committed to the engine but not yet known durable, in revision order.
    unpublished: Vec<Applied>,
}

fn run(
    registry: Arc<Registry>,
    mut rx: mpsc::Receiver<Job>,
    publish: Publish,
    stats: Arc<WriterStats>,
) {
    let working = (*registry.current()).clone();
    let mut l = Loop {
        registry,
        publish,
        stats,
        working,
        unpublished: Vec::new(),
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
            match apply(&mut self.working, &job.op, &limits, now) {
                Ok(a) => {
                    outcomes.push(Ok(a.result.clone()));
                    accepted.push(a);
                }
                Err(v) => outcomes.push(Err(v.into())),
            }
        }
        if accepted.is_empty() {
            for (job, r) in group.drain(..).zip(outcomes) {
                let _ = job.reply.send(r);
            }
            return;
        }
        let engine = self.registry.engine().clone();
        match engine.commit(&batch(base, &accepted)) {
            Ok(()) => {}
            Err(e) => {
                // Nothing of the batch is in the store: back to the committed version.
                self.working = committed;
                let e = match e {
                    CommitError::Failed(e) => e,
                    CommitError::Conflict { current } => Error::internal(format!(
                        "the store moved to revision {current} under the writer (at {base})"
                    )),
                };
                tracing::error!(error = %e, "commit failed; failing the whole write group");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        }
        self.unpublished.extend(accepted);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = engine.flush() {
            // Committed, maybe not durable: the callers are not told it worked.
            tracing::error!(error = %e, "flush failed; failing the whole write group");
            for job in group.drain(..) {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
        let durable = std::mem::take(&mut self.unpublished);
        self.stats
            .writes
            .fetch_add(durable.len() as u64, Ordering::Relaxed);
        self.registry.publish(Arc::new(self.working.clone()));
        (self.publish)(&durable);
        for (job, r) in group.drain(..).zip(outcomes) {
            let _ = job.reply.send(r);
        }
    }
}
