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
