//! The single writer thread: every write is validated and applied in memory here, off the
//! async workers, and answered only after the group it belongs to is durable.
//!
//! Group commit: the thread takes every write that is waiting (up to [`MAX_GROUP`]) and
//! applies each to the working version of the state, in order, each seeing the ones before it
//! (a refused write leaves no trace and gets its error). The accepted ones become ONE engine
//! [`Batch`]: their records, one change-log entry per revision, the new revision counter —
//! or, for an engine that limits a batch ([`Engine::batch_limits`](super::Engine), etcd's
//! operations per transaction), several consecutive batches, each holding whole writes. The
//! thread commits them, flushes once, publishes the new version to readers
//! ([`Registry::publish`]) and to the change feed, and only then answers. No storage read
//! happens on this path.
//!
//! Dry runs ([`Writer::validate`], a request's `validate_only`) go through the same queue and
//! are applied, in their place in the group, to a copy of the working version: exactly the
//! version a real write in that place would be checked against, so they answer exactly what it
//! would (revision fields 0). The copy is dropped: a dry run adds nothing to the batch, takes
//! no revision, publishes nothing, and later writes of the group do not see it.
//!
//! Several nodes (an engine with [`Engine::follow`](super::Engine)): another node's commits
//! reach this one as change-log entries. The writer **catches up** — reads the log from its
//! working revision to the store's, checks each entry's history hash against its own chain,
//! applies the events to the working version and publishes them like its own writes — when
//! the engine says the store moved, and whenever a commit finds the store is no longer at the
//! batch's base revision (a conflict: another node committed first). After a conflict the
//! writes not yet committed are validated AGAIN against the caught-up version, never retried
//! blindly: a write is only ever committed on top of the state it was checked against. After
//! [`MAX_CONFLICTS`] conflicts in one group its remaining writes fail `UNAVAILABLE`
//! (`WRITE_CONTENTION`).
//!
//! Failures: a batch the engine refused leaves the store as it was, so the working version
//! goes back to the state the batch was built on and the writer catches up from the store
//! before its next write (the engine may have applied it after all: an etcd transaction whose
//! answer was lost; then the catch-up publishes it). The group's writes that were not
//! committed fail (refused ones keep their own error). A batch committed but not flushed may
//! or may not survive a crash: its writes fail (like a timeout in etcd, their outcome is
//! unknown to the caller), but they stay in the working version, because the store has them;
//! the next group, even one whose writes are all refused, flushes again and publishes them. So
//! readers and watchers never see a revision before it is durable, and never miss one.
//! [`Writer::writable`] turns false while the engine is unreachable (`STORE_UNAVAILABLE`) and
//! true again once a commit or a catch-up reaches it (the follower probes it every second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use prost::Message;
use prost_types::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};

use super::history::{self, Hash};
use super::{
    Applied, Batch, BatchLimits, CommitError, Registry, WriteOp, WriteResult, cascade, codec,
};
use crate::domain::apply::apply;
use crate::domain::state::State;
use crate::error::{Error, Result};

/// The most writes committed under one flush.
pub const MAX_GROUP: usize = 256;

/// How many times one group catches up after a conflict before its writes give up.
pub const MAX_CONFLICTS: usize = 32;

/// How many writes may wait for the writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4096;

/// How many log entries one catch-up read asks for.
const CATCH_UP_CHUNK: usize = 512;

/// How often the follower asks the writer to reach the engine while writes are unavailable.
const PROBE: Duration = Duration::from_secs(1);

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

/// What the writer thread is asked to do.
enum Msg {
    /// Apply and commit (or dry-run) a write.
    Write(Job),
    /// The store is at this revision (another node committed): catch up to it. None: a probe
    /// of an engine that was unreachable.
    CatchUp(Option<u64>),
}

/// Counters of the writer, reported when the server stops.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Writes committed and made durable.
    pub writes: AtomicU64,
    /// Flushes done.
    pub flushes: AtomicU64,
    /// Revisions other nodes committed that this one applied (catch-up).
    pub followed: AtomicU64,
    /// Commits that found another node had committed first.
    pub conflicts: AtomicU64,
    /// Writes handed to the store's elected writer node and answered by it.
    pub forwarded: AtomicU64,
}

/// Where a node that is not its store's elected writer sends its writes
/// ([`crate::cluster::Forwarder`]).
pub trait Forward: Send + Sync {
    /// Hands `op` to the writer node. Some(its answer) once it answered, or when the outcome
    /// is unknown (the request may have reached it); None when it was not sent (no writer
    /// elected, this node is the writer, the writer unreachable): this node commits it.
    fn forward<'a>(
        &'a self,
        op: &'a WriteOp,
        audit: &'a crate::audit::Audit,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Result<WriteResult>>> + Send + 'a>>;
}

