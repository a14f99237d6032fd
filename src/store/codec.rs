//! Encoding of records and index values. Records are the public protobuf messages (so the
//! stored form evolves as the contract does); counters and reference counts are small
//! hand-rolled encodings with a decoder that refuses anything malformed.

use prost::Message;

use crate::domain::{DomainCounters, RefCounts};
use crate::error::{Error, Result};

/// Decodes a stored record.
pub fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    Ok(M::decode(bytes)?)
}

/// A big-endian u64 (revisions).
pub fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::internal("corrupt u64 value"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Encodes domain counters as four big-endian u64s.
pub fn encode_counters(c: &DomainCounters) -> Vec<u8> {
    [c.websocket, c.http, c.rest, c.multi_level]
        .iter()
        .flat_map(|n| n.to_be_bytes())
        .collect()
}

/// Decodes domain counters; absent means all zero.
pub fn decode_counters(bytes: Option<&[u8]>) -> Result<DomainCounters> {
    let Some(bytes) = bytes else {
        return Ok(DomainCounters::default());
    };
    if bytes.len() != 32 {
        return Err(Error::internal("corrupt domain counters"));
    }
    let n = |i: usize| decode_u64(&bytes[i * 8..i * 8 + 8]);
    Ok(DomainCounters {
        websocket: n(0)?,
        http: n(1)?,
        rest: n(2)?,
        multi_level: n(3)?,
    })
}

/// Encodes reference counts as `domain SP count LF` lines.
pub fn encode_refs(refs: &RefCounts) -> Vec<u8> {
    let mut out = String::new();
    for (domain, n) in refs {
        out.push_str(domain);
        out.push(' ');
        out.push_str(&n.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// Decodes reference counts; absent means none.
pub fn decode_refs(bytes: Option<&[u8]>) -> Result<RefCounts> {
    let mut refs = RefCounts::new();
    let Some(bytes) = bytes else {
        return Ok(refs);
    };
    let text = std::str::from_utf8(bytes).map_err(|_| Error::internal("corrupt references"))?;
    for line in text.lines() {
        let (domain, n) = line
            .split_once(' ')
            .ok_or_else(|| Error::internal("corrupt references"))?;
        let n: u64 = n
            .parse()
            .map_err(|_| Error::internal("corrupt references"))?;
        refs.insert(domain.to_string(), n);
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = DomainCounters {
            websocket: 1,
            http: 2,
            rest: 3,
            multi_level: 4,
        };
        assert_eq!(decode_counters(Some(&encode_counters(&c))).ok(), Some(c));
        assert!(decode_counters(Some(b"short")).is_err());
        let mut r = RefCounts::new();
        r.insert("a.com".into(), 2);
        r.insert("*.b.com".into(), 1);
        assert_eq!(decode_refs(Some(&encode_refs(&r))).ok(), Some(r));
        assert!(decode_refs(Some(b"nonsense")).is_err());
    }
}
