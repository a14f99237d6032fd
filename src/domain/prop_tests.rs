//! Property tests (proptest) of request validation and route resolution: arbitrary input
//! never panics, every refusal is `InvalidArgument` naming a field, and a route found is the
//! longest matching key of the domain the host chose.
//!
//! Cases per property: `PROPTEST_CASES` (default 256: the normal test run, which is CI's smoke
//! run). A long run: `PROPTEST_CASES=100000 cargo test --release prop_`.

use std::collections::HashMap;

use proptest::collection::{hash_map, vec};
use proptest::prelude::*;

use super::resolve::{self, Miss};
use super::validate;
use crate::error::{Error, Result};

/// The refusal is `InvalidArgument` with a field and a message.
fn refused_with_a_field<T: std::fmt::Debug>(r: &Result<T>, expected_field: &str) {
    if let Err(e) = r {
        match e {
            Error::InvalidArgument { field, message, .. } => {
                assert_eq!(field, expected_field, "{e:?}");
                assert!(!message.is_empty(), "{e:?}");
            }
            other => panic!("not INVALID_ARGUMENT: {other:?}"),
        }
    }
}

/// Any text: mostly printable ASCII (the interesting syntax), sometimes any Unicode, controls
/// and NUL included, up to 300 characters (past every length limit).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,300}",
        any::<String>(),
        "[a-zA-Z0-9._*/:\\-\\[\\] \\x00\\t]{0,80}",
    ]
}

proptest! {
    #[test]
    fn prop_every_field_validator_is_total_and_names_its_field(s in text()) {
        refused_with_a_field(&validate::api_name(&s), "name");
        refused_with_a_field(&validate::description("description", &s), "description");
        refused_with_a_field(&validate::stage_name("stage_name", &s), "stage_name");
        refused_with_a_field(&validate::api_mapping_key(&s), "api_mapping_key");
        refused_with_a_field(&validate::resource_id("api_id", &s), "api_id");
        refused_with_a_field(&validate::certificate_arn(&s), "certificate_arn");
        let d = validate::normalize_domain_name("domain_name", &s);
        refused_with_a_field(&d, "domain_name");
        if let Ok(name) = d {
            // What is accepted is stored normalized: normalizing again changes nothing.
            prop_assert_eq!(validate::normalize_domain_name("domain_name", &name).ok(), Some(name));
        }
        if validate::api_mapping_key(&s).is_ok() {
            prop_assert!(s.chars().all(|c| c == '/' || validate::is_key_char(c)), "{:?}", s);
        }
    }

    #[test]
    fn prop_tags_and_page_sizes_are_total(
        tags in hash_map(text(), text(), 0..60),
        keys in vec(text(), 0..60),
        max_results in any::<i32>(),
    ) {
        let tags: HashMap<String, String> = tags;
        refused_with_a_field(&validate::tags(&tags), "tags");
        refused_with_a_field(&validate::tag_keys(&keys), "tag_keys");
        let page = validate::page_size(max_results);
        refused_with_a_field(&page, "max_results");
        if let Ok(n) = page {
            prop_assert!(n >= 1);
        }
    }

    #[test]
    fn prop_a_host_failing_syntax_is_never_routed(host in text(), path in text()) {
        let normalized = resolve::normalize_host(&host);
        refused_with_a_field(&normalized, "host");
        refused_with_a_field(&resolve::normalize_path(&path), "path");
        let Ok(h) = normalized else {
            return Ok(());
        };
        // Accepted: lower case, no wildcard, labels of letters, digits, '-' and '_' (or an
        // IPv6 literal); so the only wildcard tried is the one made from its parent.
        prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
        prop_assert!(!h.contains('*'), "{:?}", h);
        if !h.starts_with('[') {
            prop_assert!(h.split('.').all(|l| !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')),
                "{:?}", h);
        }
        let candidates = resolve::domain_candidates(&h);
        prop_assert_eq!(&candidates[0], &h);
        for c in &candidates[1..] {
            prop_assert!(c.starts_with("*.") && h.ends_with(&c[1..]), "{:?} for {:?}", c, h);
        }
    }
}

/// A key or path segment over a tiny alphabet, so that keys and paths share prefixes often.
fn word() -> impl Strategy<Value = String> {
    "[ab.]{1,3}"
}

/// A domain's keys: maybe the root, then keys of one or (when `multi`) several levels.
fn keys() -> impl Strategy<Value = Vec<String>> {
    (any::<bool>(), any::<bool>(), vec(vec(word(), 1..4), 0..6)).prop_map(|(root, multi, ks)| {
        let mut out: Vec<String> = if root {
            vec![String::new()]
        } else {
            Vec::new()
        };
        for k in ks {
            let levels = if multi { k.len() } else { 1 };
            out.push(k[..levels].join("/"));
        }
        out
    })
}

proptest! {
    #[test]
    fn prop_a_route_is_the_longest_matching_key_of_the_chosen_domain(
        exact in keys(),
        wildcard in keys(),
        exact_exists in any::<bool>(),
        host_labels in vec("[a-c]{1,2}", 1..4),
        segments in vec(prop_oneof![word(), "[ab%~/]{1,3}".prop_map(String::from)], 0..5),
        query in "[?#]?[ab=/]{0,4}",
    ) {
        let host = format!("{}.example.com", host_labels.join("."));
        let parent = host.split_once('.').map(|(_, p)| p.to_string()).unwrap_or_default();
        let wildcard_name = format!("*.{parent}");
        let raw_path = format!("/{}{}", segments.join("/"), query);
        let Ok(path) = resolve::normalize_path(&raw_path) else {
            return Ok(());
        };
        let domains: Vec<(String, &Vec<String>)> = [
            exact_exists.then(|| (host.clone(), &exact)),
            Some((wildcard_name.clone(), &wildcard)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let found = resolve::resolve_host::<(), ()>(
            &host,
            &path,
            |d| Ok(domains.iter().find(|(n, _)| n == d).map(|(_, ks)| ks.iter().any(|k| k.contains('/')))),
            |d, k| Ok(domains.iter().find(|(n, _)| n == d).and_then(|(_, ks)| ks.iter().any(|x| x == k).then_some(()))),
        );
        let Ok(found) = found else {
            return Err(TestCaseError::fail("lookup errors are not made up"));
        };
        // The domain is chosen first: the exact one if it exists, else the wildcard.
        let (chosen, chosen_keys) = if exact_exists { (&host, &exact) } else { (&wildcard_name, &wildcard) };
        match (found, resolve::tests::reference(chosen_keys, &path)) {
            (Ok(f), Some(k)) => {
                prop_assert_eq!(&f.domain, chosen);
                prop_assert_eq!(&f.route.key, &k);
                prop_assert!(f.route.remaining_path.starts_with('/'));
            }
            (Err(Miss::NoMapping { domain }), None) => prop_assert_eq!(&domain, chosen),
            (got, want) => {
                return Err(TestCaseError::fail(format!("got {got:?}, the rule says {want:?} (path {path})")));
            }
        }
    }
}
