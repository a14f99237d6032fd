//! An in-memory replica of the registry's records and the route resolution over it: what a
//! gateway's `MappingCache` keeps from the change feed, and what the server answers
//! `ResolveRoute` from. Pure data; resolution is [`resolve`]'s, the one module both share.

use std::collections::{BTreeMap, HashMap};

use crate::domain::resolve;
use crate::pb::{Api, ApiMapping, DomainName, Event, EventType, Stage, resource};

/// A route found by [`Replica::route`], borrowing from the replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Route<'a> {
    /// The domain that matched: the host itself or its `*.` wildcard.
    pub domain_name: String,
    /// The mapping that serves the request.
    pub mapping: &'a ApiMapping,
    /// Its API, if the replica has it.
    pub api: Option<&'a Api>,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
}

/// The answer of [`Replica::resolve`] (and so of `MappingCache::resolve`).
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

/// Why [`Replica::resolve`] found no route.
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

/// The registry's records in memory, indexed for route resolution: what a snapshot plus the
/// change sets after it add up to. Applying every event of every revision in order keeps it
/// equal to the registry at the last revision applied.
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
    /// Stores `r` (an event's PUT), replacing the record of the same identity; a mapping's
    /// old key stops routing to it.
    pub fn put(&mut self, r: resource::Resource) {
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

    /// Removes the record of `r`'s identity (an event's DELETE).
    pub fn delete(&mut self, r: resource::Resource) {
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

    /// Applies one change event.
    pub fn apply(&mut self, e: Event) {
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

    /// Resolves a normalized host and path (see [`resolve::normalize_host`] and
    /// [`resolve::normalize_path`]) like `ResolveRoute`, among the domains whose account
    /// `sees` accepts (others are absent). Borrows the mapping and its API.
    pub fn route(
        &self,
        host: &str,
        path: &str,
        sees: impl Fn(&str) -> bool,
    ) -> Result<Route<'_>, resolve::Miss> {
        let found = resolve::resolve_host::<_, std::convert::Infallible>(
            host,
            path,
            |d| {
                Ok(self
                    .domains
                    .get(d)
                    .filter(|dn| sees(&dn.account_id))
                    .map(|_| self.multi_level.get(d).is_some_and(|n| *n > 0)))
            },
            |d, k| Ok(self.keys.get(d).and_then(|ks| ks.get(k))),
        );
        let found = match found {
            Ok(found) => found?,
            Err(never) => match never {},
        };
        let mapping = self
            .mappings
            .get(&found.domain)
            .and_then(|m| m.get(found.route.target))
            .ok_or_else(|| resolve::Miss::NoMapping {
                domain: found.domain.clone(),
            })?;
        Ok(Route {
            api: self.apis.get(&mapping.api_id),
            mapping,
            domain_name: found.domain,
            remaining_path: found.route.remaining_path,
        })
    }

    /// Resolves `host` + `path` (normalized here) like the server's `ResolveRoute`.
    pub fn resolve(&self, host: &str, path: &str) -> Result<Resolution, ResolveError> {
        let host =
            resolve::normalize_host(host).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        let path =
            resolve::normalize_path(path).map_err(|e| ResolveError::BadRequest(e.to_string()))?;
        match self.route(&host, &path, |_| true) {
            Ok(r) => Ok(Resolution {
                domain_name: r.domain_name,
                mapping: r.mapping.clone(),
                api: r.api.cloned(),
                remaining_path: r.remaining_path,
            }),
            Err(resolve::Miss::NoMapping { domain }) => {
                Err(ResolveError::NoMapping { domain, path })
            }
            Err(resolve::Miss::NoDomain) => Err(ResolveError::NoDomain(host)),
        }
    }
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

    #[test]
    fn route_sees_only_accepted_accounts() {
        let mut r = Replica::default();
        let owned = |d: &str, account: &str| {
            resource::Resource::DomainName(DomainName {
                domain_name: d.into(),
                account_id: account.into(),
                ..Default::default()
            })
        };
        r.put(owned("api.example.com", "111122223333"));
        r.put(owned("*.example.com", "444455556666"));
        r.put(mapping("api.example.com", "m1", ""));
        r.put(mapping("*.example.com", "m2", ""));
        let mine = |a: &str| a == "111122223333";
        let theirs = |a: &str| a == "444455556666";
        assert_eq!(
            r.route("api.example.com", "/", mine)
                .unwrap()
                .mapping
                .api_mapping_id,
            "m1"
        );
        // Another account's exact domain is absent, so the wildcard (if visible) answers.
        assert_eq!(
            r.route("api.example.com", "/", theirs).unwrap().domain_name,
            "*.example.com"
        );
        assert_eq!(
            r.route("shop.example.com", "/", mine),
            Err(resolve::Miss::NoDomain)
        );
    }
}
