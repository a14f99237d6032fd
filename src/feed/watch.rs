//! One watcher: snapshot (optional), then the log from its start revision, then the live ring,
//! falling back to the log whenever the ring overtakes it.
//!
//! Invariant: `next` is the lowest revision not yet dealt with. A revision is dealt with once
//! its visible events were handed to the client's queue (or it had none for this watcher).
//! Revisions are dealt with one at a time, in order, each exactly once, from exactly one
//! source (log or ring): that is what makes the stream ordered, unique, reliable and atomic.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tonic::Status;

use super::snapshot::Cursor;
use super::{Filter, Hub};
use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::pb::{Progress, Snapshot, SnapshotComplete, WatchResponse, watch_response::Kind};
use crate::store::history::Hash;

/// Log entries read per blocking call while catching up.
const LOG_BATCH: usize = 256;

/// Responses queued per watcher before the watcher waits for its client.
pub const CLIENT_QUEUE: usize = 64;

/// One item of a watcher's queue. Boxed: the queue allocates slots in blocks of 32, and an
/// unboxed `Result<_, Status>` slot is ~180 bytes, which made the biggest part of an idle
/// watcher's memory.
pub type Queued = Box<QueuedItem>;

/// A response waiting for the client, holding its share of the watcher's byte budget until
/// the stream hands it to the transport.
pub struct QueuedItem {
    item: Result<WatchResponse, Status>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl QueuedItem {
    /// An item that holds no budget (the final error of a stream).
    pub fn unbudgeted(item: Result<WatchResponse, Status>) -> Queued {
        Box::new(QueuedItem {
            item,
            _budget: None,
        })
    }

    /// The response, releasing its budget.
    pub fn into_item(self) -> Result<WatchResponse, Status> {
        self.item
    }
}

/// What a queued response costs in memory, as a multiple of its encoded size: a decoded
/// `WatchResponse` (records as structs of `String`s, each its own allocation) takes about 4.6
/// times its wire size (`mapreg-bench stalled`: 4.7 MiB per stalled watcher when the budget
/// counted wire bytes). The budget counts this estimate, so a watcher that never reads holds
/// about `watch_buffer_bytes` of memory, not several times it.
const IN_MEMORY_FACTOR: usize = 5;

/// Default of `watch_buffer_bytes`: what one watcher may hold queued for its client.
pub const DEFAULT_BUFFER_BYTES: usize = 1024 * 1024;

/// What a watcher asked for, validated.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// 0: snapshot first; N: every revision from N.
    pub start_revision: u64,
    /// What it sees.
    pub filter: Filter,
    /// Quiet time after which a progress message is sent.
    pub progress_interval: Duration,
    /// With `start_revision` S > 0: the history hash the client holds for S - 1 (SPEC.md 8.3);
    /// None: not checked.
    pub resume_history_hash: Option<Hash>,
    /// Encoded bytes of responses this watcher may hold queued for its client (SPEC.md 8.7):
    /// past it, it waits for the client (a live one falls behind the ring and later catches
    /// up from the log). A single larger response is still sent, alone.
    pub buffer_bytes: usize,
}

/// Why a watcher stopped without an error for its client.
enum Stop {
    /// The client went away.
    Gone,
    /// The stream must end with this error.
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}

/// How long a resume on a node of a shared store waits for the node to reach the revision
/// the client resumes after.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error that ends streams at shutdown.
pub fn shutting_down() -> Error {
    Error::Unavailable {
        reason: "SHUTTING_DOWN",
        message: "the server is shutting down; reconnect and resume from your last revision".into(),
    }
}

/// The error for a resume whose history is not this store's.
pub fn store_changed(at: u64, why: &str) -> Error {
    Error::OutOfRange {
        reason: "STORE_CHANGED",
        message: format!(
            "this store's history differs from the one you followed: {why} (at revision {at}; a \
             restored copy or a rolled-back store); watch again with start_revision 0 for a \
             fresh snapshot"
        ),
        metadata: vec![("revision".into(), at.to_string())],
    }
}

/// The error for a start below the retained log.
pub fn compacted(start: u64, compact_revision: u64) -> Error {
    Error::OutOfRange {
        reason: "REVISION_COMPACTED",
        message: format!(
            "revision {start} is compacted (the log starts after revision {compact_revision}); \
             watch again with start_revision 0 for a fresh snapshot"
        ),
        metadata: vec![("compact_revision".into(), compact_revision.to_string())],
    }
}

struct Watcher {
    hub: Arc<Hub>,
    spec: WatchSpec,
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    closed: tokio::sync::watch::Receiver<bool>,
    store_id: String,
    next: u64,
    /// The snapshot's revision, if one was sent: progress never announces less.
    floor: u64,
    deadline: Instant,
}

