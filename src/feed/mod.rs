//! The change feed: every committed revision, fanned out to watchers in order, after it is
//! durable.
//!
//! How the pieces fit (the design of etcd's and Xline's watch, on one node):
//!
//! - The writer thread calls [`Hub::publish`] after each group's flush, in revision order. The
//!   hub first raises the *durable* revision, then puts the revision's events on an in-memory
//!   broadcast ring. Sending never waits for a watcher.
//! - A watcher ([`watch`]) subscribes to the ring, then reads the durable revision `D`: every
//!   revision up to `D` is in the persisted log, every later one reaches the ring after the
//!   subscription. It replays the log from its start revision to `D`, then follows the ring.
//! - A watcher that falls behind (its client reads slowly and the ring overtakes it) is told so
//!   by the ring; it goes back to the log, catches up, and rejoins the ring. Nobody else slows
//!   down, and nothing is lost while the revisions it needs are still in the log.
//! - `start_revision = 0` first streams a snapshot ([`snapshot`]) of the current durable
//!   version of the state, at its revision `R0` (an immutable version: writes go on meanwhile),
//!   then `snapshot_complete` at `R0`, then every revision after `R0`.
//! - [`compaction`] keeps the last `watch_history` revisions in the log.

pub mod compaction;
pub mod snapshot;
pub mod watch;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tokio::sync::{broadcast, watch as tokio_watch};

use crate::domain::validate;
use crate::error::{Error, Result};
use crate::pb::{Event, Resource, ResourceKind, resource};
use crate::store::{Applied, Registry, Scope};

/// Revisions kept in memory for live watchers; a watcher further behind reads the log.
pub const LIVE_RING: usize = 4096;

/// One committed revision and its events, as published to live watchers.
#[derive(Debug)]
pub struct Revision {
    /// The revision.
    pub revision: u64,
    /// Its events, in commit order.
    pub events: Vec<Event>,
    /// Its history hash (SPEC.md 8.3).
    pub history_hash: Option<crate::store::history::Hash>,
    /// Who made it.
    pub audit: Arc<crate::audit::Audit>,
}

/// The fan-out point between the writer thread and every watcher.
pub struct Hub {
    registry: Arc<Registry>,
    durable: tokio_watch::Sender<u64>,
    live: broadcast::Sender<Arc<Revision>>,
    closed: tokio_watch::Sender<bool>,
    /// Times a watcher read revisions from the log (`mapreg_watch_catchup_total`).
    catchups: std::sync::atomic::AtomicU64,
}

impl Hub {
    /// A hub for `registry`, whose current version is durable.
    pub fn new(registry: Arc<Registry>) -> Arc<Hub> {
        let (durable, _) = tokio_watch::channel(registry.revision());
        let (live, _) = broadcast::channel(LIVE_RING);
        let (closed, _) = tokio_watch::channel(false);
        Arc::new(Hub {
            registry,
            durable,
            live,
            closed,
            catchups: Default::default(),
        })
    }

    /// Publishes durable writes, which must come in revision order, to the watchers, after
    /// the registry's current version includes them. Never waits for a watcher.
    pub fn publish(&self, committed: &[Applied]) {
        for c in committed {
            // Durable first: a watcher that reads revision D after subscribing gets every
            // revision above D from the ring.
            self.durable.send_replace(c.revision);
            // For `mapreg-bench fanout`: the moment a revision is committed and published,
            // on the wall clock, so commit -> delivered can be measured from another process.
            tracing::trace!(
                target: "mapreg::feed::publish",
                revision = c.revision,
                unix_ns = unix_ns(),
                "published"
            );
            let history_hash = self.registry.history_hash(c.revision).ok().flatten();
            let _ = self.live.send(Arc::new(Revision {
                revision: c.revision,
                events: c.events.clone(),
                history_hash,
                audit: c.audit.clone(),
            }));
        }
    }

