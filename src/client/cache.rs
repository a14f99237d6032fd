//! `MappingCache`: the library a Rust gateway embeds to route requests without a network hop.
//!
//! It subscribes to `mapreg.v1.ChangeFeed/Watch`, keeps an in-memory replica of the domain
//! names, API mappings, APIs and stages it may see, and resolves `host` + `path` locally with
//! the same [`resolve`](crate::domain::resolve) module as the server's `ResolveRoute`.
//!
//! - **Exact**: the replica is a snapshot at revision R plus every change set after R, so it is
//!   always the registry's state at some revision ([`CacheStatus::revision`]).
//! - **Resilient**: on a broken stream it reconnects with jittered exponential backoff and
//!   resumes from its last revision with its `store_id`; on `OUT_OF_RANGE` (the log was
//!   compacted past it, or the data dir was replaced) it takes a fresh snapshot. Until the new
//!   snapshot is complete the old replica keeps answering; then it is swapped in atomically.
//! - **Observable**: [`MappingCache::status`] says which revision it reflects and whether it is
//!   connected and in sync; [`MappingCache::subscribe`] tells of every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::{Code, Request};

use crate::domain::resolve;
use crate::pb::change_feed_client::ChangeFeedClient;
use crate::pb::watch_response::Kind;
use crate::pb::{
    Api, ApiMapping, DomainName, Event, EventType, Resource, Stage, WatchRequest, resource,
};

/// How a [`MappingCache`] connects.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// The server, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
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
}

impl CacheOptions {
    /// Options for `endpoint` with defaults: no token, all domains, backoff 50 ms .. 5 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        CacheOptions {
            endpoint: endpoint.into(),
            token: None,
            domain_names: Vec::new(),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            progress_interval_seconds: 5,
        }
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
}

/// The answer of [`MappingCache::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The domain that matched: the host itself or its `*.` wildcard.
    pub domain_name: String,
    /// The mapping that serves the request.
    pub mapping: ApiMapping,
    /// Its API, if the replica has it.
    pub api: Option<Api>,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
}

/// Why [`MappingCache::resolve`] found no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The host or path is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No domain name matches the host (API Gateway: 403 Forbidden).
    #[error("no custom domain name matches host {0}")]
    NoDomain(String),
    /// The domain has no mapping for the path and no root mapping (API Gateway: 404).
    #[error("no API mapping of {domain} matches path {path}")]
    NoMapping {
        /// The matched domain.
        domain: String,
        /// The normalized path.
        path: String,
    },
}

/// The replica: the registry's state at one revision.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    domains: HashMap<String, DomainName>,
    /// domain -> api_mapping_id -> mapping.
    mappings: HashMap<String, HashMap<String, ApiMapping>>,
    /// domain -> key -> api_mapping_id.
    keys: HashMap<String, HashMap<String, String>>,
    /// domain -> number of multi-level keys (they switch matching to raw prefixes).
    multi_level: HashMap<String, usize>,
    apis: HashMap<String, Api>,
    /// (api_id, stage_name) -> stage.
    stages: BTreeMap<(String, String), Stage>,
}

impl Replica {
    fn put(&mut self, r: resource::Resource) {
        match r {
            resource::Resource::Api(a) => {
                self.apis.insert(a.api_id.clone(), a);
            }
            resource::Resource::Stage(s) => {
                self.stages
                    .insert((s.api_id.clone(), s.stage_name.clone()), s);
            }
            resource::Resource::DomainName(d) => {
                self.domains.insert(d.domain_name.clone(), d);
            }
            resource::Resource::ApiMapping(m) => {
                let domain = m.domain_name.clone();
                let by_id = self.mappings.entry(domain.clone()).or_default();
                let keys = self.keys.entry(domain.clone()).or_default();
                let multi = self.multi_level.entry(domain.clone()).or_default();
                if let Some(old) = by_id.get(&m.api_mapping_id) {
                    keys.remove(&old.api_mapping_key);
                    if old.api_mapping_key.contains('/') {
                        *multi -= 1;
                    }
                }
                if m.api_mapping_key.contains('/') {
                    *multi += 1;
                }
                keys.insert(m.api_mapping_key.clone(), m.api_mapping_id.clone());
                by_id.insert(m.api_mapping_id.clone(), m);
            }
        }
    }

