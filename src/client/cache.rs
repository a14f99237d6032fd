//! `MappingCache`: the library a Rust gateway embeds to route requests without a network hop.
//!
//! It subscribes to `mapreg.v1.ChangeFeed/Watch`, keeps an in-memory replica of the domain
//! names, API mappings, APIs and stages it may see, and resolves `host` + `path` locally with
//! the same [`resolve`](crate::domain::resolve) module as the server's `ResolveRoute`.
//!
//! - **Exact**: the replica is a snapshot at revision R plus every change set after R, so it is
//!   always the registry's state at some revision ([`CacheStatus::revision`]).
//! - **Resilient**: on a broken stream or `UNAVAILABLE` it reconnects and resumes from its last
//!   revision with its `store_id` and history hash (`start_revision` = last applied + 1,
//!   `resume_history_hash`), so nothing is skipped and nothing applied twice. Given several
//!   endpoints ([`CacheOptions::endpoints`]), it moves on to the next one at once and resumes
//!   there ([`super::failover`]): any node of the same store serves the resume. Once every
//!   endpoint failed in a row it waits, with jittered exponential backoff, before the next
//!   round. On `OUT_OF_RANGE` (the log was compacted past it, or the data dir was replaced) it
//!   takes a fresh snapshot. Until the new snapshot is complete the old replica keeps
//!   answering; then it is swapped in atomically.
//! - **Observable**: [`MappingCache::status`] says which revision it reflects and whether it is
//!   connected and in sync; [`MappingCache::subscribe`] tells of every change; and the
//!   registry is told too ([`super::report`]: `get-gateways`, `wait-for-gateways`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

pub use crate::domain::state::{Resolution, ResolveError, State as Replica};
use crate::pb::change_feed_client::ChangeFeedClient;
use crate::pb::watch_response::Kind;
use crate::pb::{Resource, WatchRequest, resource};

/// How a [`MappingCache`] connects.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// The servers, tried in this order, e.g. `http://127.0.0.1:50051` or
    /// `https://registry:50051` (TLS, never plaintext; see [`connect`](super::connect)); several
    /// nodes of one store, or one server under several names ([`super::failover`]).
    pub endpoints: Vec<String>,
    /// CA bundle, client certificate, `no_verify_ssl`, for an `https://` endpoint.
    pub tls: super::connect::TlsOptions,
    /// Bearer token (a `gateway` token sees every account).
    pub token: Option<String>,
    /// Only these domain names (empty: all).
    pub domain_names: Vec<String>,
    /// First reconnect delay; doubles per failure up to `max_backoff`, with full jitter.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Quiet time after which the server sends progress (keeps `revision` current).
    pub progress_interval_seconds: u32,
    /// The id this gateway reports its status under (`Gateways/ReportStatus`); default the
    /// host name and the process id.
    pub gateway_id: String,
    /// How often the status is reported when nothing changes (default 30 s; the registry
    /// forgets a gateway after 5 minutes of silence). None: never report.
    pub report_interval: Option<Duration>,
}

impl CacheOptions {
    /// Options with defaults (no token, all domains, backoff 50 ms .. 5 s) for the endpoint
    /// list `endpoints`: one endpoint, or several separated by commas (`a,b,c`, as
    /// `--endpoint` and `MAPREG_ENDPOINT` take them), tried in that order.
    pub fn new(endpoints: impl AsRef<str>) -> Self {
        CacheOptions {
            endpoints: super::failover::parse_endpoints(endpoints.as_ref()),
            tls: Default::default(),
            token: None,
            domain_names: Vec::new(),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            progress_interval_seconds: 5,
            gateway_id: super::report::default_gateway_id(),
            report_interval: Some(Duration::from_secs(30)),
        }
    }

    /// These options, following `endpoints` (tried in this order) instead.
    pub fn with_endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// These options, reporting under `gateway_id`.
    pub fn with_gateway_id(mut self, gateway_id: impl Into<String>) -> Self {
        self.gateway_id = gateway_id.into();
        self
    }
}