    /// The last revision that is durable and published.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// A receiver told of every newly durable revision.
    pub fn durable_updates(&self) -> tokio_watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Ends every watch stream with UNAVAILABLE (shutdown); new watches are refused.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// A receiver that turns true on [`Hub::close`].
    pub fn closed(&self) -> tokio_watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The registry underneath.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Open watch streams (each holds one subscription to the live ring).
    pub fn watchers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Times a watcher read revisions from the persisted log: resuming below the durable
    /// revision, or after falling behind the live ring.
    pub fn catchups(&self) -> u64 {
        self.catchups.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_catchup(&self) {
        self.catchups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Revision>> {
        self.live.subscribe()
    }
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What a watcher asked to see, and what its account may see.
#[derive(Debug, Clone)]
pub struct Filter {
    kinds: HashSet<ResourceKind>,
    domains: HashSet<String>,
    scope: Scope,
}

impl Filter {
    /// Validates the request's `kinds` and `domain_names` (lower-cased; a wildcard domain is
    /// matched by its own name, `*.example.com`).
    pub fn new(kinds: &[i32], domain_names: &[String], scope: Scope) -> Result<Filter> {
        let mut ks = HashSet::new();
        for &k in kinds {
            match ResourceKind::try_from(k) {
                Ok(ResourceKind::Unspecified) | Err(_) => {
                    return Err(Error::invalid(
                        "kinds",
                        format!(
                            "kinds contains {k}, which is not a resource kind; use \
                             RESOURCE_KIND_API, RESOURCE_KIND_STAGE, RESOURCE_KIND_DOMAIN_NAME \
                             or RESOURCE_KIND_API_MAPPING"
                        ),
                    ));
                }
                Ok(kind) => {
                    ks.insert(kind);
                }
            }
        }
        let mut domains = HashSet::new();
        for d in domain_names {
            domains.insert(validate::normalize_domain_name("domain_names", d)?);
        }
        Ok(Filter {
            kinds: ks,
            domains,
            scope,
        })
    }

    /// Whether the watcher wants records of `kind` at all.
    pub fn wants(&self, kind: ResourceKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// The domains the watcher is limited to, sorted; None: every domain.
    pub fn domain_list(&self) -> Option<Vec<String>> {
        if self.domains.is_empty() {
            return None;
        }
        let sorted: BTreeSet<&String> = self.domains.iter().collect();
        Some(sorted.into_iter().cloned().collect())
    }

    /// Whether the watcher sees `r`.
    pub fn matches(&self, r: &Resource) -> bool {
        let Some(r) = r.resource.as_ref() else {
            return false;
        };
        let (kind, account, domain) = match r {
            resource::Resource::Api(a) => (ResourceKind::Api, &a.account_id, None),
            resource::Resource::Stage(s) => (ResourceKind::Stage, &s.account_id, None),
            resource::Resource::DomainName(d) => (
                ResourceKind::DomainName,
                &d.account_id,
                Some(&d.domain_name),
            ),
            resource::Resource::ApiMapping(m) => (
                ResourceKind::ApiMapping,
                &m.account_id,
                Some(&m.domain_name),
            ),
        };
        self.sees(kind, account, domain.map(String::as_str))
    }

    /// Whether the watcher sees a record of `kind` in `account` (on `domain`, for domain names
    /// and mappings), without building it.
    pub fn sees(&self, kind: ResourceKind, account: &str, domain: Option<&str>) -> bool {
        if !self.wants(kind) {
            return false;
        }
        if let Some(d) = domain
            && !self.domains.is_empty()
            && !self.domains.contains(d)
        {
            return false;
        }
        self.scope.sees(account)
    }

    /// The events of a change set this watcher sees, in order.
    pub fn events(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.resource.as_ref().is_some_and(|r| self.matches(r)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{Api, ApiMapping};

    fn api(account: &str) -> Resource {
        Resource {
            resource: Some(resource::Resource::Api(Api {
                account_id: account.into(),
                ..Default::default()
            })),
        }
    }

    fn mapping(account: &str, domain: &str) -> Resource {
        Resource {
            resource: Some(resource::Resource::ApiMapping(ApiMapping {
                account_id: account.into(),
                domain_name: domain.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn empty_filter_sees_its_account_only() {
        let f = Filter::new(&[], &[], Scope::Account("111122223333".into())).unwrap();
        assert!(f.matches(&api("111122223333")));
        assert!(!f.matches(&api("444455556666")));
        let all = Filter::new(&[], &[], Scope::All).unwrap();
        assert!(all.matches(&api("444455556666")));
    }

    #[test]
    fn kinds_and_domains_narrow() {
        let f = Filter::new(
            &[ResourceKind::ApiMapping as i32],
            &["API.example.com".into(), "*.example.com".into()],
            Scope::All,
        )
        .unwrap();
        assert!(!f.matches(&api("1")));
        assert!(f.matches(&mapping("1", "api.example.com")));
        assert!(f.matches(&mapping("1", "*.example.com")));
        assert!(!f.matches(&mapping("1", "x.example.com")));
        // Domain filters do not hide APIs and stages; kinds do.
        let d = Filter::new(&[], &["a.example.com".into()], Scope::All).unwrap();
        assert!(d.matches(&api("1")));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e = Filter::new(&[0], &[], Scope::All).unwrap_err();
        assert_eq!(e.reason(), "INVALID_KINDS");
        let e = Filter::new(&[99], &[], Scope::All).unwrap_err();
        assert_eq!(e.reason(), "INVALID_KINDS");
        let e = Filter::new(&[], &["not a domain".into()], Scope::All).unwrap_err();
        assert_eq!(e.reason(), "INVALID_DOMAIN_NAMES");
    }
}
