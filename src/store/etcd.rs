//! The etcd engine (SPEC.md 8.2): several mapreg nodes share one etcd cluster, each keeping its
//! own in-memory version and following the store's revision with an etcd watch.
//!
//! # Key layout
//!
//! Everything lives under one prefix `P` (default `/mapreg/`, from the store URL):
//!
//! | key                          | value                                                       |
//! |------------------------------|-------------------------------------------------------------|
//! | `P meta/store_id`            | the store id (set once, by whichever node got there first)  |
//! | `P meta/revision`            | mapreg's revision counter, decimal ASCII (`etcdctl get`)    |
//! | `P meta/compact`             | the compaction revision, zero-padded to 20 digits, a space, |
//! |                              | and the history hash at it, 64 hex digits                   |
//! | `P rec/<record key bytes>`   | one record, as the other engines store it                   |
//! | `P log/<revision, 20 digits>`| one change-log entry; the padding makes lexical = numeric   |
//!
//! # Guarantees and how
//!
//! - A batch is ONE etcd transaction, conditioned on `meta/revision` being the batch's base
//!   (absent for base 0): several nodes may race, exactly one wins each revision, the losers
//!   get [`CommitError::Conflict`] with the revision the store is at and catch up. A cleared
//!   prefix ([`Batch::cleared`]: a domain deleted with all its mappings) is one DeleteRange
//!   operation of that transaction, so the cascade fits in etcd's `--max-txn-ops` whatever
//!   the number of mappings; what bounds it is the change-log entry listing every deleted
//!   mapping, within [`LIMITS`]' bytes.
//! - A transaction etcd answered is committed by its quorum and fsynced on it, so
//!   [`flush`](Engine::flush) has nothing left to do.
//! - A scan reads every page at the etcd revision of its first page: one consistent snapshot.
//! - Compaction is one transaction conditioned on the stored compaction point being below the
//!   new one; two nodes compacting at once both succeed or one does nothing, and the point never
//!   goes back.
//! - Every call has a timeout; an etcd that cannot be reached (or has no quorum) is
//!   `UNAVAILABLE`, reason `STORE_UNAVAILABLE`, never a hang and never a panic.
//! - A commit whose answer is lost (timeout, connection cut while in flight) may still have
//!   been applied by etcd: the engine then asks etcd whether the batch's last log entry is
//!   there, and reports success if it is. Only when etcd cannot be asked either is the commit
//!   reported failed without being known not applied; a follower sees the revision move if
//!   it was.
//!
//! etcd-client is async while [`Engine`] is not: the engine owns a small tokio runtime (one
//! worker); each call spawns its future there and waits for the answer on a std channel, so it
//! works from a plain thread (the writer) and from inside tokio tasks of the server alike. The
//! same runtime runs the watch that feeds [`Engine::follow`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};

use super::{Batch, BatchLimits, CommitError, Engine, RecordIter, history};
use crate::error::{Error, Result};

mod election;
#[doc(hidden)]
pub mod testkit;

pub use election::LEASE_TTL;

/// The prefix used when the store URL names none.
pub const DEFAULT_PREFIX: &str = "/mapreg/";

/// How long a commit may take before it is reported `STORE_UNAVAILABLE`.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a read (a key, a log range, one page of a scan) may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Records per page of a scan.
pub const SCAN_PAGE: i64 = 2_000;
/// etcd 3.4's defaults are `--max-txn-ops 128` and `--max-request-bytes` 1.5 MiB; a batch stays
/// at 1 MiB of keys and values so the request's own framing fits in the rest.
pub const LIMITS: BatchLimits = BatchLimits {
    max_ops: 128,
    max_bytes: 1024 * 1024,
};
/// The largest answer read from etcd (a page of records or of log entries).
const MAX_DECODING_BYTES: usize = 256 * 1024 * 1024;

/// A parsed `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `HOST:PORT` of each member given, in order (at least one).
    pub endpoints: Vec<String>,
    /// The key prefix, starting and ending with `/`.
    pub prefix: String,
}

/// Why a store URL is not a usable `etcd://` URL; the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid etcd store URL {url:?}: {why} (expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX])"
)]
pub struct EtcdUrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub why: String,
}