/// What the cache reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// The registry revision the replica is the state of (0: no snapshot yet).
    pub revision: u64,
    /// The store the replica comes from.
    pub store_id: String,
    /// Connected, snapshot complete, and following live changes.
    pub in_sync: bool,
    /// Re-snapshots taken after OUT_OF_RANGE (compaction or a replaced data dir).
    pub resnapshots: u64,
    /// Reconnects after a broken stream.
    pub reconnects: u64,
    /// The endpoint the cache follows now, or tried last (empty: none tried yet).
    pub endpoint: String,
    /// The most recent error (refused credentials, unreachable server, the reason for a
    /// re-snapshot); kept after the cache recovers; empty: none yet.
    pub last_error: String,
}

struct Shared {
    replica: RwLock<Arc<Replica>>,
    status: watch::Sender<CacheStatus>,
}

/// A gateway-side replica of the registry; see the module documentation. Dropping it stops
/// its background task.
pub struct MappingCache {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl Drop for MappingCache {
    fn drop(&mut self) {
        self.task.abort();
        self.reporter.abort();
    }
}

impl MappingCache {
    /// Starts following the servers of `options.endpoints` in a background task (on the current
    /// tokio runtime). Returns at once; see [`MappingCache::wait_in_sync`].
    pub fn start(options: CacheOptions) -> MappingCache {
        let (status, _) = watch::channel(CacheStatus::default());
        let shared = Arc::new(Shared {
            replica: RwLock::new(Arc::new(Replica::default())),
            status,
        });
        let reporter = tokio::spawn(super::report::run(
            shared.status.subscribe(),
            options.clone(),
        ));
        let task = tokio::spawn(follow(shared.clone(), options));
        MappingCache {
            shared,
            task,
            reporter,
        }
    }

    /// Resolves `host` + `path` against the replica, in memory.
    pub fn resolve(&self, host: &str, path: &str) -> Result<Resolution, ResolveError> {
        match self.shared.replica.read() {
            Ok(r) => r.resolve(host, path),
            Err(p) => p.into_inner().resolve(host, path),
        }
    }

