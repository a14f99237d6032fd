//! Route resolution as API Gateway does it: which mapping of which custom domain serves a
//! request for `host` + `path`, and what path the API then sees.
//!
//! Shared by the server's `ResolveRoute` and the gateway-side cache, so both answer alike.
//!
//! - The host is lower-cased, its port and a trailing dot dropped. The exact domain wins over
//!   the wildcard `*.` + parent (one level, as a wildcard certificate matches).
//! - Among the domain's keys the **longest** match wins. If the domain has any multi-level key
//!   (one containing `/`) a key matches as a raw string prefix of the path (`/ordersandmore`
//!   -> `orders`), otherwise only whole path segments match (`/ordersandmore` -> the root).
//! - No key matches -> the root mapping (empty key), if there is one.
//! - The remaining path is the path with the key stripped, always starting with `/`
//!   (`orders/shop/5` + `/orders/shop/5/hats` -> `/hats`; `/orders` -> `/`).

use crate::domain::validate::MAX_API_MAPPING_KEY;
use crate::error::{Error, Result};

/// A route found by [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<T> {
    /// What the lookup returned for the matched key.
    pub target: T,
    /// The matched key ("" for the root mapping).
    pub key: String,
    /// The path the API sees, at least `/`.
    pub remaining_path: String,
}

/// The host as a domain name: lower case, without port or trailing dot.
pub fn normalize_host(host: &str) -> Result<String> {
    let h = host.trim();
    let without_port = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.is_empty() {
        return Err(Error::invalid(
            "host",
            "host is required, e.g. api.example.com",
        ));
    }
    if name.len() > 253 {
        return Err(Error::invalid("host", "host is longer than 253 characters"));
    }
    Ok(name.to_ascii_lowercase())
}

/// The domain names to try for a normalized host, in order: itself, then `*.` + its parent.
pub fn domain_candidates(host: &str) -> Vec<String> {
    let mut out = vec![host.to_string()];
    if let Some((_, parent)) = host.split_once('.')
        && parent.contains('.')
        && !host.starts_with("*.")
    {
        out.push(format!("*.{parent}"));
    }
    out
}

/// The request path, starting with `/`, without query string or fragment; empty means `/`.
pub fn normalize_path(path: &str) -> Result<String> {
    let p = path.split(['?', '#']).next().unwrap_or("");
    if p.is_empty() {
        return Ok("/".into());
    }
    if !p.starts_with('/') {
        return Err(Error::invalid(
            "path",
            format!("path must start with '/', got {:?}", truncate(p)),
        ));
    }
    Ok(p.to_string())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The keys that could match `path` (normalized), longest first, ending with the root "".
/// `raw_prefix`: the domain has a multi-level key, so keys match as raw string prefixes.
pub fn candidate_keys(path: &str, raw_prefix: bool) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let mut out = Vec::new();
    if raw_prefix {
        let mut ends: Vec<usize> = p
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .filter(|&e| e <= MAX_API_MAPPING_KEY)
            .collect();
        ends.reverse();
        out.extend(ends.into_iter().map(|e| &p[..e]));
    } else {
        let mut ends: Vec<usize> = p.match_indices('/').map(|(i, _)| i).collect();
        ends.push(p.len());
        ends.reverse();
        out.extend(
            ends.into_iter()
                .filter(|&e| e > 0 && e <= MAX_API_MAPPING_KEY)
                .map(|e| &p[..e]),
        );
    }
    out.push("");
    out
}

/// The path the API sees once `key` (a match of `path`) is stripped.
pub fn remaining_path(path: &str, key: &str) -> String {
    let p = path.strip_prefix('/').unwrap_or(path);
    let rest = p.get(key.len()..).unwrap_or("");
    if key.is_empty() {
        format!("/{p}")
    } else if rest.is_empty() {
        "/".into()
    } else if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

/// Resolves `path` (normalized) against one domain's keys: `lookup(key)` says whether the key
/// is mapped (and to what). `raw_prefix`: the domain has a multi-level key.
pub fn resolve<T>(
    path: &str,
    raw_prefix: bool,
    mut lookup: impl FnMut(&str) -> Option<T>,
) -> Option<Route<T>> {
    candidate_keys(path, raw_prefix).into_iter().find_map(|k| {
        lookup(k).map(|target| Route {
            target,
            key: k.to_string(),
            remaining_path: remaining_path(path, k),
        })
    })
}

/// Why [`resolve_host`] found no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No domain name matches the host (API Gateway: 403).
    NoDomain,
    /// The chosen domain has no matching key and no root mapping (API Gateway: 404).
    NoMapping {
        /// The chosen domain.
        domain: String,
    },
}

/// A route of a host: the domain chosen and the route within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    /// The host itself or its `*.` wildcard.
    pub domain: String,
    /// The matched key and remaining path.
    pub route: Route<T>,
}

