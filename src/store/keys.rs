//! The key layout of the `data` space. Parts are joined with NUL, which no identifier, name or
//! mapping key may contain, so a prefix scan never runs into a neighbour's keys.
//!
//! | key | value |
//! |---|---|
//! | `a\0{api_id}` | Api |
//! | `ai\0{account}\0{api_id}` | empty: the account's APIs in id order |
//! | `s\0{api_id}\0{stage}` | Stage |
//! | `d\0{domain}` | DomainName (domains are unique across accounts) |
//! | `di\0{account}\0{domain}` | empty: the account's domains in name order |
//! | `m\0{domain}\0{mapping_id}` | ApiMapping |
//! | `k\0{domain}\0{api_mapping_key}` | mapping id: key uniqueness, mappings in key order |
//! | `dc\0{domain}` | DomainCounters: protocol and multi-level counts |
//! | `ra\0{api_id}` | RefCounts: mappings per domain pointing at the API |
//! | `rs\0{api_id}\0{stage}` | RefCounts: mappings per domain pointing at the stage |

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The record of an API.
pub fn api(api_id: &str) -> Vec<u8> {
    join(&[b"a", api_id.as_bytes()])
}
/// Prefix of every API record.
pub fn apis() -> Vec<u8> {
    b"a\0".to_vec()
}
/// The account index entry of an API.
pub fn account_api(account: &str, api_id: &str) -> Vec<u8> {
    join(&[b"ai", account.as_bytes(), api_id.as_bytes()])
}
/// Prefix of an account's API index.
pub fn account_apis(account: &str) -> Vec<u8> {
    join(&[b"ai", account.as_bytes(), b""])
}
/// The record of a stage.
pub fn stage(api_id: &str, stage: &str) -> Vec<u8> {
    join(&[b"s", api_id.as_bytes(), stage.as_bytes()])
}
/// Prefix of an API's stages.
pub fn stages(api_id: &str) -> Vec<u8> {
    join(&[b"s", api_id.as_bytes(), b""])
}
/// The record of a domain name.
pub fn domain(domain: &str) -> Vec<u8> {
    join(&[b"d", domain.as_bytes()])
}
/// Prefix of every domain record.
pub fn domains() -> Vec<u8> {
    b"d\0".to_vec()
}
/// The account index entry of a domain name.
pub fn account_domain(account: &str, domain: &str) -> Vec<u8> {
    join(&[b"di", account.as_bytes(), domain.as_bytes()])
}
/// Prefix of an account's domain index.
pub fn account_domains(account: &str) -> Vec<u8> {
    join(&[b"di", account.as_bytes(), b""])
}
/// The record of an API mapping.
pub fn mapping(domain: &str, mapping_id: &str) -> Vec<u8> {
    join(&[b"m", domain.as_bytes(), mapping_id.as_bytes()])
}
/// Prefix of every mapping record.
pub fn mapping_prefix() -> Vec<u8> {
    b"m\0".to_vec()
}
/// Prefix of every stage record.
pub fn stage_prefix() -> Vec<u8> {
    b"s\0".to_vec()
}
/// The uniqueness index entry of (domain, api_mapping_key).
pub fn mapping_key(domain: &str, key: &str) -> Vec<u8> {
    join(&[b"k", domain.as_bytes(), key.as_bytes()])
}
/// Prefix of a domain's key index.
pub fn mapping_keys(domain: &str) -> Vec<u8> {
    join(&[b"k", domain.as_bytes(), b""])
}
/// The counters of a domain's mappings.
pub fn domain_counters(domain: &str) -> Vec<u8> {
    join(&[b"dc", domain.as_bytes()])
}
/// References to an API, per domain.
pub fn api_refs(api_id: &str) -> Vec<u8> {
    join(&[b"ra", api_id.as_bytes()])
}
/// References to a stage, per domain.
pub fn stage_refs(api_id: &str, stage: &str) -> Vec<u8> {
    join(&[b"rs", api_id.as_bytes(), stage.as_bytes()])
}

/// Meta key of the last committed revision.
pub const META_REVISION: &[u8] = b"revision";
/// Meta key of the store id.
pub const META_STORE_ID: &[u8] = b"store_id";
/// Meta key of the compaction point: every log entry at or below it is gone.
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";

/// The log key of a revision: big-endian, so the log scans in revision order.
pub fn log(revision: u64) -> [u8; 8] {
    revision.to_be_bytes()
}

/// The part of `key` after `prefix`, as text.
pub fn suffix(key: &[u8], prefix: &[u8]) -> String {
    String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap() {
        assert!(api("x").starts_with(&apis()));
        assert!(!account_api("1", "x").starts_with(&apis()));
        assert!(!account_domain("1", "x").starts_with(&domains()));
        assert!(!domain_counters("x").starts_with(&domains()));
        assert!(stage("a", "b").starts_with(&stages("a")));
        assert!(!stage("ab", "c").starts_with(&stages("a")));
        assert_eq!(
            suffix(&mapping_key("d.com", "v1/x"), &mapping_keys("d.com")),
            "v1/x"
        );
    }
}
