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
        let (revision, replica) = read_all(db)?;
        Ok(RouteTable {
            state: RwLock::new(State { revision, replica }),
        })
    }

    /// Applies durable writes, which come in revision order, from the writer thread (so `db`
    /// holds exactly these writes and those before). A revision missing before them (its
    /// group's flush failed, so it was never published, though it may be in the store) makes
    /// the table reload from `db` instead: it never skips a revision.
    pub fn apply(&self, db: &Db, committed: &[Committed]) {
        let mut state = match self.state.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        for c in committed {
            if c.revision != state.revision + 1 {
                tracing::warn!(
                    from = state.revision,
                    to = c.revision,
                    "route table missed revisions; reloading it from the store"
                );
                match read_all(db) {
                    Ok((revision, replica)) => *state = State { revision, replica },
                    // Keep answering from what it has; the next write tries again.
                    Err(e) => tracing::error!(error = %e, "cannot reload the route table"),
                }
                return;
            }
            for e in &c.events {
                state.replica.apply(e.clone());
            }
            state.revision = c.revision;
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

/// Every record of `db` and the revision they are the state of.
fn read_all(db: &Db) -> Result<(u64, Replica)> {
    let revision = db.revision()?;
    let mut replica = Replica::default();
    for record in db.scan_records() {
        let (_, Resource { resource }) = record?;
        if let Some(r) = resource {
            replica.put(r);
        }
    }
    Ok((revision, replica))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::ProtocolType;
    use crate::store::sled::SledStore;
    use crate::store::{Limits, Store, WriteOp, WriteResult};
    use std::sync::Arc;

    const ACCOUNT: &str = "000000000000";

    fn db(dir: &std::path::Path) -> Db {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        Db::open(
            store,
            Limits {
                max_multi_level_mappings_per_domain: 200,
            },
        )
        .unwrap()
    }

    /// API + stage `test` + domain `api.example.com`, committed but not applied to any table.
    fn fixture(db: &Db) -> (Vec<Committed>, String) {
        let mut out = Vec::new();
        let api = db
            .apply(&WriteOp::CreateApi {
                account: ACCOUNT.into(),
                name: "a".into(),
                protocol: ProtocolType::Http,
                description: String::new(),
                tags: Default::default(),
            })
            .unwrap();
        let api_id = match &api.result {
            WriteResult::Api(a) => a.api_id.clone(),
            other => panic!("{other:?}"),
        };
        out.push(api);
        out.push(
            db.apply(&WriteOp::CreateStage {
                account: ACCOUNT.into(),
                api_id: api_id.clone(),
                stage_name: "test".into(),
                description: String::new(),
                tags: Default::default(),
            })
            .unwrap(),
        );
        out.push(
            db.apply(&WriteOp::CreateDomainName {
                account: ACCOUNT.into(),
                domain_name: "api.example.com".into(),
                configuration: Default::default(),
                tags: Default::default(),
            })
            .unwrap(),
        );
        (out, api_id)
    }

    fn mapping(db: &Db, api_id: &str, key: &str) -> Committed {
        db.apply(&WriteOp::CreateApiMapping {
            account: ACCOUNT.into(),
            domain_name: "api.example.com".into(),
            api_mapping_key: key.into(),
            api_id: api_id.into(),
            stage: "test".into(),
        })
        .unwrap()
    }

    #[test]
    fn follows_published_writes_and_reports_their_revision() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let table = RouteTable::load(&db).unwrap();
        let (setup, api_id) = fixture(&db);
        table.apply(&db, &setup);
        let scope = Scope::Account(ACCOUNT.into());
        let e = table.resolve(&scope, "api.example.com", "/v1").unwrap_err();
        assert_eq!(e.reason(), "ROUTE_NOT_FOUND");
        let m = mapping(&db, &api_id, "v1");
        table.apply(&db, std::slice::from_ref(&m));
        let r = table.resolve(&scope, "api.example.com", "/v1/x").unwrap();
        assert_eq!((r.remaining_path.as_str(), r.revision), ("/x", m.revision));
        assert_eq!(r.api.api_id, api_id);
        let other = Scope::Account("111122223333".into());
        let e = table.resolve(&other, "api.example.com", "/v1").unwrap_err();
        assert_eq!(e.reason(), "DOMAIN_NAME_NOT_FOUND");
    }

    #[test]
    fn a_missed_revision_reloads_the_table_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let table = RouteTable::load(&db).unwrap();
        let (setup, api_id) = fixture(&db);
        table.apply(&db, &setup);
        // Committed, but its group's flush failed: never published.
        let lost = mapping(&db, &api_id, "v1");
        let next = mapping(&db, &api_id, "v2");
        table.apply(&db, std::slice::from_ref(&next));
        let scope = Scope::All;
        let lost_id = match &lost.result {
            WriteResult::ApiMapping(m) => m.api_mapping_id.clone(),
            other => panic!("{other:?}"),
        };
        let r = table.resolve(&scope, "api.example.com", "/v1").unwrap();
        assert_eq!(r.mapping.api_mapping_id, lost_id);
        assert_eq!(r.revision, next.revision);
        assert!(table.resolve(&scope, "api.example.com", "/v2").is_ok());
    }
}