/// A cloneable handle that submits writes to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<WriterStats>,
    writable: watch::Receiver<bool>,
    forward: Option<Arc<dyn Forward>>,
}

impl Writer {
    /// Starts the writer thread over `registry`. The thread ends, after a final flush, once
    /// every `Writer` handle is dropped; join the returned handle to wait for it. With an
    /// engine several nodes share, also starts the follower task (needs a tokio runtime).
    pub fn spawn(registry: Arc<Registry>, publish: Publish) -> Result<(Writer, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let (writable_tx, writable) = watch::channel(true);
        if let Some(store) = registry.engine().follow() {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::internal("the writer of a shared store needs a tokio runtime to follow it")
            })?;
            runtime.spawn(follow(store, tx.downgrade(), writable.clone()));
        }
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("mapreg-writer".into())
            .spawn(move || run(registry, rx, publish, thread_stats, writable_tx))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok((
            Writer {
                tx,
                stats,
                writable,
                forward: None,
            },
            handle,
        ))
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

    /// This writer, handing its writes (not its dry runs) to `forward` whenever that takes
    /// them (see [`Forward`]); the others it commits itself.
    pub fn forwarding(mut self, forward: Arc<dyn Forward>) -> Writer {
        self.forward = Some(forward);
        self
    }

    /// Commits `op` on THIS node's writer thread, never forwarding it, recording `audit` as
    /// who made it: the writes other nodes forward to this one.
    pub async fn submit_as(
        &self,
        op: WriteOp,
        audit: Arc<crate::audit::Audit>,
    ) -> Result<WriteResult> {
        self.queue(op, false, audit).await
    }

    async fn send(&self, op: WriteOp, dry_run: bool) -> Result<WriteResult> {
        let audit = crate::audit::current();
        if !dry_run
            && let Some(forward) = &self.forward
            && let Some(answer) = forward.forward(&op, &audit).await
        {
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        self.queue(op, dry_run, audit).await
    }

    async fn queue(
        &self,
        op: WriteOp,
        dry_run: bool,
        audit: Arc<crate::audit::Audit>,
    ) -> Result<WriteResult> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Write(Job {
                op,
                dry_run,
                audit,
                reply,
            }))
            .await
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The writer's counters, to keep.
    pub fn shared_stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Whether writes can reach the engine: false from a commit or catch-up that failed
    /// `STORE_UNAVAILABLE` until one succeeds. What health reports as
    /// `mapreg.v1.Registry.writes`.
    pub fn writable(&self) -> watch::Receiver<bool> {
        self.writable.clone()
    }
}