    /// The current replica (cheap: shared until the next change).
    pub fn replica(&self) -> Arc<Replica> {
        match self.shared.replica.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What the replica reflects now.
    pub fn status(&self) -> CacheStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver told of every change of [`CacheStatus`] (each applied revision).
    pub fn subscribe(&self) -> watch::Receiver<CacheStatus> {
        self.shared.status.subscribe()
    }

    /// Waits until the cache is in sync at `revision` or later; false on timeout.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| s.in_sync && s.revision >= revision),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the cache is in sync; false on timeout.
    pub async fn wait_in_sync(&self, timeout: Duration) -> bool {
        self.wait_for_revision(0, timeout).await
    }
}

/// Where the follower resumes.
struct Position {
    revision: u64,
    store_id: String,
    /// The history hash at `revision` (SPEC.md 8.3), sent on resume so that a restored or
    /// rolled-back store is noticed (`STORE_CHANGED`) instead of followed; empty if unknown.
    history_hash: Vec<u8>,
    /// Take a snapshot (start_revision 0) on the next connect.
    snapshot: bool,
}

fn set_status(shared: &Shared, f: impl FnOnce(&mut CacheStatus)) {
    shared.status.send_modify(f);
}

fn swap(shared: &Shared, replica: Replica) {
    let new = Arc::new(replica);
    match shared.replica.write() {
        Ok(mut r) => *r = new,
        Err(p) => *p.into_inner() = new,
    }
}

/// Copy-on-write update of the shared replica.
fn update(shared: &Shared, f: impl FnOnce(&mut Replica)) {
    let mut guard = match shared.replica.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f(Arc::make_mut(&mut guard));
}

async fn follow(shared: Arc<Shared>, options: CacheOptions) {
    let mut pos = Position {
        revision: 0,
        store_id: String::new(),
        history_hash: Vec::new(),
        snapshot: true,
    };
    // Consecutive failed attempts (reset by any message); the endpoint to try next.
    let mut failures: u32 = 0;
    let mut next: usize = 0;
    loop {
        let Some(endpoint) = options.endpoints.get(next % options.endpoints.len().max(1)) else {
            tracing::error!("mapping cache has no endpoint to follow");
            set_status(&shared, |s| s.last_error = "no endpoint given".into());
            return;
        };
        set_status(&shared, |s| {
            if s.endpoint != *endpoint {
                s.endpoint = endpoint.clone();
            }
        });
        match stream_once(&shared, endpoint, &options, &mut pos, &mut failures).await {
            Ok(()) => {}
            Err(status) if status.code() == Code::OutOfRange => {
                tracing::info!(error = %status.message(), "mapping cache must re-snapshot");
                pos.snapshot = true;
                pos.store_id.clear();
                pos.history_hash.clear();
                // Out of sync until the new snapshot is complete (the old replica still
                // answers meanwhile).
                set_status(&shared, |s| {
                    s.resnapshots += 1;
                    s.in_sync = false;
                    s.last_error = format!("re-snapshot: {}", status.message());
                });
                continue;
            }
            Err(status) => {
                let why = match super::connect::explain_status(endpoint, &status) {
                    Some(why) => {
                        tracing::warn!("mapping cache cannot connect: {why}");
                        why
                    }
                    None => {
                        tracing::debug!(%endpoint, code = ?status.code(), error = %status.message(), "mapping cache stream broke");
                        format!("{endpoint}: {:?}: {}", status.code(), status.message())
                    }
                };
                set_status(&shared, |s| s.last_error = why);
            }
        }
        set_status(&shared, |s| {
            s.in_sync = false;
            s.reconnects += 1;
        });
        failures = failures.saturating_add(1);
        // The next endpoint; with one endpoint, the same one again. Whatever failed (a refused
        // connection, UNAVAILABLE, a broken stream), the resume position is the same: any node
        // of the store serves it (SPEC.md 8.2).
        next = (next + 1) % options.endpoints.len();
        if let Some(delay) = backoff(&options, failures) {
            tokio::time::sleep(delay).await;
        }
    }
}

/// How long to wait before the next attempt after `failures` failed attempts in a row: none
/// while endpoints not yet tried in this round remain (failover is immediate); after each full
/// round, full jitter over `min_backoff` × 2^rounds (capped at `max_backoff`), at least half
/// of `min_backoff`.
fn backoff(options: &CacheOptions, failures: u32) -> Option<Duration> {
    let n = u32::try_from(options.endpoints.len().max(1)).unwrap_or(u32::MAX);
    if n > 1 && failures % n != 0 {
        return None;
    }
    let rounds = failures / n;
    let exp = options
        .min_backoff
        .saturating_mul(1u32 << rounds.min(16))
        .min(options.max_backoff);
    let jittered = rand::thread_rng().gen_range(Duration::ZERO..=exp);
    Some(jittered.max(options.min_backoff / 2))
}

/// One Watch stream, until it breaks. Returns the error that ended it.
async fn stream_once(
    shared: &Shared,
    endpoint: &str,
    options: &CacheOptions,
    pos: &mut Position,
    failures: &mut u32,
) -> Result<(), tonic::Status> {
    let channel = super::connect::endpoint(endpoint, &options.tls)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        // Pings find a server that vanished without closing the connection.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = ChangeFeedClient::new(channel);
    let mut req = Request::new(WatchRequest {
        start_revision: if pos.snapshot { 0 } else { pos.revision + 1 },
        kinds: Vec::new(),
        domain_names: options.domain_names.clone(),
        progress_interval_seconds: options.progress_interval_seconds,
        store_id: if pos.snapshot {
            String::new()
        } else {
            pos.store_id.clone()
        },
        resume_history_hash: if pos.snapshot {
            Vec::new()
        } else {
            pos.history_hash.clone()
        },
    });
    if let Some(t) = &options.token {
        let v = MetadataValue::try_from(format!("Bearer {t}"))
            .map_err(|_| tonic::Status::invalid_argument("token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", v);
    }
    let mut stream = client.watch(req).await?.into_inner();
    // A snapshot in progress is built aside; the old replica answers until it completes.
    let mut building: Option<Replica> = if pos.snapshot {
        Some(Replica::default())
    } else {
        None
    };
    if !pos.snapshot {
        set_status(shared, |s| s.in_sync = true);
    }
    while let Some(msg) = stream.message().await? {
        *failures = 0;
        match msg.kind {
            Some(Kind::Snapshot(s)) => {
                if let Some(b) = building.as_mut() {
                    for r in s.resources {
                        if let Some(r) = r.resource {
                            b.put(r);
                        }
                    }
                }
            }
            Some(Kind::SnapshotComplete(_)) => {
                if let Some(b) = building.take() {
                    swap(shared, b);
                }
                pos.snapshot = false;
                pos.revision = msg.revision;
                pos.history_hash = msg.history_hash.clone();
                pos.store_id = msg.store_id.clone();
                set_status(shared, |s| {
                    s.revision = msg.revision;
                    s.store_id = msg.store_id;
                    s.in_sync = true;
                });
            }
            Some(Kind::ChangeSet(cs)) => {
                if pos.snapshot || msg.revision <= pos.revision {
                    continue; // not expected from a correct server; never apply twice
                }
                update(shared, |r| {
                    for e in cs.events {
                        r.apply(e);
                    }
                });
                pos.revision = msg.revision;
                pos.history_hash = msg.history_hash.clone();
                set_status(shared, |s| {
                    s.revision = msg.revision;
                    s.in_sync = true;
                });
            }
            Some(Kind::Progress(_)) if !pos.snapshot && msg.revision >= pos.revision => {
                pos.revision = msg.revision;
                pos.history_hash = msg.history_hash.clone();
                set_status(shared, |s| {
                    s.revision = msg.revision;
                    s.in_sync = true;
                });
            }
            Some(Kind::Progress(_)) | None => {}
        }
    }
    Ok(())
}

/// A resource's kind and identity, for comparing replicas in tests and tools.
pub fn identity(r: &Resource) -> Option<String> {
    Some(match r.resource.as_ref()? {
        resource::Resource::Api(a) => format!("api/{}", a.api_id),
        resource::Resource::Stage(s) => format!("stage/{}/{}", s.api_id, s.stage_name),
        resource::Resource::DomainName(d) => format!("domain/{}", d.domain_name),
        resource::Resource::ApiMapping(m) => {
            format!("mapping/{}/{}", m.domain_name, m.api_mapping_id)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_and_failover_backoff() {
        let o = CacheOptions::new("http://a:1, https://b:2");
        assert_eq!(o.endpoints, vec!["http://a:1", "https://b:2"]);
        // Two endpoints: the second is tried at once, a full round of failures waits.
        assert_eq!(backoff(&o, 1), None);
        assert!(backoff(&o, 2).is_some());
        assert_eq!(backoff(&o, 3), None);
        let long = backoff(&o, 40).expect("a full round");
        assert!(long <= o.max_backoff, "{long:?}");
        // One endpoint: every failure waits.
        let one = CacheOptions::new("http://a:1");
        assert!(backoff(&one, 1).is_some());
        assert!(backoff(&one, 2).is_some());
        let o = one.with_endpoints(["x:1", "y:2", "z:3"]);
        assert_eq!(o.endpoints.len(), 3);
        assert_eq!(backoff(&o, 2), None);
        assert!(backoff(&o, 3).is_some());
    }
}
