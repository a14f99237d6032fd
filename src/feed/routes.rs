//! The server's route table: `ResolveRoute` answers from memory, not from sled.
//!
//! The table is a [`Replica`] of the registry loaded from the store when the server starts
//! (before the writer takes any write) and then fed every durable revision, in order, by
//! [`Hub::publish`](super::Hub::publish), before the revision reaches any watcher. So:
//!
//! - an answer is the registry's state at exactly one revision, the one it reports, and that
//!   revision is durable (a route appears once its write is acknowledged-durable, never before);
//! - an answer costs no storage read: resolving a path took five to seven sled reads of
//!   records that every request on a domain shares (the domain, its counters, its API), and
//!   two request threads reading the same pages contended in sled's page cache.
//!
//! Memory: one more in-memory copy of every API, stage, domain name and mapping.

use std::sync::RwLock;

use crate::domain::replica::Replica;
use crate::domain::{resolve, rules};
use crate::error::{Error, Result};
use crate::pb::{Api, ApiMapping, Resource};
use crate::store::{Committed, Db, Scope};

/// The answer of [`RouteTable::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The domain that matched: the host itself or its `*.` wildcard.
    pub domain_name: String,
    /// The mapping that serves the request.
    pub mapping: ApiMapping,
    /// Its API.
    pub api: Api,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
    /// The revision the answer is the state of.
    pub revision: u64,
}

struct State {
    revision: u64,
    replica: Replica,
}

/// Every record of the registry, in memory, at the last durable revision.
pub struct RouteTable {
    state: RwLock<State>,
}

impl RouteTable {
    /// Loads every record of `db`. Call it while nothing writes, so that the records are the
    /// state at the revision read with them.
    pub fn load(db: &Db) -> Result<RouteTable> {
        let revision = db.revision()?;
        let mut replica = Replica::default();
        for record in db.scan_records() {
            let (_, Resource { resource }) = record?;
            if let Some(r) = resource {
                replica.put(r);
            }
        }
        Ok(RouteTable {
            state: RwLock::new(State { revision, replica }),
        })
    }

    /// Applies durable writes, which come in revision order.
    pub fn apply(&self, committed: &[Committed]) {
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        for c in committed {
            for e in &c.events {
                state.replica.apply(e.clone());
            }
            state.revision = c.revision;
        }
    }

    /// The revision the table is the state of.
    pub fn revision(&self) -> u64 {
        match self.state.read() {
            Ok(s) => s.revision,
            Err(poisoned) => poisoned.into_inner().revision,
        }
    }

    /// Which mapping serves `host` + `path` (both normalized) for a caller of `scope`, per
    /// [`resolve`]: the exact domain before its `*.` wildcard (another account's domain is
    /// absent), the longest key, else the root mapping.
    pub fn resolve(&self, scope: &Scope, host: &str, path: &str) -> Result<Resolved> {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let route = match state
            .replica
            .route(host, path, |account| scope.sees(account))
        {
            Ok(route) => route,
            Err(resolve::Miss::NoDomain) => {
                return Err(Error::NotFound {
                    reason: "DOMAIN_NAME_NOT_FOUND",
                    message: format!(
                        "Invalid domain name identifier specified: no custom domain name matches host {host}"
                    ),
                });
            }
            Err(resolve::Miss::NoMapping { domain }) => {
                return Err(Error::NotFound {
                    reason: "ROUTE_NOT_FOUND",
                    message: format!(
                        "no API mapping of {domain} matches path {path} and it has no root mapping"
                    ),
                });
            }
        };
        // A mapping's API cannot be deleted while the mapping exists (SPEC section 2.8).
        let api = route
            .api
            .cloned()
            .ok_or_else(|| rules::api_not_found(&route.mapping.api_id))?;
        Ok(Resolved {
            domain_name: route.domain_name,
            mapping: route.mapping.clone(),
            api,
            remaining_path: route.remaining_path,
            revision: state.revision,
        })
    }
}