/// Runs a watcher until its client goes away or the stream must end; the stream's last item
/// is the error, if any. Spawn it as a task.
pub async fn run(hub: Arc<Hub>, spec: WatchSpec, tx: mpsc::Sender<Queued>) {
    let store_id = hub.registry().store_id().to_string();
    let closed = hub.closed();
    let deadline = Instant::now() + spec.progress_interval;
    let budget = Arc::new(Semaphore::new(spec.buffer_bytes.max(1)));
    let mut w = Watcher {
        hub,
        spec,
        tx,
        budget,
        closed,
        store_id,
        next: 0,
        floor: 0,
        deadline,
    };
    match w.watch().await {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::Fail(e)) => {
            tracing::debug!(error = %e, "watch ended");
            let _ =
                w.tx.send(QueuedItem::unbudgeted(Err(Status::from(e))))
                    .await;
        }
    }
}

impl Watcher {
    async fn watch(&mut self) -> std::result::Result<(), Stop> {
        // Subscribe before anything is read, so no revision falls between log and ring.
        let mut live = self.hub.subscribe();
        if let (Some(held), Some(before)) = (
            self.spec.resume_history_hash,
            self.spec.start_revision.checked_sub(1),
        ) {
            self.check_resume(before, held).await?;
        }
        if self.spec.start_revision == 0 {
            let r0 = self.snapshot().await?;
            self.next = r0 + 1;
        } else {
            self.next = self.spec.start_revision;
        }
        loop {
            self.catch_up().await?;
            self.follow(&mut live).await?;
        }
    }

    /// Refuses a resume after `before` when the client's hash there is not this store's.
    async fn check_resume(&self, before: u64, held: Hash) -> std::result::Result<(), Stop> {
        let mut durable = self.hub.durable();
        if before > durable && self.hub.registry().engine().follow().is_some() {
            // Several nodes: this one may only be behind the node the client came from (it
            // follows the shared store a few milliseconds late). Wait for it before deciding
            // that the client followed another history.
            let mut updates = self.hub.durable_updates();
            let _ = tokio::time::timeout(CATCH_UP_WAIT, updates.wait_for(|d| *d >= before)).await;
            durable = self.hub.durable();
        }
        if before > durable {
            return Err(store_changed(
                before,
                &format!("this store is only at revision {durable}"),
            )
            .into());
        }
        let registry = self.hub.registry().clone();
        let (ours, compact) = tokio::task::spawn_blocking(move || -> Result<_> {
            Ok((registry.history_hash(before)?, registry.compact_revision()?))
        })
        .await
        .map_err(|e| Error::internal(format!("history reader failed: {e}")))??;
        match ours {
            None => Err(compacted(before + 1, compact).into()),
            Some(h) if h != held => Err(store_changed(
                before,
                "the history hash you hold does not match this store's",
            )
            .into()),
            Some(_) => Ok(()),
        }
    }

    /// The history hash of `revision`, for a progress or snapshot_complete message.
    fn hash_of(&self, revision: u64) -> Option<Hash> {
        self.hub.registry().history_hash(revision).ok().flatten()
    }

    /// Sends one response, waiting for room in the client's queue, unless the client left or
    /// the server shuts down.
    async fn emit(
        &mut self,
        revision: u64,
        hash: Option<Hash>,
        kind: Kind,
    ) -> std::result::Result<(), Stop> {
        if self.hub.is_closed() {
            return Err(Stop::Fail(shutting_down()));
        }
        let resp = WatchResponse {
            store_id: self.store_id.clone(),
            revision,
            kind: Some(kind),
            history_hash: hash.map(|h| h.to_vec()).unwrap_or_default(),
        };
        let share = resp
            .encoded_len()
            .saturating_mul(IN_MEMORY_FACTOR)
            .clamp(1, self.spec.buffer_bytes.max(1))
            .try_into()
            .unwrap_or(u32::MAX);
        let budget = match self.budget.clone().try_acquire_many_owned(share) {
            Ok(p) => p,
            Err(_) => tokio::select! {
                biased;
                _ = self.closed.wait_for(|c| *c) => return Err(Stop::Fail(shutting_down())),
                p = self.budget.clone().acquire_many_owned(share) => {
                    p.map_err(|_| Stop::Gone)?
                }
            },
        };
        let item = Box::new(QueuedItem {
            item: Ok(resp),
            _budget: Some(budget),
        });
        // The common case, a queue with room, costs no future and no wake-up.
        let resp = match self.tx.try_send(item) {
            Ok(()) => {
                self.deadline = Instant::now() + self.spec.progress_interval;
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::Gone),
            Err(mpsc::error::TrySendError::Full(resp)) => resp,
        };
        tokio::select! {
            biased;
            _ = self.closed.wait_for(|c| *c) => Err(Stop::Fail(shutting_down())),
            sent = self.tx.send(resp) => {
                sent.map_err(|_| Stop::Gone)?;
                self.deadline = Instant::now() + self.spec.progress_interval;
                Ok(())
            }
        }
    }

    /// Deals with revision `rev`, which must be `self.next`.
    async fn deliver(
        &mut self,
        rev: u64,
        hash: Option<Hash>,
        events: &[crate::pb::Event],
        audit: &Audit,
    ) -> std::result::Result<(), Stop> {
        let visible = self.spec.filter.events(events);
        if !visible.is_empty() {
            self.emit(rev, hash, Kind::ChangeSet(audit.change_set(visible)))
                .await?;
        }
        self.next = rev + 1;
        Ok(())
    }