/// Tells the writer (held weakly: the writer ends when its last handle goes) whenever the
/// shared store moves, and every [`PROBE`] while writes are unavailable.
async fn follow(
    mut store: watch::Receiver<u64>,
    queue: mpsc::WeakSender<Msg>,
    mut writable: watch::Receiver<bool>,
) {
    loop {
        let probing = !*writable.borrow_and_update();
        let msg = tokio::select! {
            r = store.changed() => match r {
                Ok(()) => Msg::CatchUp(Some(*store.borrow_and_update())),
                Err(_) => return,
            },
            r = writable.changed() => match r {
                Ok(()) => continue,
                Err(_) => return,
            },
            _ = tokio::time::sleep(PROBE), if probing => Msg::CatchUp(None),
        };
        let Some(tx) = queue.upgrade() else { return };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

fn shutting_down() -> Error {
    Error::Unavailable {
        reason: "SHUTTING_DOWN",
        message: "the server is shutting down; retry on another instance or later".into(),
    }
}

/// The batch that persists `applied`, which were applied in order on `at` (the state at the
/// batch's base revision) whose history hash is `head`; also returns each revision's history
/// hash, in order. A cascading delete clears its children's prefix when it may
/// ([`cascade`]).
pub fn batch(at: &State, head: &Hash, applied: &[Applied]) -> (Batch, Vec<(u64, Hash)>) {
    let base = at.revision();
    let (cleared, records) = cascade::record_ops(applied, at);
    let mut b = Batch {
        base,
        revision: applied.last().map_or(base, |a| a.revision),
        cleared,
        records,
        log: Vec::with_capacity(applied.len()),
    };
    let mut hashes = Vec::with_capacity(applied.len());
    let mut prev = *head;
    for a in applied {
        let cs = a.audit.change_set(a.events.clone());
        let encoded = cs.encode_to_vec();
        prev = history::next(&prev, &encoded);
        hashes.push((a.revision, prev));
        b.log.push((a.revision, history::entry(encoded, &prev)));
    }
    (b, hashes)
}

/// What one write adds to a batch, as [`BatchLimits`] count it, when it clears `cleared` (an
/// upper bound: every event is its share of the log entry, with its field tag and length,
/// plus one record operation unless it is a child's delete under a cleared prefix; each
/// cleared prefix is one operation).
fn cost(a: &Applied, cleared: &[Vec<u8>]) -> (usize, usize) {
    const KEY: usize = 96;
    let mut ops = 1 + cleared.len();
    let mut bytes = 128 + KEY + cleared.len() * 2 * KEY;
    for e in &a.events {
        let n = e.encoded_len();
        bytes += n + 1 + prost::length_delimiter_len(n);
        let covered = cascade::event_key(e)
            .is_some_and(|(k, delete)| delete && cleared.iter().any(|p| k.starts_with(p)));
        if !covered {
            ops += 1;
            bytes += n + KEY;
        }
    }
    (ops, bytes)
}

/// The writes of one batch being built: their [`Applied`], and the state it starts from.
struct Chunk {
    /// The working version before the chunk's first write (what the store must be at).
    base: State,
    /// Index (in the attempt's jobs) of the chunk's first job.
    first: usize,
    applied: Vec<Applied>,
    /// The prefixes its cascades clear ([`cascade`]): no other write of the chunk may touch
    /// them.
    cleared: Vec<Vec<u8>>,
    ops: usize,
    bytes: usize,
}

impl Chunk {
    fn new(base: State, first: usize) -> Chunk {
        Chunk {
            base,
            first,
            applied: Vec::new(),
            cleared: Vec::new(),
            ops: 1,
            bytes: 0,
        }
    }

    /// Whether `a` (with the prefixes it would clear) cannot join the chunk without breaking
    /// a cascade's conditions: it writes under a prefix the chunk clears, or the chunk wrote
    /// under a prefix it clears.
    fn clashes(&self, a: &Applied, cleared: &[Vec<u8>]) -> bool {
        let under = |k: &[u8], ps: &[Vec<u8>]| ps.iter().any(|p| k.starts_with(p));
        (!self.cleared.is_empty() && cascade::touched(a).any(|k| under(&k, &self.cleared)))
            || (!cleared.is_empty()
                && self
                    .applied
                    .iter()
                    .any(|b| cascade::touched(b).any(|k| under(&k, cleared))))
    }
}

/// How an attempt at committing a group's jobs ended.
enum End {
    /// Every job is answered.
    Done,
    /// The store was not at a chunk's base: jobs from this index on must be checked again.
    Conflict(usize),
    /// The engine failed committing the chunk starting at this index.
    Failed(usize, Error),
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
    /// The working version may not be what the store holds (a commit whose outcome is
    /// unknown): catch up before the next write.
    stale: bool,
    limits: BatchLimits,
    writable: watch::Sender<bool>,
    /// Other nodes write to the store too ([`Engine::follow`](super::Engine::follow)).
    shared: bool,
}

fn run(
    registry: Arc<Registry>,
    mut rx: mpsc::Receiver<Msg>,
    publish: Publish,
    stats: Arc<WriterStats>,
    writable: watch::Sender<bool>,
) {
    let working = (*registry.current()).clone();
    let (_, head) = registry.head_hash();
    let limits = registry.engine().batch_limits();
    let shared = registry.engine().follow().is_some();
    let mut l = Loop {
        shared,
        registry,
        publish,
        stats,
        working,
        unpublished: Vec::new(),
        head,
        stale: false,
        limits,
        writable,
    };
    let mut group: Vec<Msg> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(msg) => group.push(msg),
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
    fn group(&mut self, msgs: &mut Vec<Msg>) {
        let mut jobs = Vec::with_capacity(msgs.len());
        let mut catch_up = self.stale;
        for m in msgs.drain(..) {
            match m {
                Msg::Write(j) => jobs.push(j),
                Msg::CatchUp(Some(r)) => catch_up |= r > self.working.revision(),
                Msg::CatchUp(None) => catch_up = true,
            }
        }
        let mut refused: Option<Error> = None;
        if catch_up && let Err(e) = self.catch_up() {
            tracing::warn!(error = %e, "cannot catch up with the store");
            self.note(&e);
            if self.stale {
                refused = Some(e);
            }
        }
        let mut outcomes: Vec<Option<Result<WriteResult>>> =
            (0..jobs.len()).map(|_| None).collect();
        let mut committed: Vec<usize> = Vec::new();
        if let Some(e) = refused {
            // The working version is not known to be the store's: nothing can be checked.
            for o in outcomes.iter_mut() {
                *o = Some(Err(e.clone()));
            }
        } else {
            self.commit_jobs(&jobs, &mut outcomes, &mut committed);
        }
        if let Err(e) = self.flush_and_publish() {
            // The committed writes of the group are not known durable: their callers are not
            // told they worked. Refused ones keep their own error; dry runs committed nothing.
            for i in committed {
                outcomes[i] = Some(Err(e.clone()));
            }
        }
        for (job, r) in jobs.into_iter().zip(outcomes) {
            let r = r.unwrap_or_else(|| Err(Error::internal("the writer lost a write's answer")));
            let _ = job.reply.send(r);
        }
    }

    /// Applies and commits `jobs`, catching up and checking again after each conflict; fills
    /// every outcome, and `committed` with the jobs whose writes the engine took.
    fn commit_jobs(
        &mut self,
        jobs: &[Job],
        outcomes: &mut [Option<Result<WriteResult>>],
        committed: &mut Vec<usize>,
    ) {
        let now = Timestamp::from(SystemTime::now());
        let mut from = 0;
        let mut conflicts = 0;
        loop {
            let mut tentative: Vec<(Result<WriteResult>, bool)> = Vec::new();
            let end = self.attempt(&jobs[from..], now, &mut tentative);
            let settled = match &end {
                End::Done => tentative.len(),
                End::Conflict(i) | End::Failed(i, _) => *i,
            };
            for (k, (r, accepted)) in tentative.into_iter().enumerate() {
                let i = from + k;
                if k < settled {
                    if accepted {
                        committed.push(i);
                    }
                    outcomes[i] = Some(r);
                } else if let End::Failed(_, e) = &end {
                    // Not committed: an accepted write fails with the engine's error; a refusal
                    // or a dry run stands (it was checked against what the store holds).
                    outcomes[i] = Some(if accepted { Err(e.clone()) } else { r });
                }
            }
            match end {
                End::Done => return,
                End::Failed(_, e) => {
                    self.note(&e);
                    return;
                }
                End::Conflict(i) => {
                    from += i;
                    conflicts += 1;
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    let stuck = if conflicts > MAX_CONFLICTS {
                        Some(Error::Unavailable {
                            reason: "WRITE_CONTENTION",
                            message: format!(
                                "other nodes committed first {MAX_CONFLICTS} times in a row; \
                                 nothing was written, retry"
                            ),
                        })
                    } else {
                        self.catch_up().err()
                    };
                    if let Some(e) = stuck {
                        self.note(&e);
                        for o in outcomes[from..].iter_mut() {
                            *o = Some(Err(e.clone()));
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Applies `jobs` in order to the working version and commits the accepted ones in
    /// batches within the engine's limits. `out` gets each job's answer and whether it is an
    /// accepted write (in job order, as far as the attempt got).
    fn attempt(
        &mut self,
        jobs: &[Job],
        now: Timestamp,
        out: &mut Vec<(Result<WriteResult>, bool)>,
    ) -> End {
        let limits = self.registry.limits().clone();
        let max = self.limits;
        let mut chunk = Chunk::new(self.working.clone(), 0);
        for (i, job) in jobs.iter().enumerate() {
            if job.dry_run {
                // The version a real write here would see; the copy is O(1) and dropped.
                let mut scratch = self.working.clone();
                out.push((
                    apply(&mut scratch, &job.op, &limits, now)
                        .map(|a| a.result.without_revisions())
                        .map_err(Error::from),
                    false,
                ));
                continue;
            }
            let before = self.working.clone();
            let mut a = match apply(&mut self.working, &job.op, &limits, now) {
                Ok(a) => a,
                Err(v) => {
                    out.push((Err(v.into()), false));
                    continue;
                }
            };
            a.audit = job.audit.committed_at(now);
            if max != BatchLimits::UNLIMITED {
                // What it clears on a batch that starts right before it (always its whole
                // cascade); the chunk is cut here if it would not clear that much on the
                // chunk's base.
                let cleared = cascade::prefixes(&a, &before);
                let (ops, bytes) = cost(&a, &cleared);
                if ops + 1 > max.max_ops || bytes > max.max_bytes {
                    self.working = before;
                    out.push((Err(too_big(a.events.len(), bytes, max)), false));
                    continue;
                }
                if chunk.ops + ops > max.max_ops
                    || chunk.bytes + bytes > max.max_bytes
                    || chunk.clashes(&a, &cleared)
                {
                    // The chunk so far ends before this write: commit it, then start the next
                    // one on the state it leaves (`before`), with this write first.
                    if let Err(end) = self.commit_chunk(&mut chunk) {
                        self.working = chunk.base;
                        return end;
                    }
                    chunk = Chunk::new(before, i);
                }
                chunk.ops += ops;
                chunk.bytes += bytes;
                chunk.cleared.extend(cleared);
            }
            out.push((Ok(a.result.clone()), true));
            chunk.applied.push(a);
        }
        if chunk.applied.is_empty() && !jobs.is_empty() {
            // Only refusals and dry runs (a chunk after a split always holds a write).
            return match self.confirm_unchanged(&chunk) {
                Ok(()) => End::Done,
                Err(end) => end,
            };
        }
        match self.commit_chunk(&mut chunk) {
            Ok(()) => End::Done,
            Err(end) => {
                self.working = chunk.base;
                end
            }
        }
    }

    /// Commits the chunk's writes as one batch. On success they join the unpublished writes;
    /// on failure nothing changed here (the caller puts the working version back).
    fn commit_chunk(&mut self, chunk: &mut Chunk) -> std::result::Result<(), End> {
        if chunk.applied.is_empty() {
            return Ok(());
        }
        let base = chunk.base.revision();
        let (b, hashes) = batch(&chunk.base, &self.head, &chunk.applied);
        match self.registry.engine().commit(&b) {
            Ok(()) => {
                if let Some((_, h)) = hashes.last() {
                    self.head = *h;
                }
                // Known before the flush; asked for only up to the durable revision.
                self.registry.record_hashes(&hashes);
                self.unpublished.append(&mut chunk.applied);
                self.writable
                    .send_if_modified(|w| !std::mem::replace(w, true));
                Ok(())
            }
            Err(CommitError::Conflict { current }) => {
                tracing::debug!(base, current, "another node committed first; catching up");
                Err(End::Conflict(chunk.first))
            }
            Err(CommitError::Failed(e)) => {
                tracing::error!(error = %e, "commit failed; failing the writes not committed");
                // The engine may have applied it after all (an answer lost on the way):
                // catch up from the store before the next write.
                self.stale = true;
                Err(End::Failed(chunk.first, e))
            }
        }
    }

    /// An attempt that commits nothing holds only refusals and dry runs. On a store other nodes
    /// write, they were checked against this node's version, which may be behind: no
    /// conditional commit confirms it, so the store's revision is read instead, and if it
    /// moved, the chunk is checked again after catching up (a conflict). Otherwise a write
    /// sent here right after another node acknowledged a create could be refused NOT_FOUND.
    /// A store that cannot be asked leaves them standing: they are answers from the last
    /// version, as reads are.
    fn confirm_unchanged(&mut self, chunk: &Chunk) -> std::result::Result<(), End> {
        if !self.shared {
            return Ok(());
        }
        match self.registry.engine().revision() {
            Ok(current) if current > chunk.base.revision() => {
                tracing::debug!(
                    base = chunk.base.revision(),
                    current,
                    "refusals checked against an old version; catching up"
                );
                Err(End::Conflict(chunk.first))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "cannot confirm the store's revision for refusals");
                Ok(())
            }
        }
    }

    /// Notes an engine error: writes are unavailable while the engine is unreachable.
    fn note(&self, e: &Error) {
        if matches!(
            e,
            Error::Unavailable {
                reason: "STORE_UNAVAILABLE",
                ..
            }
        ) {
            self.writable
                .send_if_modified(|w| std::mem::replace(w, false));
        }
    }

    /// Brings the working version to the store's revision by applying the change-log entries
    /// it lacks (committed by other nodes, or by a commit whose answer was lost), checking
    /// each entry's history hash; they are published with the group. Reloads everything from
    /// the records when the log no longer holds what is missing, or the store went back.
    fn catch_up(&mut self) -> Result<()> {
        let engine = self.registry.engine().clone();
        let target = engine.revision()?;
        let mut at = self.working.revision();
        if target < at {
            tracing::warn!(
                store = target,
                working = at,
                "the store is behind this node's version; reloading it"
            );
            return self.resync();
        }
        while at < target {
            let entries = engine.read_log(at + 1, target, CATCH_UP_CHUNK)?;
            if entries.first().is_none_or(|(r, _)| *r != at + 1) {
                tracing::warn!(
                    from = at + 1,
                    "the change log no longer holds what this node lacks; reloading the state"
                );
                return self.resync();
            }
            for (rev, entry) in entries {
                if rev != at + 1 {
                    return self.resync();
                }
                let (encoded, stored) = history::split(&entry);
                let hash = history::next(&self.head, encoded);
                if stored.is_some_and(|s| s != hash) {
                    return Err(Error::Corrupt(format!(
                        "revision {rev} in the store does not follow this node's history \
                         (history hash mismatch)"
                    )));
                }
                let (events, audit) =
                    crate::audit::Audit::split(codec::decode_change_set(encoded)?);
                for e in &events {
                    self.working.apply(e.clone());
                }
                self.working.set_revision(rev);
                self.registry.record_hashes(&[(rev, hash)]);
                self.head = hash;
                self.stats.followed.fetch_add(1, Ordering::Relaxed);
                self.unpublished.push(Applied {
                    result: WriteResult::Deleted(rev),
                    revision: rev,
                    events,
                    audit: Arc::new(audit),
                });
                at = rev;
            }
        }
        self.stale = false;
        self.writable
            .send_if_modified(|w| !std::mem::replace(w, true));
        Ok(())
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
    /// writer cannot follow entry by entry. What was unpublished is dropped: watchers read
    /// those revisions from the log once a later one is published.
    fn resync(&mut self) -> Result<()> {
        let state = super::registry::load(self.registry.engine().as_ref())?;
        self.working = state;
        self.unpublished.clear();
        self.registry.reload_history()?;
        self.head = self.registry.head_hash().1;
        self.stale = false;
        self.registry.publish(Arc::new(self.working.clone()));
        self.writable
            .send_if_modified(|w| !std::mem::replace(w, true));
        Ok(())
    }
}

/// The refusal of a single write larger than one batch may be (`records`: how many it
/// changes).
fn too_big(records: usize, bytes: usize, max: BatchLimits) -> Error {
    Error::ResourceExhausted {
        reason: "WRITE_TOO_LARGE",
        message: format!(
            "this write changes {records} records ({bytes} bytes with its change-log entry), \
             more than the store takes in one transaction ({} operations, {} bytes; etcd's \
             --max-txn-ops and --max-request-bytes)",
            max.max_ops, max.max_bytes
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::Engine;
    use crate::store::memory::MemoryEngine;

    /// A memory engine whose next flush or commit can be made to fail, and whose batches
    /// may be limited to `max_ops` operations (0: unlimited).
    #[derive(Default)]
    struct Flaky {
        inner: MemoryEngine,
        fail_flush: AtomicBool,
        fail_commit: AtomicBool,
        max_ops: std::sync::atomic::AtomicUsize,
        commits: AtomicU64,
    }

    impl Engine for Flaky {
        crate::metrics::engine_pass_through!();
        fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
            if self.fail_commit.swap(false, Ordering::SeqCst) {
                return Err(CommitError::Failed(Error::internal("disk on fire")));
            }
            let max = self.batch_limits().max_ops;
            let ops = batch.cleared.len() + batch.records.len() + batch.log.len() + 1;
            assert!(
                ops <= max,
                "a batch of {ops} operations over the limit of {max}"
            );
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.inner.commit(batch)
        }
        fn flush(&self) -> Result<()> {
            if self.fail_flush.swap(false, Ordering::SeqCst) {
                return Err(Error::internal("fsync failed"));
            }
            Ok(())
        }
        fn batch_limits(&self) -> BatchLimits {
            match self.max_ops.load(Ordering::SeqCst) {
                0 => BatchLimits::UNLIMITED,
                n => BatchLimits {
                    max_ops: n,
                    max_bytes: usize::MAX,
                },
            }
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

    /// One node: its registry, writer, and the revisions it published, in order.
    struct Node {
        registry: Arc<Registry>,
        writer: Writer,
        thread: JoinHandle<()>,
        published: Arc<Mutex<Vec<u64>>>,
    }

    /// A node over `engine`: its registry opened from what `engine` holds, its writer running.
    fn node(engine: Arc<dyn Engine>) -> Node {
        let registry = Arc::new(Registry::open(engine, Default::default()).unwrap());
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
        Node {
            registry,
            writer,
            thread,
            published,
        }
    }

    impl Node {
        /// The revisions published so far, in order.
        fn published(&self) -> Vec<u64> {
            self.published.lock().unwrap().clone()
        }

        /// Stops the writer and waits for its thread to end.
        fn stop(self) {
            drop(self.writer);
            self.thread.join().unwrap();
        }
    }

    #[tokio::test]
    async fn failed_flushes_and_commits_publish_nothing_early_and_lose_nothing() {
        let engine = Arc::new(Flaky::default());
        let n = node(engine.clone());
        let (registry, writer) = (&n.registry, &n.writer);

        // Committed, flush failed: the caller is not told it worked, nothing is published.
        engine.fail_flush.store(true, Ordering::SeqCst);
        let e = writer.submit(create_domain("a.com")).await.unwrap_err();
        assert_eq!(e.reason(), "INTERNAL");
        assert!(registry.current().domain("a.com").is_none());
        assert!(n.published().is_empty());
        // A retry is refused by its own rule (the store has it), and that group's flush
        // publishes the earlier write.
        let e = writer.submit(create_domain("a.com")).await.unwrap_err();
        assert_eq!(e.reason(), "DOMAIN_NAME_EXISTS");
        assert!(registry.current().domain("a.com").is_some());
        assert_eq!(n.published(), vec![1]);

        // A failed commit applies nothing and takes no revision.
        engine.fail_commit.store(true, Ordering::SeqCst);
        assert!(writer.submit(create_domain("b.com")).await.is_err());
        assert!(registry.current().domain("b.com").is_none());
        writer.submit(create_domain("c.com")).await.unwrap();
        let current = registry.current();
        assert_eq!(current.revision(), 2);
        assert!(current.domain("b.com").is_none());
        assert_eq!(n.published(), vec![1, 2]);
        n.stop();
    }

    #[tokio::test]
    async fn dry_runs_answer_like_the_write_and_leave_no_trace() {
        let engine = Arc::new(MemoryEngine::default());
        let n = node(engine.clone());
        let (registry, writer) = (&n.registry, &n.writer);
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
        assert_eq!(n.published(), vec![1, 2]);
        n.stop();
    }

    fn account() -> String {
        "000000000000".into()
    }

    fn create_api(name: &str) -> WriteOp {
        WriteOp::CreateApi {
            account: account(),
            name: name.into(),
            protocol: crate::pb::ProtocolType::Http,
            description: String::new(),
            tags: Default::default(),
            selection: Default::default(),
        }
    }

    /// Every domain with its counters, every stage and every mapping of `state`, comparable.
    fn contents(state: &State) -> Vec<String> {
        let mut out = Vec::new();
        for (d, e) in state.domains_from(None) {
            out.push(format!("{:?} {:?}", e.record, e.counters));
            for m in state.mappings_on(d) {
                out.push(format!("{m:?}"));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_on_one_store_check_every_write_against_the_other_nodes_writes() {
        let engine = MemoryEngine::shared();
        let a = node(Arc::new(engine.clone()));
        let b = node(Arc::new(engine.clone()));

        // 10 names, each created 4 times through both nodes at once: exactly one wins each.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let w = if i % 2 == 0 {
                a.writer.clone()
            } else {
                b.writer.clone()
            };
            tasks.push(tokio::spawn(async move {
                w.submit(create_domain(&format!("d{}.example.com", i % 10)))
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(e) => assert_eq!(e.reason(), "DOMAIN_NAME_EXISTS", "{e}"),
            }
        }
        assert_eq!(won, 10);

        // An API and stage made on A; B maps it while A deletes the stage: never both.
        let api = match a.writer.submit(create_api("shop")).await.unwrap() {
            WriteResult::Api(api) => api.api_id,
            other => panic!("{other:?}"),
        };
        for round in 0..30 {
            let stage = format!("s{round}");
            let created = a
                .writer
                .submit(WriteOp::CreateStage {
                    account: account(),
                    api_id: api.clone(),
                    stage_name: stage.clone(),
                    description: String::new(),
                    tags: Default::default(),
                })
                .await
                .unwrap();
            assert!(
                b.registry
                    .at_least(created_revision(&created), Duration::from_secs(5))
                    .await
            );
            let map = b.writer.submit(WriteOp::CreateApiMapping {
                account: account(),
                domain_name: format!("d{}.example.com", round % 10),
                api_mapping_key: format!("k{round}"),
                api_id: api.clone(),
                stage: stage.clone(),
            });
            let delete = a.writer.submit(WriteOp::DeleteStage {
                account: account(),
                api_id: api.clone(),
                stage_name: stage.clone(),
                expected_revision: 0,
            });
            let (map, delete) = tokio::join!(map, delete);
            match (&map, &delete) {
                (Ok(_), Err(e)) => assert_eq!(e.reason(), "STAGE_IN_USE", "{e}"),
                (Err(e), Ok(_)) => assert_eq!(e.reason(), "STAGE_NOT_FOUND", "{e}"),
                other => panic!("round {round}: both or neither happened: {other:?}"),
            }
        }

        // Both nodes end at the store's revision with the store's contents, having published
        // every revision once, in order.
        let head = engine.revision().unwrap();
        for n in [&a, &b] {
            assert!(n.registry.at_least(head, Duration::from_secs(5)).await);
        }
        let fresh = Registry::open(Arc::new(engine.reopen()), Default::default()).unwrap();
        let expect = contents(&fresh.current());
        for n in [&a, &b] {
            let current = n.registry.current();
            assert_eq!(current.revision(), head);
            assert_eq!(contents(&current), expect);
            for m in current.mappings_on("d0.example.com") {
                assert!(
                    current.stage(&m.api_id, &m.stage).is_some(),
                    "dangling {m:?}"
                );
            }
            assert_eq!(n.published(), (1..=head).collect::<Vec<_>>());
            assert_eq!(n.registry.head_hash(), fresh.head_hash());
        }
        assert!(a.writer.stats().followed.load(Ordering::Relaxed) > 0);
        assert!(b.writer.stats().followed.load(Ordering::Relaxed) > 0);
        a.stop();
        b.stop();
    }

    fn created_revision(r: &WriteResult) -> u64 {
        match r {
            WriteResult::Stage(s) => s.mod_revision,
            WriteResult::Api(a) => a.mod_revision,
            WriteResult::DomainName(d) => d.mod_revision,
            WriteResult::ApiMapping(m) => m.mod_revision,
            WriteResult::Deleted(r) => *r,
        }
    }

    #[tokio::test]
    async fn a_group_over_the_engines_batch_limit_commits_in_several_whole_batches() {
        let engine = Arc::new(Flaky::default());
        engine.max_ops.store(7, Ordering::SeqCst);
        let n = node(engine.clone());
        let writer = &n.writer;
        // 20 writes queued at once: one group, batches of at most 3 writes (2 ops each + 1).
        let writes: Vec<_> = (0..20)
            .map(|i| writer.submit(create_domain(&format!("d{i}.com"))))
            .collect();
        let results = futures::future::join_all(writes).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(engine.revision().unwrap(), 20);
        assert!(engine.commits.load(Ordering::SeqCst) >= 7);
        // A single write bigger than a batch is refused, cleanly.
        engine.max_ops.store(1, Ordering::SeqCst);
        n.stop();
        let n = node(engine.clone());
        let e = n.writer.submit(create_domain("big.com")).await.unwrap_err();
        assert_eq!(e.reason(), "WRITE_TOO_LARGE", "{e}");
        assert!(n.registry.current().domain("big.com").is_none());
        assert_eq!(engine.revision().unwrap(), 20);
        n.stop();
    }

    fn map(domain: &str, api_id: &str, key: &str) -> WriteOp {
        WriteOp::CreateApiMapping {
            account: account(),
            domain_name: domain.into(),
            api_mapping_key: key.into(),
            api_id: api_id.into(),
            stage: "prod".into(),
        }
    }

    fn delete_domain(name: &str) -> WriteOp {
        WriteOp::DeleteDomainName {
            account: account(),
            domain_name: name.into(),
            expected_revision: 0,
        }
    }

    #[tokio::test]
    async fn a_cascade_over_the_op_limit_commits_as_one_batch_clearing_a_prefix() {
        let engine = Arc::new(Flaky::default());
        engine.max_ops.store(128, Ordering::SeqCst);
        let registry = Arc::new(Registry::open(engine.clone(), Default::default()).unwrap());
        let (writer, thread) =
            Writer::spawn(registry.clone(), Box::new(|_: &[Applied]| {})).unwrap();
        let api = match writer.submit(create_api("shop")).await.unwrap() {
            WriteResult::Api(a) => a.api_id,
            other => panic!("{other:?}"),
        };
        for i in 0..300 {
            writer
                .submit(WriteOp::CreateStage {
                    account: account(),
                    api_id: api.clone(),
                    stage_name: if i == 0 {
                        "prod".into()
                    } else {
                        format!("s{i}")
                    },
                    description: String::new(),
                    tags: Default::default(),
                })
                .await
                .unwrap();
        }
        writer.submit(create_domain("d.com")).await.unwrap();
        let maps: Vec<_> = (0..1000)
            .map(|i| writer.submit(map("d.com", &api, &format!("k{i}"))))
            .collect();
        assert!(
            futures::future::join_all(maps)
                .await
                .iter()
                .all(|r| r.is_ok())
        );
        let before = engine.revision().unwrap();
        let commits = engine.commits.load(Ordering::SeqCst);

        // 1001 records at one revision, in one batch of a few operations (Flaky checks).
        let r = writer.submit(delete_domain("d.com")).await.unwrap();
        assert!(matches!(r, WriteResult::Deleted(rev) if rev == before + 1));
        assert_eq!(engine.commits.load(Ordering::SeqCst), commits + 1);
        let log = engine.read_log(before + 1, before + 1, 1).unwrap();
        let (cs, _) = history::split(&log[0].1);
        assert_eq!(codec::decode_change_set(cs).unwrap().events.len(), 1001);
        assert!(
            engine
                .scan_records()
                .all(|kv| !kv.unwrap().0.starts_with(b"m\0"))
        );

        // In one group: the domain made again and mapped, deleted, made and mapped again.
        // Each cascade gets a batch where nothing else writes under its prefix.
        writer.submit(create_domain("d.com")).await.unwrap();
        let mut group = vec![];
        for i in 0..5 {
            group.push(writer.submit(map("d.com", &api, &format!("a{i}"))));
        }
        group.push(writer.submit(delete_domain("d.com")));
        group.push(writer.submit(create_domain("d.com")));
        group.push(writer.submit(map("d.com", &api, "b")));
        let results = futures::future::join_all(group).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        let fresh = Registry::open(engine.clone(), Default::default()).unwrap();
        let left: Vec<_> = fresh
            .current()
            .mappings_on("d.com")
            .map(|m| m.api_mapping_key.clone())
            .collect();
        assert_eq!(left, vec!["b".to_string()]);

        // An API deleted with its 300 stages (once nothing maps it): one batch too.
        let delete_api = WriteOp::DeleteApi {
            account: account(),
            api_id: api.clone(),
            expected_revision: 0,
        };
        let e = writer.submit(delete_api.clone()).await.unwrap_err();
        assert_eq!(e.reason(), "API_IN_USE");
        writer.submit(delete_domain("d.com")).await.unwrap();
        let commits = engine.commits.load(Ordering::SeqCst);
        writer.submit(delete_api).await.unwrap();
        assert_eq!(engine.commits.load(Ordering::SeqCst), commits + 1);
        assert_eq!(engine.scan_records().count(), 0);
        drop(writer);
        thread.join().unwrap();
    }
}
