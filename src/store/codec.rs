//! Encoding of records and log entries. Records are the public protobuf messages (so the stored
//! form evolves as the contract does), told apart by their key's prefix.

use prost::Message;

use crate::error::{Error, Result};
use crate::pb::{ChangeSet, Event, EventType, Resource, resource};

/// A big-endian u64 (revisions).
pub fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("corrupt u64 value"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Encodes a record's value.
pub fn encode_record(r: &resource::Resource) -> Vec<u8> {
    match r {
        resource::Resource::Api(a) => a.encode_to_vec(),
        resource::Resource::Stage(s) => s.encode_to_vec(),
        resource::Resource::DomainName(d) => d.encode_to_vec(),
        resource::Resource::ApiMapping(m) => m.encode_to_vec(),
    }
}

/// Decodes a record by its key's prefix; None for a key that is not a record's.
pub fn decode_record(key: &[u8], value: &[u8]) -> Result<Option<resource::Resource>> {
    Ok(Some(match key {
        [b'a', 0, ..] => resource::Resource::Api(Message::decode(value)?),
        [b's', 0, ..] => resource::Resource::Stage(Message::decode(value)?),
        [b'd', 0, ..] => resource::Resource::DomainName(Message::decode(value)?),
        [b'm', 0, ..] => resource::Resource::ApiMapping(Message::decode(value)?),
        _ => return Ok(None),
    }))
}

/// Decodes a change-log entry.
pub fn decode_change_set(bytes: &[u8]) -> Result<ChangeSet> {
    Ok(ChangeSet::decode(bytes)?)
}

/// What a change set does to the records: (record key, new value or None for a delete), in
/// event order.
pub fn record_changes(events: &[Event]) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + '_ {
    events.iter().filter_map(|e| {
        let r = e
            .resource
            .as_ref()
            .and_then(|r: &Resource| r.resource.as_ref())?;
        let key = super::keys::of(r);
        Some(if e.r#type == EventType::Delete as i32 {
            (key, None)
        } else {
            (key, Some(encode_record(r)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::Api;

    #[test]
    fn records_round_trip_by_key() {
        let r = resource::Resource::Api(Api {
            api_id: "abc".into(),
            name: "n".into(),
            ..Default::default()
        });
        let key = super::super::keys::of(&r);
        assert_eq!(decode_record(&key, &encode_record(&r)).unwrap(), Some(r));
        assert_eq!(decode_record(b"dc\0x", b"").unwrap(), None);
        assert!(decode_record(&key, b"\xff\xff").is_err());
        assert!(decode_u64(b"short").is_err());
    }
}

/// Property tests (proptest): record and change-log decoding, with the history hash trailer
/// (`super::history`), on arbitrary and mutated bytes never panic; what they refuse is an
/// `Err`; a changed byte of a hashed entry's change set is caught by the chain. Cases:
/// `PROPTEST_CASES` (default 256); a long run: `PROPTEST_CASES=100000 cargo test --release
/// prop_`.
#[cfg(test)]
mod prop_tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::pb::{Api, ApiMapping, DomainName, Stage};
    use crate::store::history;

    /// A record key prefix (each kind's, and a few that are no record's) and any rest.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(b'a'), Just(b's'), Just(b'd'), Just(b'm'), any::<u8>()],
            vec(any::<u8>(), 0..40),
        )
            .prop_map(|(k, rest)| {
                let mut v = vec![k, 0];
                v.extend(rest);
                v
            })
    }

    /// A valid record of each kind, its fields arbitrary.
    fn record() -> impl Strategy<Value = resource::Resource> {
        ("\\PC{0,20}", "\\PC{0,20}", any::<u64>(), any::<i32>()).prop_flat_map(|(a, b, n, p)| {
            prop_oneof![
                Just(resource::Resource::Api(Api {
                    api_id: a.clone(),
                    name: b.clone(),
                    protocol_type: p,
                    mod_revision: n,
                    ..Default::default()
                })),
                Just(resource::Resource::Stage(Stage {
                    api_id: a.clone(),
                    stage_name: b.clone(),
                    ..Default::default()
                })),
                Just(resource::Resource::DomainName(DomainName {
                    domain_name: a.clone(),
                    ..Default::default()
                })),
                Just(resource::Resource::ApiMapping(ApiMapping {
                    domain_name: a,
                    api_mapping_key: b,
                    create_revision: n,
                    ..Default::default()
                })),
            ]
        })
    }

    /// `bytes` with one change: cut at `at`, one byte flipped, or bytes inserted.
    fn mutate(mut bytes: Vec<u8>, how: u8, at: usize, with: Vec<u8>) -> Vec<u8> {
        if bytes.is_empty() {
            return with;
        }
        let at = at % bytes.len();
        match how % 3 {
            0 => bytes.truncate(at),
            1 => bytes[at] ^= with.first().copied().unwrap_or(0xff) | 1,
            _ => {
                bytes.splice(at..at, with);
            }
        }
        bytes
    }

    /// Entries numbered from revision 1.
    fn listed(entries: &[Vec<u8>]) -> impl Iterator<Item = (u64, &[u8])> {
        (1u64..).zip(entries.iter().map(Vec::as_slice))
    }

    proptest! {
        #[test]
        fn prop_record_decoding_never_panics(k in key(), value in vec(any::<u8>(), 0..200)) {
            let _ = decode_record(&k, &value);
            let _ = decode_u64(&value);
        }

        #[test]
        fn prop_mutated_records_decode_or_fail(
            r in record(),
            how in any::<u8>(),
            at in any::<usize>(),
            with in vec(any::<u8>(), 1..8),
        ) {
            let k = crate::store::keys::of(&r);
            let encoded = encode_record(&r);
            prop_assert_eq!(decode_record(&k, &encoded).ok(), Some(Some(r)));
            let _ = decode_record(&k, &mutate(encoded, how, at, with));
        }

        #[test]
        fn prop_change_log_entries_never_panic(bytes in vec(any::<u8>(), 0..300)) {
            let _ = decode_change_set(&bytes);
            let (cs, hash) = history::split(&bytes);
            match hash {
                Some(_) => prop_assert_eq!(cs.len() + 34, bytes.len()),
                None => prop_assert_eq!(cs.len(), bytes.len()),
            }
            let _ = decode_change_set(cs);
            let _ = history::verify(0, history::ZERO, [(1u64, bytes.as_slice())]);
        }

        #[test]
        fn prop_the_chain_catches_a_changed_entry(
            sets in vec(vec(any::<u8>(), 0..60), 1..6),
            which in any::<usize>(),
            how in any::<u8>(),
            at in any::<usize>(),
            with in vec(any::<u8>(), 1..8),
        ) {
            // A valid chain of hashed entries verifies, and its entries split back.
            let mut prev = history::ZERO;
            let mut entries = Vec::new();
            for cs in &sets {
                let h = history::next(&prev, cs);
                entries.push(history::entry(cs.clone(), &h));
                prev = h;
            }
            prop_assert_eq!(history::verify(0, history::ZERO, listed(&entries)).ok(), Some(prev));
            for (e, cs) in entries.iter().zip(&sets) {
                prop_assert_eq!(history::split(e).0, cs.as_slice());
            }
            // One entry changed inside its change set (its trailer intact): refused.
            let i = which % entries.len();
            let cs_len = sets[i].len();
            if cs_len > 0 {
                let mut changed = mutate(sets[i].clone(), how, at, with);
                if changed == sets[i] {
                    return Ok(());
                }
                let stored = history::split(&entries[i]).1.unwrap_or(history::ZERO);
                changed = history::entry(changed, &stored);
                entries[i] = changed;
                prop_assert!(history::verify(0, history::ZERO, listed(&entries)).is_err());
            }
        }

        #[test]
        fn prop_valid_change_sets_round_trip(
            principal in "\\PC{0,20}",
            r in record(),
        ) {
            let cs = ChangeSet {
                principal,
                events: vec![Event {
                    r#type: EventType::Put as i32,
                    resource: Some(Resource { resource: Some(r) }),
                }],
                ..Default::default()
            };
            let bytes = cs.encode_to_vec();
            let entry = history::entry(bytes.clone(), &history::next(&history::ZERO, &bytes));
            // A plain ChangeSet decoder reads a hashed entry unchanged (field 15 is unknown).
            prop_assert_eq!(decode_change_set(&entry).ok(), Some(cs.clone()));
            prop_assert_eq!(decode_change_set(history::split(&entry).0).ok(), Some(cs));
        }
    }
}
