//! The key layout of an engine's records, log and metadata. Parts are joined with NUL, which no
//! identifier, name or mapping key may contain.
//!
//! | space | key | value |
//! |---|---|---|
//! | records | `a\0{api_id}` | Api |
//! | records | `s\0{api_id}\0{stage}` | Stage |
//! | records | `d\0{domain}` | DomainName (domains are unique across accounts) |
//! | records | `m\0{domain}\0{mapping_id}` | ApiMapping |
//! | log | big-endian revision | that revision's `ChangeSet`, with its history hash as a trailer |
//! | meta | `revision`, `compact_revision`, `compact_hash`, `store_id` | u64 BE, u64 BE, 32 bytes, text |
//!
//! A domain's mappings are exactly the records under `m\0{domain}\0` ([`mappings_of`]), an
//! API's stages those under `s\0{api_id}\0` ([`stages_of`]): a cascading delete clears the
//! prefix as one range ([`Batch::cleared`](super::Batch::cleared)).
//!
//! Indexes are not stored: the registry rebuilds them in memory when it opens. Data dirs of
//! mapreg 0.1 also hold index entries (`ai`, `di`, `k`, `dc`, `ra`, `rs` prefixes); the sled
//! engine removes them when it opens one.

use crate::pb::resource;

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

/// The record key of an API.
pub fn api(api_id: &str) -> Vec<u8> {
    join(&[b"a", api_id.as_bytes()])
}
/// The record key of a stage.
pub fn stage(api_id: &str, stage: &str) -> Vec<u8> {
    join(&[b"s", api_id.as_bytes(), stage.as_bytes()])
}
/// The record key of a domain name.
pub fn domain(domain: &str) -> Vec<u8> {
    join(&[b"d", domain.as_bytes()])
}
/// The record key of an API mapping.
pub fn mapping(domain: &str, mapping_id: &str) -> Vec<u8> {
    join(&[b"m", domain.as_bytes(), mapping_id.as_bytes()])
}

/// The prefix of the record keys of every mapping on `domain` (and of nothing else: no name
/// contains NUL).
pub fn mappings_of(domain: &str) -> Vec<u8> {
    let mut k = join(&[b"m", domain.as_bytes()]);
    k.push(0);
    k
}
/// The prefix of the record keys of every stage of `api_id`.
pub fn stages_of(api_id: &str) -> Vec<u8> {
    let mut k = join(&[b"s", api_id.as_bytes()]);
    k.push(0);
    k
}

/// The record key of a resource.
pub fn of(r: &resource::Resource) -> Vec<u8> {
    match r {
        resource::Resource::Api(a) => api(&a.api_id),
        resource::Resource::Stage(s) => stage(&s.api_id, &s.stage_name),
        resource::Resource::DomainName(d) => domain(&d.domain_name),
        resource::Resource::ApiMapping(m) => mapping(&m.domain_name, &m.api_mapping_id),
    }
}

/// Whether `key` is a record key (not a 0.1 index entry).
pub fn is_record(key: &[u8]) -> bool {
    matches!(key, [b'a' | b's' | b'd' | b'm', 0, ..])
}

/// Meta key of the last committed revision.
pub const META_REVISION: &[u8] = b"revision";
/// Meta key of the store id.
pub const META_STORE_ID: &[u8] = b"store_id";
/// Meta key of the compaction point: every log entry at or below it is gone.
pub const META_COMPACT_REVISION: &[u8] = b"compact_revision";

/// Meta key of the history hash at the compaction point (32 bytes).
pub const META_COMPACT_HASH: &[u8] = b"compact_hash";

/// The log key of a revision: big-endian, so the log scans in revision order.
pub fn log(revision: u64) -> [u8; 8] {
    revision.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_told_from_old_index_keys() {
        assert!(is_record(&api("x")));
        assert!(is_record(&mapping("d.com", "abc")));
        assert!(!is_record(b"ai\0acct\0x"));
        assert!(!is_record(b"dc\0d.com"));
        assert!(!is_record(b"k\0d.com\0v1"));
        assert!(!is_record(b"rs\0a\0b"));
    }

    #[test]
    fn child_prefixes_hold_exactly_the_children() {
        assert!(mapping("d.com", "abc").starts_with(&mappings_of("d.com")));
        assert!(!mapping("d.com.x", "abc").starts_with(&mappings_of("d.com")));
        assert!(!domain("d.com").starts_with(&mappings_of("d.com")));
        assert!(stage("a1", "prod").starts_with(&stages_of("a1")));
        assert!(!stage("a10", "prod").starts_with(&stages_of("a1")));
    }
}