    fn delete(&mut self, r: resource::Resource) {
        match r {
            resource::Resource::Api(a) => {
                self.apis.remove(&a.api_id);
            }
            resource::Resource::Stage(s) => {
                self.stages.remove(&(s.api_id, s.stage_name));
            }
            resource::Resource::DomainName(d) => {
                self.domains.remove(&d.domain_name);
            }
            resource::Resource::ApiMapping(m) => {
                if let Some(by_id) = self.mappings.get_mut(&m.domain_name)
                    && let Some(old) = by_id.remove(&m.api_mapping_id)
                    && let Some(keys) = self.keys.get_mut(&m.domain_name)
                {
                    keys.remove(&old.api_mapping_key);
                    if old.api_mapping_key.contains('/')
                        && let Some(n) = self.multi_level.get_mut(&m.domain_name)
                    {
                        *n = n.saturating_sub(1);
                    }
                    if by_id.is_empty() {
                        self.mappings.remove(&m.domain_name);
                        self.keys.remove(&m.domain_name);
                        self.multi_level.remove(&m.domain_name);
                    }
                }
            }
        }
    }

    fn apply(&mut self, e: Event) {
        let Some(r) = e.resource.and_then(|r| r.resource) else {
            return;
        };
        if e.r#type == EventType::Delete as i32 {
            self.delete(r);
        } else {
            self.put(r);
        }
    }

    /// Every mapping of `domain`, in key order.
    pub fn mappings_of(&self, domain: &str) -> Vec<ApiMapping> {
        let mut v: Vec<ApiMapping> = self
            .mappings
            .get(domain)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.api_mapping_key.cmp(&b.api_mapping_key));
        v
    }

    /// Every domain name, sorted.
    pub fn domain_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.domains.keys().cloned().collect();
        v.sort();
        v
    }

    /// An API by id.
    pub fn api(&self, api_id: &str) -> Option<&Api> {
        self.apis.get(api_id)
    }

    /// Number of APIs, stages, domain names and API mappings held.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.apis.len(),
            self.stages.len(),
            self.domains.len(),
            self.mappings.values().map(HashMap::len).sum(),
        )
    }

    /// Resolves like the server's `ResolveRoute`.
    pub fn resolve(&self, host: &str, path: &str) -> Result<Resolution, ResolveError> {
        let host =
            resolve::normalize_host(host).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        let path =
            resolve::normalize_path(path).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        let found = resolve::resolve_host::<_, std::convert::Infallible>(
            &host,
            &path,
            |d| {
                Ok(self
                    .domains
                    .contains_key(d)
                    .then(|| self.multi_level.get(d).is_some_and(|n| *n > 0)))
            },
            |d, k| Ok(self.keys.get(d).and_then(|ks| ks.get(k))),
        );
        let found = match found {
            Ok(Ok(found)) => found,
            Ok(Err(resolve::Miss::NoMapping { domain })) => {
                return Err(ResolveError::NoMapping { domain, path });
            }
            Ok(Err(resolve::Miss::NoDomain)) => return Err(ResolveError::NoDomain(host)),
            Err(never) => match never {},
        };
        let mapping = self
            .mappings
            .get(&found.domain)
            .and_then(|m| m.get(found.route.target))
            .cloned()
            .ok_or_else(|| ResolveError::NoMapping {
                domain: found.domain.clone(),
                path: path.clone(),
            })?;
        let api = self.apis.get(&mapping.api_id).cloned();
        Ok(Resolution {
            domain_name: found.domain,
            mapping,
            api,
            remaining_path: found.route.remaining_path,
        })
    }
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
}

