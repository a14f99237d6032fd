//! How a [`WriteOp`] and its [`WriteResult`] travel between the nodes of one store: a node that
//! is not the elected writer hands its validated writes to the one that is
//! ([`crate::cluster`]). The op is JSON; the protobuf types it holds are their protobuf
//! encoding inside it, so a field added to them travels too. Both nodes run the same build in
//! a healthy cluster; an op one cannot read is refused whole, never half-applied.

use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{WriteOp, WriteResult};
use crate::error::{Error, Result};
use crate::pb::ProtocolType;

impl WriteOp {
    /// The op, encoded for another node.
    pub fn to_wire(&self) -> Vec<u8> {
        // Serializing these types (strings, maps, byte vectors) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An op another node encoded with [`to_wire`](WriteOp::to_wire).
    pub fn from_wire(bytes: &[u8]) -> Result<WriteOp> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::internal(format!(
                "a forwarded write could not be read ({e}): do the nodes run different versions?"
            ))
        })
    }
}

impl WriteResult {
    /// The revision the write took (0 for a dry run's result).
    pub fn revision(&self) -> u64 {
        match self {
            WriteResult::Api(a) => a.mod_revision,
            WriteResult::Stage(s) => s.mod_revision,
            WriteResult::DomainName(d) => d.mod_revision,
            WriteResult::ApiMapping(m) => m.mod_revision,
            WriteResult::Deleted(r) => *r,
        }
    }
}

/// A protobuf enum as its number.
pub(crate) mod protocol {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(p: &ProtocolType, s: S) -> Result<S::Ok, S::Error> {
        (*p as i32).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProtocolType, D::Error> {
        let n = i32::deserialize(d)?;
        ProtocolType::try_from(n)
            .map_err(|_| serde::de::Error::custom(format!("unknown protocol type {n}")))
    }
}

/// A protobuf message as its encoding.
pub(crate) mod message {
    use super::*;

    pub(crate) fn serialize<M: Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        m.encode_to_vec().serialize(s)
    }

    pub(crate) fn deserialize<'de, M: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<M, D::Error> {
        let bytes = Vec::<u8>::deserialize(d)?;
        M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
    }
}

/// An optional protobuf message as its encoding.
pub(crate) mod optional_message {
    use super::*;

    pub(crate) fn serialize<M: Message, S: Serializer>(
        m: &Option<M>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.as_ref().map(Message::encode_to_vec).serialize(s)
    }

    pub(crate) fn deserialize<'de, M: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<M>, D::Error> {
        Option::<Vec<u8>>::deserialize(d)?
            .map(|bytes| M::decode(bytes.as_slice()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::pb::DomainNameConfiguration;

    #[test]
    fn every_kind_of_op_survives_the_trip() {
        let ops = [
            WriteOp::CreateApi {
                account: "123456789012".into(),
                name: "ws".into(),
                protocol: ProtocolType::Websocket,
                description: "d".into(),
                tags: HashMap::from([("k".into(), "v".into())]),
                selection: crate::domain::selection::Selection {
                    route: "$request.body.action".into(),
                    api_key: "$request.header.x-api-key".into(),
                },
            },
            WriteOp::CreateDomainName {
                account: "a".into(),
                domain_name: "api.example.com".into(),
                configuration: DomainNameConfiguration {
                    endpoint_type: 2,
                    ..Default::default()
                },
                tags: HashMap::new(),
            },
            WriteOp::UpdateDomainName {
                account: "a".into(),
                domain_name: "api.example.com".into(),
                configuration: None,
                expected_revision: 7,
            },
            WriteOp::Tag {
                account: "a".into(),
                target: crate::domain::arn::Tagged::Stage {
                    api_id: "abc".into(),
                    stage_name: "prod".into(),
                },
                set: HashMap::new(),
                remove: vec!["x".into()],
                expected_revision: 0,
            },
        ];
        for op in ops {
            let back = WriteOp::from_wire(&op.to_wire()).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
    }

    #[test]
    fn an_unreadable_op_is_refused() {
        assert!(WriteOp::from_wire(b"{\"Nope\":{}}").is_err());
        assert!(WriteOp::from_wire(b"\xff").is_err());
    }
}
