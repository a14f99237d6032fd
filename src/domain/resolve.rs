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

use crate::domain::validate::{self, MAX_API_MAPPING_KEY};
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
    let name = name.to_ascii_lowercase();
    check_host_syntax(&name)?;
    Ok(name)
}

/// A host name as a Host header can carry it: dot-separated labels, none empty, of letters,
/// digits, `-` and `_` (or a bracketed IPv6 literal). Anything else (spaces, NUL, control
/// characters, `*`, empty labels) is refused, so it can never be routed through a wildcard
/// domain.
fn check_host_syntax(name: &str) -> Result<()> {
    if let Some(v6) = name.strip_prefix('[') {
        let ok = v6.strip_suffix(']').is_some_and(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        });
        if ok {
            return Ok(());
        }
        return Err(Error::invalid(
            "host",
            format!("host {name:?} is not a valid IPv6 literal"),
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(Error::invalid(
                "host",
                format!("host {name:?} has an empty label (leading or double '.')"),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(Error::invalid(
                "host",
                format!(
                    "host {name:?} contains {c:?}; a host name has only letters, numbers, '-' and '_' between its dots"
                ),
            ));
        }
    }
    Ok(())
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
///
/// Only strings that could be valid keys are returned (see
/// [`validate::api_mapping_key`](crate::domain::validate::api_mapping_key)), so a lookup is
/// never wasted: a domain without multi-level keys has no key containing `/`, so only the
/// first path segment can match; no key contains a character outside the key alphabet, `//`,
/// or ends with `/`, or is longer than 300 characters.
pub fn candidate_keys(path: &str, raw_prefix: bool) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let mut out = Vec::new();
    if raw_prefix {
        // Candidates lie before the first character no key may hold, and before any `//`.
        let mut end = p
            .find(|c: char| !validate::is_key_char(c))
            .unwrap_or(p.len());
        if let Some(i) = p[..end].find("//") {
            end = i;
        }
        // All ASCII from here: every index is a char boundary.
        out.extend(
            (1..=end.min(MAX_API_MAPPING_KEY))
                .rev()
                .map(|e| &p[..e])
                .filter(|k| !k.ends_with('/')),
        );
    } else {
        // Whole segments only, and keys are single-level: the first segment, if it can be a key.
        let first = p.split('/').next().unwrap_or("");
        if !first.is_empty()
            && first.len() <= MAX_API_MAPPING_KEY
            && first.chars().all(validate::is_key_char)
        {
            out.push(first);
        }
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
pub(super) mod tests {
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

    /// The rule of SPEC section 3 written the slow way: every key that matches, longest wins.
    /// The oracle of this module's tests and of the domain's property tests.
    pub(in crate::domain) fn reference(keys: &[String], path: &str) -> Option<String> {
        let raw = keys.iter().any(|k| k.contains('/'));
        let p = path.strip_prefix('/').unwrap_or(path);
        keys.iter()
            .filter(|k| {
                k.is_empty()
                    || if raw {
                        p.starts_with(k.as_str())
                    } else {
                        p == k.as_str() || p.starts_with(&format!("{k}/"))
                    }
            })
            .max_by_key(|k| k.len())
            .cloned()
    }

    #[test]
    fn candidates_agree_with_the_rule_on_random_keys_and_paths() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // A tiny alphabet, so keys and paths share prefixes often.
        let word = |rng: &mut rand::rngs::StdRng| -> String {
            (0..rng.gen_range(1..4))
                .map(|_| ['a', 'b', '.'][rng.gen_range(0..3)])
                .collect()
        };
        for round in 0..2000 {
            let mut keys: Vec<String> = Vec::new();
            if round % 3 != 0 {
                keys.push(String::new());
            }
            for _ in 0..rng.gen_range(0..6) {
                let levels = if round % 2 == 0 {
                    1
                } else {
                    rng.gen_range(1..4)
                };
                let k: Vec<String> = (0..levels).map(|_| word(&mut rng)).collect();
                keys.push(k.join("/"));
            }
            let mut path = String::new();
            for _ in 0..rng.gen_range(0..5) {
                path.push('/');
                path.push_str(&word(&mut rng));
                if rng.gen_range(0..8) == 0 {
                    path.push(['%', '/', '~'][rng.gen_range(0..3)]);
                }
            }
            let path = normalize_path(&path).unwrap();
            let raw = keys.iter().any(|k| k.contains('/'));
            let got =
                resolve(&path, raw, |k| keys.iter().any(|x| x == k).then_some(())).map(|r| r.key);
            assert_eq!(got, reference(&keys, &path), "keys {keys:?} path {path}");
        }
    }

    #[test]
    fn candidates_are_only_possible_keys() {
        assert_eq!(candidate_keys("/a/b/c", false), vec!["a", ""]);
        assert_eq!(candidate_keys("/", false), vec![""]);
        assert_eq!(candidate_keys("/a/b", true), vec!["a/b", "a", ""]);
        // No key holds '%', '//' or ends with '/'.
        assert_eq!(candidate_keys("/a%20b", true), vec!["a", ""]);
        assert_eq!(candidate_keys("/a//b", true), vec!["a", ""]);
        assert_eq!(candidate_keys("/a%20b/c", false), vec![""]);
        let long = format!("/{}", "x".repeat(400));
        assert_eq!(candidate_keys(&long, true).len(), MAX_API_MAPPING_KEY + 1);
        assert_eq!(candidate_keys(&long, false), vec![""]);
    }

    /// Asserts that each `(path, key, rest)` routes to `key` with `rest` left, given `keys`.
    fn routes(keys: &[&str], cases: &[(&str, &str, &str)]) {
        for (path, key, rest) in cases {
            assert_eq!(route(keys, path), r(key, rest), "path {path}");
        }
    }

    #[test]
    fn aws_example_with_multi_level_keys_matches_raw_prefixes() {
        routes(
            AWS,
            &[
                ("/orders", "orders", "/"),
                ("/orders/v1/items/123", "orders/v1/items", "/123"),
                (
                    "/orders/v2/items/categories/5",
                    "orders/v2/items/categories",
                    "/5",
                ),
                ("/customers", "", "/customers"),
                ("/ordersandmore", "orders", "/andmore"),
            ],
        );
    }

    #[test]
    fn single_level_keys_match_whole_segments() {
        routes(
            &["", "orders"],
            &[
                ("/orders", "orders", "/"),
                ("/orders/v1/items/123", "orders", "/v1/items/123"),
                ("/customers", "", "/customers"),
                ("/ordersandmore", "", "/ordersandmore"),
            ],
        );
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
        for bad in [
            "a b.example.com",
            "x\0y.example.com",
            "a..example.com",
            ".example.com",
            "*.example.com",
            "tab\t.example.com",
            "[zz]",
            "[::1",
        ] {
            let e = normalize_host(bad).unwrap_err();
            assert_eq!(e.reason(), "INVALID_HOST", "{bad:?}");
            assert!(e.to_string().starts_with("host "), "{e}");
        }
        assert_eq!(normalize_host("10.0.0.1:80").unwrap(), "10.0.0.1");
        assert_eq!(
            normalize_host("my_host.example.com").unwrap(),
            "my_host.example.com"
        );
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