/// Resolves a normalized host and path. `domain(name)` says whether that domain exists (for
/// the caller) and, if so, whether it has a multi-level key; `key(domain, key)` looks a key up.
/// The domain is chosen first, as DNS and TLS do: an exact domain with no matching key does not
/// fall through to its wildcard. Lookup errors are passed through.
pub fn resolve_host<T, E>(
    host: &str,
    path: &str,
    mut domain: impl FnMut(&str) -> Result<Option<bool>, E>,
    mut key: impl FnMut(&str, &str) -> Result<Option<T>, E>,
) -> Result<Result<Found<T>, Miss>, E> {
    for name in domain_candidates(host) {
        let Some(raw_prefix) = domain(&name)? else {
            continue;
        };
        let mut failure = None;
        let route = resolve(path, raw_prefix, |k| match key(&name, k) {
            Ok(found) => found,
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        return Ok(match route {
            Some(route) => Ok(Found {
                domain: name,
                route,
            }),
            None => Err(Miss::NoMapping { domain: name }),
        });
    }
    Ok(Err(Miss::NoDomain))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example of multi-level mappings.
    const AWS: &[&str] = &[
        "",
        "orders",
        "orders/v1/items",
        "orders/v2/items",
        "orders/v2/items/categories",
    ];

    fn route(keys: &[&str], path: &str) -> Option<(String, String)> {
        let raw = keys.iter().any(|k| k.contains('/'));
        let path = normalize_path(path).unwrap();
        resolve(&path, raw, |k| keys.contains(&k).then_some(())).map(|r| (r.key, r.remaining_path))
    }

    fn r(key: &str, rest: &str) -> Option<(String, String)> {
        Some((key.into(), rest.into()))
    }

    #[test]
    fn aws_example_with_multi_level_keys_matches_raw_prefixes() {
        assert_eq!(route(AWS, "/orders"), r("orders", "/"));
        assert_eq!(
            route(AWS, "/orders/v1/items/123"),
            r("orders/v1/items", "/123")
        );
        assert_eq!(
            route(AWS, "/orders/v2/items/categories/5"),
            r("orders/v2/items/categories", "/5")
        );
        assert_eq!(route(AWS, "/customers"), r("", "/customers"));
        assert_eq!(route(AWS, "/ordersandmore"), r("orders", "/andmore"));
    }

    #[test]
    fn single_level_keys_match_whole_segments() {
        let keys = &["", "orders"];
        assert_eq!(route(keys, "/orders"), r("orders", "/"));
        assert_eq!(
            route(keys, "/orders/v1/items/123"),
            r("orders", "/v1/items/123")
        );
        assert_eq!(route(keys, "/customers"), r("", "/customers"));
        assert_eq!(route(keys, "/ordersandmore"), r("", "/ordersandmore"));
    }

    #[test]
    fn strips_the_matched_key() {
        assert_eq!(
            route(&["orders/shop/5"], "/orders/shop/5/hats"),
            r("orders/shop/5", "/hats")
        );
        assert_eq!(
            route(&["orders/shop/5"], "/orders/shop/5/"),
            r("orders/shop/5", "/")
        );
    }

    #[test]
    fn no_match_without_root_is_none() {
        assert_eq!(route(&["orders"], "/customers"), None);
        assert_eq!(route(&["orders"], "/"), None);
        assert_eq!(route(&[""], "/"), r("", "/"));
        assert_eq!(route(&[""], ""), r("", "/"));
    }

    #[test]
    fn keys_are_case_sensitive() {
        assert_eq!(route(&["Orders"], "/orders"), None);
        assert_eq!(route(&["Orders"], "/Orders/1"), r("Orders", "/1"));
    }

    #[test]
    fn query_string_is_ignored() {
        assert_eq!(route(&["orders"], "/orders?x=/y"), r("orders", "/"));
        assert!(normalize_path("orders").is_err());
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_host("API.Example.com:8443").unwrap(),
            "api.example.com"
        );
        assert_eq!(
            normalize_host("api.example.com.").unwrap(),
            "api.example.com"
        );
        assert_eq!(normalize_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_host("").unwrap_err().reason(), "INVALID_HOST");
    }

    #[test]
    fn the_domain_is_chosen_before_its_keys() {
        let domains = ["a.example.com", "*.example.com"];
        let keys = [("a.example.com", "exact"), ("*.example.com", "")];
        let run = |host: &str, path: &str| {
            resolve_host::<(), ()>(
                host,
                path,
                |d| Ok(domains.contains(&d).then_some(false)),
                |d, k| Ok(keys.contains(&(d, k)).then_some(())),
            )
            .unwrap()
        };
        assert_eq!(run("b.example.com", "/x").unwrap().domain, "*.example.com");
        assert_eq!(
            run("a.example.com", "/exact/1").unwrap().domain,
            "a.example.com"
        );
        assert_eq!(
            run("a.example.com", "/other"),
            Err(Miss::NoMapping {
                domain: "a.example.com".into()
            })
        );
        assert_eq!(run("example.org", "/"), Err(Miss::NoDomain));
    }

    #[test]
    fn exact_domain_before_one_level_wildcard() {
        assert_eq!(
            domain_candidates("a.example.com"),
            vec!["a.example.com".to_string(), "*.example.com".to_string()]
        );
        assert_eq!(
            domain_candidates("example.com"),
            vec!["example.com".to_string()]
        );
    }
}