impl Drop for MappingCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MappingCache {
    /// Starts following the server at `options.endpoint` in a background task (on the current
    /// tokio runtime). Returns at once; see [`MappingCache::wait_in_sync`].
    pub fn start(options: CacheOptions) -> MappingCache {
        let (status, _) = watch::channel(CacheStatus::default());
        let shared = Arc::new(Shared {
            replica: RwLock::new(Arc::new(Replica::default())),
            status,
        });
        let task = tokio::spawn(follow(shared.clone(), options));
        MappingCache { shared, task }
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
        snapshot: true,
    };
    let mut failures: u32 = 0;
    loop {
        match stream_once(&shared, &options, &mut pos, &mut failures).await {
            Ok(()) => {}
            Err(status) if status.code() == Code::OutOfRange => {
                tracing::info!(error = %status.message(), "mapping cache must re-snapshot");
                pos.snapshot = true;
                pos.store_id.clear();
                // Out of sync until the new snapshot is complete (the old replica still
                // answers meanwhile).
                set_status(&shared, |s| {
                    s.resnapshots += 1;
                    s.in_sync = false;
                });
                continue;
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), error = %status.message(), "mapping cache stream broke");
            }
        }
        set_status(&shared, |s| {
            s.in_sync = false;
            s.reconnects += 1;
        });
        failures = failures.saturating_add(1);
        let exp = options
            .min_backoff
            .saturating_mul(1u32 << failures.min(16))
            .min(options.max_backoff);
        let jittered = rand::thread_rng().gen_range(Duration::ZERO..=exp);
        tokio::time::sleep(jittered.max(options.min_backoff / 2)).await;
    }
}

/// One Watch stream, until it breaks. Returns the error that ended it.
async fn stream_once(
    shared: &Shared,
    options: &CacheOptions,
    pos: &mut Position,
    failures: &mut u32,
) -> Result<(), tonic::Status> {
    let channel = Endpoint::from_shared(options.endpoint.clone())
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
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
                set_status(shared, |s| {
                    s.revision = msg.revision;
                    s.in_sync = true;
                });
            }
            Some(Kind::Progress(_)) if !pos.snapshot && msg.revision > pos.revision => {
                pos.revision = msg.revision;
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

    fn mapping(domain: &str, id: &str, key: &str) -> resource::Resource {
        resource::Resource::ApiMapping(ApiMapping {
            domain_name: domain.into(),
            api_mapping_id: id.into(),
            api_mapping_key: key.into(),
            api_id: "api1".into(),
            stage: "test".into(),
            ..Default::default()
        })
    }

    fn domain(d: &str) -> resource::Resource {
        resource::Resource::DomainName(DomainName {
            domain_name: d.into(),
            ..Default::default()
        })
    }

    #[test]
    fn replica_resolves_and_follows_key_changes() {
        let mut r = Replica::default();
        r.put(domain("api.example.com"));
        r.put(domain("*.example.com"));
        r.put(mapping("api.example.com", "m1", "orders"));
        r.put(mapping("*.example.com", "m2", ""));
        let x = r.resolve("API.example.com:443", "/orders/1").unwrap();
        assert_eq!(
            (x.mapping.api_mapping_id.as_str(), x.remaining_path.as_str()),
            ("m1", "/1")
        );
        assert_eq!(
            r.resolve("b.example.com", "/x").unwrap().domain_name,
            "*.example.com"
        );
        // Moving the key frees the old one.
        r.put(mapping("api.example.com", "m1", "shop"));
        assert!(matches!(
            r.resolve("api.example.com", "/orders/1"),
            Err(ResolveError::NoMapping { .. })
        ));
        assert_eq!(
            r.resolve("api.example.com", "/shop")
                .unwrap()
                .remaining_path,
            "/"
        );
        r.delete(mapping("api.example.com", "m1", "shop"));
        assert!(r.resolve("api.example.com", "/shop").is_err());
        assert!(matches!(
            r.resolve("nothing.test", "/"),
            Err(ResolveError::NoDomain(_))
        ));
    }
}