    /// The revision a progress message may announce: everything up to it was dealt with, and
    /// it does not run ahead of the store.
    fn progress_revision(&self) -> u64 {
        (self.next - 1).min(self.hub.durable().max(self.floor))
    }

    async fn progress_if_due(&mut self) -> std::result::Result<(), Stop> {
        if Instant::now() >= self.deadline {
            let rev = self.progress_revision();
            let hash = self.hash_of(rev);
            self.emit(rev, hash, Kind::Progress(Progress {})).await?;
        }
        Ok(())
    }

    /// Replays the persisted log from `next` up to the durable revision.
    async fn catch_up(&mut self) -> std::result::Result<(), Stop> {
        if self.next <= self.hub.durable() {
            self.hub.count_catchup();
        }
        loop {
            let durable = self.hub.durable();
            if self.next > durable {
                return Ok(());
            }
            let registry = self.hub.registry().clone();
            let from = self.next;
            let batch = tokio::task::spawn_blocking(move || -> Result<_> {
                let entries = registry.read_log(from, durable, LOG_BATCH)?;
                let compact = registry.compact_revision()?;
                Ok((entries, compact))
            })
            .await
            .map_err(|e| Error::internal(format!("log reader failed: {e}")))??;
            let (entries, compact_revision) = batch;
            if from <= compact_revision {
                return Err(compacted(from, compact_revision).into());
            }
            if entries.is_empty() {
                return Err(Error::internal(format!(
                    "the change log has no entry for durable revision {from}"
                ))
                .into());
            }
            for (rev, cs, hash) in entries {
                if rev != self.next {
                    return Err(Error::internal(format!(
                        "the change log jumps from {} to {rev}",
                        self.next
                    ))
                    .into());
                }
                let (events, audit) = Audit::split(cs);
                self.deliver(rev, hash, &events, &audit).await?;
            }
            self.progress_if_due().await?;
        }
    }

    /// Follows the live ring until it overtakes this watcher.
    async fn follow(
        &mut self,
        live: &mut tokio::sync::broadcast::Receiver<Arc<super::Revision>>,
    ) -> std::result::Result<(), Stop> {
        enum Next {
            Live(std::result::Result<Arc<super::Revision>, RecvError>),
            Progress,
        }
        // Made once per call, not once per revision: with thousands of watchers the
        // per-revision cost of each watcher is what fan-out latency is made of.
        let mut closed = self.closed.clone();
        let shutdown = async move {
            let _ = closed.wait_for(|c| *c).await;
        };
        tokio::pin!(shutdown);
        let tx = self.tx.clone();
        let gone = async move { tx.closed().await };
        tokio::pin!(gone);
        let quiet = tokio::time::sleep_until(self.deadline);
        tokio::pin!(quiet);
        loop {
            if quiet.deadline() != self.deadline {
                quiet.as_mut().reset(self.deadline);
            }
            let next = tokio::select! {
                biased;
                _ = &mut shutdown => return Err(Stop::Fail(shutting_down())),
                _ = &mut gone => return Err(Stop::Gone),
                msg = live.recv() => Next::Live(msg),
                _ = &mut quiet => Next::Progress,
            };
            match next {
                Next::Live(Ok(r)) if r.revision < self.next => {}
                Next::Live(Ok(r)) if r.revision == self.next => {
                    self.deliver(r.revision, r.history_hash, &r.events, &r.audit)
                        .await?
                }
                // A revision missing between position and ring: read it from the log.
                Next::Live(Ok(_)) | Next::Live(Err(RecvError::Lagged(_))) => return Ok(()),
                Next::Live(Err(RecvError::Closed)) => return Err(Stop::Fail(shutting_down())),
                Next::Progress => {
                    let rev = self.progress_revision();
                    let hash = self.hash_of(rev);
                    self.emit(rev, hash, Kind::Progress(Progress {})).await?;
                }
            }
        }
    }

    /// Streams the current durable version of the state, at its revision `R0`, and
    /// `snapshot_complete`; returns `R0`. Chunks are made as the client reads them.
    async fn snapshot(&mut self) -> std::result::Result<u64, Stop> {
        let mut cursor = Cursor::new(self.hub.registry().current(), self.spec.filter.clone());
        let r0 = cursor.revision();
        while let Some(chunk) = cursor.next_chunk() {
            if !chunk.is_empty() {
                self.emit(r0, None, Kind::Snapshot(Snapshot { resources: chunk }))
                    .await?;
            }
            // A chunk is bounded work; let other tasks run between chunks even when the
            // client's queue has room (or the filter left a chunk empty).
            tokio::task::yield_now().await;
        }
        self.floor = r0;
        let hash = self.hash_of(r0);
        self.emit(r0, hash, Kind::SnapshotComplete(SnapshotComplete {}))
            .await?;
        Ok(r0)
    }
}
