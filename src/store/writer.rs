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

use super::db::{Committed, Db, WriteOp, WriteResult};
use crate::error::{Error, Result};

/// The most writes committed under one flush.
pub const MAX_GROUP: usize = 256;

/// How many writes may wait for the writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4096;

/// Called after each durable group with its committed writes, in revision order.
pub type Publish = Box<dyn Fn(&[Committed]) + Send>;

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult>>,
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
        let mut outcomes = Vec::with_capacity(group.len());
        let mut committed = Vec::new();
        for job in &group {
            let r = db.apply(&job.op);
            if let Ok(c) = &r {
                committed.push(c.clone());
            }
            outcomes.push(r.map(|c| c.result));
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
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                // The group's writes may or may not survive a crash now; nobody is told they
                // succeeded. Readers may already see them, as with any failed fsync.
                tracing::error!(error = %e, "flush failed; failing the whole write group");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}