impl EtcdUrl {
    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`. Each member needs a host and a port
    /// (an IPv6 host in brackets); the prefix is normalised to start and end with `/`, and is
    /// [`DEFAULT_PREFIX`] when absent or empty.
    pub fn parse(url: &str) -> Result<EtcdUrl, EtcdUrlError> {
        let bad = |why: String| EtcdUrlError {
            url: url.to_string(),
            why,
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it does not start with etcd://".into()))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(bad("it names no HOST:PORT".into()));
        }
        let mut endpoints = Vec::new();
        for member in hosts.split(',') {
            let (host, port) = member
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("member {member:?} has no :PORT")))?;
            if host.is_empty() {
                return Err(bad(format!("member {member:?} has no host")));
            }
            let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
            if host.contains(':') && !bracketed {
                return Err(bad(format!(
                    "member {member:?}: an IPv6 host goes in brackets, [::1]:2379"
                )));
            }
            if host
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '@' | '?' | '#'))
            {
                return Err(bad(format!("member {member:?} has a malformed host")));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => {
                    return Err(bad(format!(
                        "member {member:?}: port {port:?} is not a number from 1 to 65535"
                    )));
                }
            }
            endpoints.push(member.to_string());
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the prefix has spaces or control characters".into()));
        }
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            DEFAULT_PREFIX.to_string()
        } else {
            format!("/{trimmed}/")
        };
        Ok(EtcdUrl { endpoints, prefix })
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

impl std::str::FromStr for EtcdUrl {
    type Err = EtcdUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EtcdUrl::parse(s)
    }
}

/// The keys of one store, under its prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    fn key(&self, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + rest.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(rest);
        k
    }
    fn store_id(&self) -> Vec<u8> {
        self.key(b"meta/store_id")
    }
    fn revision(&self) -> Vec<u8> {
        self.key(b"meta/revision")
    }
    fn compact(&self) -> Vec<u8> {
        self.key(b"meta/compact")
    }
    fn rec_prefix(&self) -> Vec<u8> {
        self.key(b"rec/")
    }
    fn rec(&self, record: &[u8]) -> Vec<u8> {
        let mut k = self.rec_prefix();
        k.extend_from_slice(record);
        k
    }
    fn log_prefix(&self) -> Vec<u8> {
        self.key(b"log/")
    }
    fn log(&self, revision: u64) -> Vec<u8> {
        self.key(format!("log/{revision:020}").as_bytes())
    }
    /// The first key after every log key up to and including `revision`.
    fn log_end(&self, revision: u64) -> Vec<u8> {
        let mut k = self.log(revision);
        k.push(0);
        k
    }
}

/// The end of the range of every key that starts with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn corrupt(what: impl fmt::Display) -> Error {
    Error::Corrupt(format!("etcd store: {what}"))
}

fn parse_revision(value: &[u8], what: &str) -> Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| corrupt(format!("{what} is not a decimal revision")))
}

/// `meta/compact`: the point, zero-padded so that comparing values compares points.
fn encode_compact(upto: u64, hash: &history::Hash) -> Vec<u8> {
    format!("{upto:020} {}", hex::encode(hash)).into_bytes()
}

fn decode_compact(value: &[u8]) -> Result<(u64, history::Hash)> {
    let bad = || corrupt("meta/compact is not `<revision> <history hash in hex>`");
    let s = std::str::from_utf8(value).map_err(|_| bad())?;
    let (rev, hash) = s.split_once(' ').ok_or_else(bad)?;
    let rev = rev.parse::<u64>().map_err(|_| bad())?;
    let hash = hex::decode(hash).map_err(|_| bad())?;
    let hash = history::Hash::try_from(hash.as_slice()).map_err(|_| bad())?;
    Ok((rev, hash))
}

fn log_revision(keys: &Keys, key: &[u8]) -> Result<u64> {
    key.strip_prefix(keys.log_prefix().as_slice())
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| {
            corrupt(format!(
                "log key {:?} does not end in a revision",
                String::from_utf8_lossy(key)
            ))
        })
}

/// What a call to etcd can end with, before it is mapped to [`Error`].
enum CallError {
    TimedOut,
    Etcd(etcd_client::Error),
    Mapreg(Error),
}

impl From<etcd_client::Error> for CallError {
    fn from(e: etcd_client::Error) -> Self {
        CallError::Etcd(e)
    }
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Mapreg(e)
    }
}

/// What the engine shares with its scans and its follower task.
struct Inner {
    url: EtcdUrl,
    keys: Keys,
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl Inner {
    fn unavailable(&self, detail: impl fmt::Display) -> Error {
        Error::Unavailable {
            reason: "STORE_UNAVAILABLE",
            message: format!(
                "etcd is unreachable at {} ({detail}): writes are refused until its quorum is \
                 back; reads and watches serve the last version",
                self.url.endpoints.join(",")
            ),
        }
    }

    fn map_err(&self, what: &str, e: CallError, timeout: Duration) -> Error {
        match e {
            CallError::Mapreg(e) => e,
            CallError::TimedOut => {
                self.unavailable(format!("{what}: no answer within {}s", timeout.as_secs()))
            }
            CallError::Etcd(e) => match &e {
                etcd_client::Error::GRpcStatus(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                            | tonic::Code::Unknown
                    ) =>
                {
                    self.unavailable(format!("{what}: {}", s.message()))
                }
                etcd_client::Error::TransportError(_)
                | etcd_client::Error::IoError(_)
                | etcd_client::Error::WatchError(_) => self.unavailable(format!("{what}: {e}")),
                _ => Error::internal(format!("etcd {what}: {e}")),
            },
        }
    }

    /// Runs `call` on the engine's runtime with a `timeout`, waiting for it on this thread.
    fn run<T, F>(&self, what: &str, timeout: Duration, call: impl FnOnce(Client) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, CallError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = call(self.client.clone());
        self.runtime.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(CallError::TimedOut),
            };
            let _ = tx.send(r);
        });
        // The task times itself out; the extra second only covers a runtime that is gone.
        let r = match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => Err(CallError::TimedOut),
        };
        r.map_err(|e| self.map_err(what, e, timeout))
    }

    /// Runs the read `call` like [`run`](Inner::run), again while it fails `STORE_UNAVAILABLE`
    /// (a member that is gone, a leader change: the client picks another member), with short
    /// pauses, until `budget` is spent. A read is safe to repeat; this is what keeps watchers
    /// and catch-ups going while one member of a healthy cluster dies.
    fn read<T, F>(&self, what: &str, budget: Duration, call: impl Fn(Client) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, CallError>> + Send + 'static,
    {
        let deadline = std::time::Instant::now() + budget;
        let mut pause = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.run(what, left.max(Duration::from_millis(200)), &call) {
                Err(e @ Error::Unavailable { .. }) => {
                    if std::time::Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "etcd read failed; trying again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                r => return r,
            }
        }
    }

    /// The value of `key`, if any.
    fn get(&self, what: &str, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.read(what, READ_TIMEOUT, |mut c| {
            let key = key.clone();
            async move {
                let mut r = c.get(key, None).await?;
                Ok(r.take_kvs()
                    .into_iter()
                    .next()
                    .map(|kv| kv.into_key_value().1))
            }
        })
    }

    /// The revision, and the etcd revision it was read at (for a scan at the same moment).
    fn revision_at(&self) -> Result<(u64, i64)> {
        let key = self.keys.revision();
        let (value, at) = self.read("reading the revision", READ_TIMEOUT, |mut c| {
            let key = key.clone();
            async move {
                let mut r = c.get(key, None).await?;
                let at = r.header().map_or(0, |h| h.revision());
                let value = r
                    .take_kvs()
                    .into_iter()
                    .next()
                    .map(|kv| kv.into_key_value().1);
                Ok((value, at))
            }
        })?;
        let revision = match value {
            Some(v) => parse_revision(&v, "meta/revision")?,
            None => 0,
        };
        Ok((revision, at))
    }

    fn revision(&self) -> Result<u64> {
        match self.get("reading the revision", self.keys.revision())? {
            Some(v) => parse_revision(&v, "meta/revision"),
            None => Ok(0),
        }
    }

    fn compact_point(&self) -> Result<(u64, history::Hash)> {
        match self.get("reading the compaction point", self.keys.compact())? {
            Some(v) => decode_compact(&v),
            None => Ok((0, history::ZERO)),
        }
    }
}

/// An [`Engine`] over an etcd cluster, under one key prefix (see the module documentation).
///
/// Cheap to hold: one client (one connection per member, opened lazily), one runtime thread,
/// and the task that follows the revision.
pub struct EtcdEngine {
    inner: Arc<Inner>,
    /// Dropped with [`Runtime::shutdown_background`](tokio::runtime::Runtime), which (unlike a
    /// plain drop) is allowed inside another runtime's task.
    runtime: Option<tokio::runtime::Runtime>,
    follow: tokio::sync::watch::Receiver<u64>,
    /// The lease of this node's writer election, revoked when the engine is dropped so that
    /// another node takes over at once.
    lease: Arc<std::sync::Mutex<Option<i64>>>,
}

impl Drop for EtcdEngine {
    fn drop(&mut self) {
        let lease = self.lease.lock().map(|mut l| l.take()).unwrap_or_default();
        if let Some(id) = lease {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let inner = self.inner.clone();
            self.inner.runtime.spawn(async move {
                election::revoke(&inner, id).await;
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(Duration::from_millis(600));
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl EtcdEngine {
    /// An engine on the store at `url`. Connections are made lazily: this fails only if the
    /// runtime cannot start or the endpoints are malformed; an unreachable etcd shows in the
    /// first call, as `STORE_UNAVAILABLE`.
    pub fn open(url: &EtcdUrl) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mapreg-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the etcd client runtime: {e}")))?;
        let endpoints: Vec<String> = url
            .endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            // A member that is gone, or partitioned away, is noticed within seconds, also by
            // an idle watch.
            .with_keep_alive(Duration::from_secs(3), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            // A member without a leader answers at once instead of holding the request.
            .with_require_leader(true);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(Client::connect(endpoints, Some(options)).await);
        });
        let client = rx
            .recv_timeout(READ_TIMEOUT)
            .map_err(|_| Error::internal("the etcd client did not start"))?
            .map_err(|e| Error::internal(format!("cannot make an etcd client for {url}: {e}")))?;
        let inner = Arc::new(Inner {
            url: url.clone(),
            keys: Keys {
                prefix: url.prefix.as_bytes().to_vec(),
            },
            client,
            runtime: runtime.handle().clone(),
        });
        let (follow_tx, follow) = tokio::sync::watch::channel(0);
        runtime.spawn(follow_revision(inner.clone(), follow_tx));
        Ok(EtcdEngine {
            inner,
            runtime: Some(runtime),
            follow,
            lease: Arc::default(),
        })
    }

    /// The URL this engine was opened on.
    pub fn url(&self) -> &EtcdUrl {
        &self.inner.url
    }

    /// The store id if one was set (None: nothing was ever written under this prefix).
    pub fn existing_store_id(&self) -> Result<Option<String>> {
        match self
            .inner
            .get("reading the store id", self.inner.keys.store_id())?
        {
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| corrupt("meta/store_id is not UTF-8")),
            None => Ok(None),
        }
    }
}

impl EtcdEngine {
    /// After a commit that got no answer (a timeout, a connection lost while it was in flight),
    /// whether etcd applied it all the same: the store
    /// holds the batch's own last log entry there (it carries the history hash, so no other
    /// batch has the same bytes). None: etcd still cannot be asked, and the commit stays
    /// unknown; it is then reported as failed, and a node that follows the store sees the
    /// revision move if it did apply.
    fn applied_anyway(&self, batch: &Batch) -> Option<bool> {
        let (rev, entry) = batch.log.last()?;
        // One quick question, not retried: the commit's own timeout is already spent.
        let key = self.inner.keys.log(*rev);
        let stored = self.inner.run(
            "checking an unanswered commit",
            Duration::from_millis(500),
            |mut c| async move {
                let mut r = c.get(key, None).await?;
                Ok(r.take_kvs()
                    .into_iter()
                    .next()
                    .map(|kv| kv.into_key_value().1))
            },
        );
        let applied = stored.ok()?.is_some_and(|v| &v == entry);
        if applied {
            tracing::info!(
                revision = rev,
                "etcd applied a commit whose answer was lost; it stands"
            );
        }
        Some(applied)
    }
}

/// The batch's records with only the last entry for each key kept (etcd refuses a
/// transaction that writes one key twice), in their order.
fn last_per_key(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<&(Vec<u8>, Option<Vec<u8>>)> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<_> = records
        .iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.as_slice()))
        .collect();
    out.reverse();
    out
}

impl Engine for EtcdEngine {
    fn store_id(&self, fresh: &dyn Fn() -> String) -> Result<String> {
        if let Some(id) = self.existing_store_id()? {
            return Ok(id);
        }
        let key = self.inner.keys.store_id();
        let id = fresh();
        let mine = id.clone();
        let stored =
            self.inner
                .run("setting the store id", COMMIT_TIMEOUT, |mut c| async move {
                    let txn = Txn::new()
                        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.clone(), mine.clone(), None)])
                        .or_else([TxnOp::get(key, None)]);
                    let r = c.txn(txn).await?;
                    if r.succeeded() {
                        return Ok(mine.into_bytes());
                    }
                    // Someone set it first: theirs stands.
                    for op in r.op_responses() {
                        if let TxnOpResponse::Get(mut g) = op
                            && let Some(kv) = g.take_kvs().into_iter().next()
                        {
                            return Ok(kv.into_key_value().1);
                        }
                    }
                    Err(CallError::Mapreg(corrupt(
                        "meta/store_id vanished while being set",
                    )))
                })?;
        String::from_utf8(stored).map_err(|_| corrupt("meta/store_id is not UTF-8"))
    }

    fn revision(&self) -> Result<u64> {
        self.inner.revision()
    }

    fn compact_revision(&self) -> Result<u64> {
        Ok(self.inner.compact_point()?.0)
    }

    fn compact_hash(&self) -> Result<history::Hash> {
        Ok(self.inner.compact_point()?.1)
    }

    fn commit(&self, batch: &Batch) -> Result<(), CommitError> {
        let keys = &self.inner.keys;
        let records = last_per_key(&batch.records);
        if let Some((k, _)) = records
            .iter()
            .find(|(k, _)| batch.cleared.iter().any(|p| k.starts_with(p)))
        {
            // etcd would refuse it ("duplicate key given in txn request"); the writer never
            // builds one (see `Batch::cleared`).
            return Err(CommitError::Failed(Error::internal(format!(
                "a batch writes the record {:?} inside a range it clears",
                String::from_utf8_lossy(k)
            ))));
        }
        let ops = batch.cleared.len() + records.len() + batch.log.len() + 1;
        let bytes: usize = batch
            .cleared
            .iter()
            .map(|p| 2 * keys.rec(p).len())
            .chain(
                records
                    .iter()
                    .map(|(k, v)| keys.rec(k).len() + v.as_ref().map_or(0, Vec::len)),
            )
            .chain(batch.log.iter().map(|(r, e)| keys.log(*r).len() + e.len()))
            .sum();
        if ops > LIMITS.max_ops || bytes > LIMITS.max_bytes {
            return Err(CommitError::Failed(Error::ResourceExhausted {
                reason: "STORE_BATCH_TOO_LARGE",
                message: format!(
                    "the write needs one etcd transaction of {ops} operations and {bytes} bytes, \
                     over etcd's limits of {} operations and {} bytes: nothing was written",
                    LIMITS.max_ops, LIMITS.max_bytes
                ),
            }));
        }
        let rev_key = keys.revision();
        let condition = if batch.base == 0 {
            Compare::version(rev_key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(rev_key.clone(), CompareOp::Equal, batch.base.to_string())
        };
        let mut then = Vec::with_capacity(ops);
        // Each cleared prefix is ONE DeleteRange, however many records are under it.
        for prefix in &batch.cleared {
            let start = keys.rec(prefix);
            let end = prefix_end(&start);
            then.push(TxnOp::delete(
                start,
                Some(DeleteOptions::new().with_range(end)),
            ));
        }
        for (k, v) in records {
            then.push(match v {
                Some(v) => TxnOp::put(keys.rec(k), v.clone(), None),
                None => TxnOp::delete(keys.rec(k), None),
            });
        }
        for (rev, entry) in &batch.log {
            then.push(TxnOp::put(keys.log(*rev), entry.clone(), None));
        }
        then.push(TxnOp::put(
            rev_key.clone(),
            batch.revision.to_string(),
            None,
        ));
        let txn = Txn::new()
            .when([condition])
            .and_then(then)
            .or_else([TxnOp::get(rev_key, None)]);
        // The transaction is conditioned on the revision, so sending it again is safe: if an
        // earlier attempt applied, a later one conflicts (and `applied_anyway` tells which).
        let deadline = std::time::Instant::now() + COMMIT_TIMEOUT;
        let mut pause = Duration::from_millis(20);
        let answer = loop {
            let txn = txn.clone();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let answer = self.inner.run(
                "committing",
                left.max(Duration::from_millis(200)),
                |mut c| async move {
                    let r = c.txn(txn).await?;
                    if r.succeeded() {
                        return Ok(None);
                    }
                    let mut current = None;
                    for op in r.op_responses() {
                        if let TxnOpResponse::Get(g) = op {
                            current = Some(g.kvs().first().map(|kv| kv.value().to_vec()));
                        }
                    }
                    Ok(Some(current))
                },
            );
            match answer {
                Ok(a) => break a,
                Err(e @ Error::Unavailable { .. }) => match self.applied_anyway(batch) {
                    Some(true) => return Ok(()),
                    Some(false) if std::time::Instant::now() + pause < deadline => {
                        tracing::debug!(error = %e, "etcd commit failed, not applied; sending again");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(400));
                    }
                    _ => return Err(CommitError::Failed(e)),
                },
                Err(e) => return Err(CommitError::Failed(e)),
            }
        };
        match answer {
            None => Ok(()),
            Some(Some(Some(v))) => Err(CommitError::Conflict {
                current: parse_revision(&v, "meta/revision")?,
            }),
            Some(Some(None)) => Err(CommitError::Conflict { current: 0 }),
            Some(None) => Err(CommitError::Failed(Error::internal(
                "etcd answered a failed commit without the revision it read",
            ))),
        }
    }

    fn read_log(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        if from > to || max == 0 {
            return Ok(Vec::new());
        }
        let keys = self.inner.keys.clone();
        let start = keys.log(from);
        let end = keys.log_end(to);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let kvs = self
            .inner
            .read("reading the change log", READ_TIMEOUT, |c| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let mut kv = c.kv_client().max_decoding_message_size(MAX_DECODING_BYTES);
                    let opts = GetOptions::new().with_range(end).with_limit(limit);
                    Ok(kv.get(start, Some(opts)).await?.take_kvs())
                }
            })?;
        kvs.into_iter()
            .map(|kv| {
                let (k, v) = kv.into_key_value();
                Ok((log_revision(&keys, &k)?, v))
            })
            .collect()
    }

    fn scan_records(&self) -> RecordIter {
        Box::new(Scan {
            inner: self.inner.clone(),
            next: Some(self.inner.keys.rec_prefix()),
            at: None,
            page: Vec::new().into_iter(),
            failed: false,
        })
    }

    fn scan_snapshot(&self) -> Result<(u64, RecordIter)> {
        // The revision key and every page of records at one etcd revision: one moment of the
        // store, however fast other nodes write.
        let (revision, at) = self.inner.revision_at()?;
        Ok((
            revision,
            Box::new(Scan {
                inner: self.inner.clone(),
                next: Some(self.inner.keys.rec_prefix()),
                at: Some(at),
                page: Vec::new().into_iter(),
                failed: false,
            }),
        ))
    }

    fn compact(&self, upto: u64, hash: &history::Hash) -> Result<usize> {
        let keys = &self.inner.keys;
        let key = keys.compact();
        let point = encode_compact(upto, hash);
        let drop = || {
            TxnOp::delete(
                keys.log_prefix(),
                Some(DeleteOptions::new().with_range(keys.log_end(upto))),
            )
        };
        let apply = [TxnOp::put(key.clone(), point, None), drop()];
        // No point yet, or one below `upto` (zero-padded values compare as numbers). etcd has
        // no OR: the second case is a transaction nested in the first one's else branch.
        let raise = Txn::new()
            .when([Compare::value(
                key.clone(),
                CompareOp::Less,
                format!("{upto:020}"),
            )])
            .and_then(apply.clone());
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then(apply)
            .or_else([TxnOp::txn(raise)]);
        self.inner.run(
            "compacting the change log",
            READ_TIMEOUT,
            |mut c| async move {
                let r = c.txn(txn).await?;
                let mut deleted = 0i64;
                let mut responses = r.op_responses();
                while let Some(op) = responses.pop() {
                    match op {
                        TxnOpResponse::Delete(d) => deleted += d.deleted(),
                        TxnOpResponse::Txn(t) => responses.extend(t.op_responses()),
                        _ => {}
                    }
                }
                Ok(usize::try_from(deleted).unwrap_or(0))
            },
        )
    }

    fn flush(&self) -> Result<()> {
        // etcd answers a transaction once its quorum has it in the fsynced raft log: what was
        // committed is already durable.
        Ok(())
    }

    fn batch_limits(&self) -> BatchLimits {
        LIMITS
    }

    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.follow.clone())
    }

    fn elect(
        &self,
        me: Option<String>,
    ) -> Option<tokio::sync::watch::Receiver<Option<super::Elected>>> {
        let (tx, rx) = tokio::sync::watch::channel(None);
        self.inner.runtime.spawn(election::run(
            self.inner.clone(),
            me,
            self.lease.clone(),
            tx,
        ));
        Some(rx)
    }
}

/// A scan in pages, every page at the etcd revision of the first.
struct Scan {
    inner: Arc<Inner>,
    /// Where the next page starts; None once the last page was read.
    next: Option<Vec<u8>>,
    /// The etcd revision of the snapshot (after the first page).
    at: Option<i64>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    failed: bool,
}

type ScanPage = (Vec<(Vec<u8>, Vec<u8>)>, i64, bool);

impl Scan {
    fn fetch(&mut self, start: Vec<u8>) -> Result<ScanPage> {
        let end = prefix_end(&self.inner.keys.rec_prefix());
        let at = self.at;
        self.inner
            .read("scanning the records", READ_TIMEOUT * 2, |c| {
                let (start, end) = (start.clone(), end.clone());
                async move {
                    let mut kv = c.kv_client().max_decoding_message_size(MAX_DECODING_BYTES);
                    let mut opts = GetOptions::new().with_range(end).with_limit(SCAN_PAGE);
                    if let Some(at) = at {
                        opts = opts.with_revision(at);
                    }
                    let mut r = kv.get(start, Some(opts)).await.map_err(|e| match &e {
                        etcd_client::Error::GRpcStatus(s) if s.message().contains("compacted") => {
                            CallError::Mapreg(Error::internal(format!(
                                "etcd compacted its own history while the records were read \
                             (revision {at:?}): {}; open the store again",
                                s.message()
                            )))
                        }
                        _ => CallError::Etcd(e),
                    })?;
                    let revision = r.header().map_or(0, |h| h.revision());
                    let more = r.more();
                    let kvs = r
                        .take_kvs()
                        .into_iter()
                        .map(|kv| kv.into_key_value())
                        .collect();
                    Ok((kvs, revision, more))
                }
            })
    }
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some((k, v)) = self.page.next() {
                let rec = k
                    .strip_prefix(self.inner.keys.rec_prefix().as_slice())
                    .map(<[u8]>::to_vec)
                    .unwrap_or(k);
                return Some(Ok((rec, v)));
            }
            let start = self.next.take()?;
            match self.fetch(start) {
                Ok((kvs, revision, more)) => {
                    if self.at.is_none() {
                        self.at = Some(revision);
                    }
                    if more && let Some((last, _)) = kvs.last() {
                        let mut after = last.clone();
                        after.push(0);
                        self.next = Some(after);
                    }
                    self.page = kvs.into_iter();
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Feeds `tx` with every mapreg revision `meta/revision` takes, for as long as the engine
/// lives. Each round reads the key (so nothing missed while disconnected is lost), then
/// watches it from the etcd revision after that read; a broken or cancelled watch (a member
/// gone, etcd's own compaction) starts a new round after a short pause.
async fn follow_revision(inner: Arc<Inner>, tx: tokio::sync::watch::Sender<u64>) {
    let key = inner.keys.revision();
    let publish = |value: &[u8]| match parse_revision(value, "meta/revision") {
        Ok(r) => {
            tx.send_if_modified(|seen| {
                let newer = r > *seen;
                if newer {
                    *seen = r;
                }
                newer
            });
        }
        Err(e) => tracing::warn!(error = %e, "etcd: ignoring an unreadable meta/revision"),
    };
    let mut pause = Duration::from_millis(100);
    loop {
        if tx.is_closed() {
            return;
        }
        let mut client = inner.client.clone();
        let read = tokio::time::timeout(READ_TIMEOUT, client.get(key.clone(), None)).await;
        let from = match read {
            Ok(Ok(r)) => {
                if let Some(kv) = r.kvs().first() {
                    publish(kv.value());
                }
                r.header().map_or(0, |h| h.revision()) + 1
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "etcd: cannot read the revision; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                tracing::debug!("etcd: reading the revision timed out; retrying");
                continue;
            }
        };
        let opts = WatchOptions::new()
            .with_start_revision(from)
            .with_progress_notify();
        let mut stream =
            match tokio::time::timeout(READ_TIMEOUT, client.watch(key.clone(), Some(opts))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "etcd: cannot watch the revision; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => continue,
            };
        pause = Duration::from_millis(100);
        loop {
            match stream.message().await {
                Ok(Some(r)) => {
                    for event in r.events() {
                        if let Some(kv) = event.kv() {
                            publish(kv.value());
                        }
                    }
                    if r.canceled() {
                        tracing::debug!(
                            reason = r.cancel_reason(),
                            compact_revision = r.compact_revision(),
                            "etcd: the revision watch was cancelled; reading it again"
                        );
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "etcd: the revision watch broke; reconnecting");
                    break;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> EtcdUrl {
        EtcdUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn err(url: &str) -> String {
        match EtcdUrl::parse(url) {
            Ok(u) => panic!("{url} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_members_and_prefix() {
        assert_eq!(
            ok("etcd://127.0.0.1:2379"),
            EtcdUrl {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: "/mapreg/".into()
            }
        );
        let u = ok("etcd://a:1,b.example:2,[::1]:3/team/reg");
        assert_eq!(u.endpoints, vec!["a:1", "b.example:2", "[::1]:3"]);
        assert_eq!(u.prefix, "/team/reg/");
        assert_eq!(ok("etcd://a:1/x/").prefix, "/x/");
        assert_eq!(ok("etcd://a:1/").prefix, "/mapreg/");
        assert_eq!(ok("etcd://a:1//x//").prefix, "/x/");
        assert_eq!(ok("etcd://a:1,b:2/p").to_string(), "etcd://a:1,b:2/p/");
        assert_eq!(ok(&ok("etcd://a:1/p").to_string()), ok("etcd://a:1/p"));
    }

    #[test]
    fn refuses_bad_urls_saying_why() {
        for (url, why) in [
            ("http://a:1", "does not start with etcd://"),
            ("etcd://", "names no HOST:PORT"),
            ("etcd:///p", "names no HOST:PORT"),
            ("etcd://a", "has no :PORT"),
            ("etcd://a:1,b", "\"b\" has no :PORT"),
            ("etcd://:1", "has no host"),
            ("etcd://a:x", "not a number"),
            ("etcd://a:0", "not a number"),
            ("etcd://a:70000", "not a number"),
            ("etcd://a:1,,b:2", "has no :PORT"),
            ("etcd://::1:2", "IPv6"),
            ("etcd://a:1/p q", "prefix"),
        ] {
            let e = err(url);
            assert!(e.contains(why), "{url}: {e:?} does not say {why:?}");
        }
    }

    #[test]
    fn log_keys_sort_as_revisions() {
        let k = Keys {
            prefix: b"/p/".to_vec(),
        };
        assert!(k.log(9) < k.log(10));
        assert!(k.log(10) < k.log_end(10));
        assert!(k.log_end(10) < k.log(11));
        assert!(k.log(u64::MAX) < prefix_end(&k.log_prefix()));
        assert_eq!(log_revision(&k, &k.log(42)).unwrap(), 42);
        assert_eq!(prefix_end(b"/p/rec/"), b"/p/rec0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }

    #[test]
    fn compaction_points_compare_as_numbers() {
        let a = encode_compact(9, &[1; 32]);
        assert!(a.as_slice() < format!("{:020}", 10).as_bytes());
        assert!(a.as_slice() >= format!("{:020}", 9).as_bytes());
        assert_eq!(decode_compact(&a).unwrap(), (9, [1; 32]));
        assert!(decode_compact(b"9").is_err());
    }

    #[test]
    fn keeps_the_last_entry_per_key() {
        let recs = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
            (b"a".to_vec(), Some(b"3".to_vec())),
        ];
        let kept: Vec<_> = last_per_key(&recs).into_iter().cloned().collect();
        assert_eq!(
            kept,
            vec![(b"b".to_vec(), None), (b"a".to_vec(), Some(b"3".to_vec()))]
        );
    }
}
