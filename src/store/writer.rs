//! The single writer thread: every write RPC's transaction runs here, off the async workers,
//! one at a time, and answers only after a flush made it durable.
//!
//! Group commit: the thread takes every write that is waiting (up to [`MAX_GROUP`]), applies each
//! as its own transaction with its own revision, flushes once for the whole group, and only then
//! answers the group's callers and publishes their change sets in revision order. Under load the
//! flushes-per-write ratio drops well below 1; an idle server still flushes every write at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::db::{Committed, Db, TouchObserver, WriteOp, WriteResult};
use crate::error::{Error, Result};

/// The most writes committed under one flush.
pub const MAX_GROUP: usize = 256;

/// How many writes may wait for the writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4096;

/// Called after each durable group with its committed writes, in revision order.
pub type Publish = Box<dyn Fn(&[Committed]) + Send>;

enum Job {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteResult>>,
    },
    /// Register a touch observer; answered (after the group's flush) with the revision that
    /// the observer sees every write after.
    Observe {
        observer: std::sync::Weak<dyn TouchObserver>,
        reply: oneshot::Sender<Result<u64>>,
    },
}

impl Job {
    fn fail(self, e: Error) {
        match self {
            Job::Write { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::Observe { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Counters of the writer, for benchmarks and `mapreg check`-style reports.
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
    /// Starts the writer thread over `db`. The thread ends, after a final flush, once every
    /// `Writer` handle is dropped; join the returned handle to wait for it.
    pub fn spawn(db: Arc<Db>, publish: Publish) -> Result<(Writer, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("mapreg-writer".into())
            .spawn(move || run(db, rx, publish, thread_stats))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok((Writer { tx, stats }, handle))
    }

    /// Commits `op` and returns its result once it is durable.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteResult> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Write { op, reply })
            .await
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// Registers `observer` for every write after the returned revision, which is durable
    /// when this returns.
    pub async fn observe(&self, observer: std::sync::Weak<dyn TouchObserver>) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Observe { observer, reply })
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

enum Outcome {
    Written(WriteResult),
    Observing(u64),
}

fn run(db: Arc<Db>, mut rx: mpsc::Receiver<Job>, publish: Publish, stats: Arc<WriterStats>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut outcomes: Vec<Result<Outcome>> = Vec::with_capacity(group.len());
        let mut committed = Vec::new();
        for job in &group {
            match job {
                Job::Write { op, .. } => {
                    let r = db.apply(op);
                    if let Ok(c) = &r {
                        committed.push(c.clone());
                    }
                    outcomes.push(r.map(|c| Outcome::Written(c.result)));
                }
                Job::Observe { observer, .. } => {
                    // Between two writes of the group: the observer sees every later one, and
                    // the revision it starts after is the one committed right now.
                    db.add_observer(observer.clone());
                    outcomes.push(db.revision().map(Outcome::Observing));
                }
            }
        }
        let flushed = if committed.is_empty() {
            Ok(())
        } else {
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            db.flush()
        };
        match flushed {
            Ok(()) => {
                stats
                    .writes
                    .fetch_add(committed.len() as u64, Ordering::Relaxed);
                if !committed.is_empty() {
                    publish(&committed);
                }
                for (job, r) in group.drain(..).zip(outcomes) {
                    match (job, r) {
                        (Job::Write { reply, .. }, Ok(Outcome::Written(result))) => {
                            let _ = reply.send(Ok(result));
                        }
                        (Job::Observe { reply, .. }, Ok(Outcome::Observing(revision))) => {
                            let _ = reply.send(Ok(revision));
                        }
                        (job, Err(e)) => job.fail(e),
                        (job, Ok(_)) => job.fail(Error::internal("writer outcome mismatch")),
                    }
                }
            }
            Err(e) => {
                // The group's writes may or may not survive a crash now; nobody is told they
                // succeeded. Readers may already see them, as with any failed fsync.
                tracing::error!(error = %e, "flush failed; failing the whole write group");
                for job in group.drain(..) {
                    job.fail(e.clone());
                }
            }
        }
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}
