//! History hashes (SPEC.md section 8.3): every revision R has
//! `history_hash(R) = SHA-256(history_hash(R - 1) ‖ encoding of R's ChangeSet)`, and
//! `history_hash(0)` is 32 zero bytes. Two stores with the same `store_id` whose hashes at one
//! revision differ have different histories (a restored copy, a rolled-back disk): a watcher
//! resuming with the hash it holds is told so instead of silently following another history.
//!
//! Storage: a change-log entry is the encoded `ChangeSet` followed by a trailer, the revision's
//! hash as protobuf field 15 (bytes, 32 long). `ChangeSet` has no field 15, so a plain
//! `ChangeSet` decoder reads an entry unchanged, and the hash is stored in the same atomic
//! batch as the revision it covers. Entries written before hashes existed have no trailer;
//! their hashes are computed from the chain when the store opens.

use std::collections::VecDeque;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A history hash.
pub type Hash = [u8; 32];

/// The hash of revision 0: 32 zero bytes.
pub const ZERO: Hash = [0u8; 32];

/// The trailer's first two bytes: field 15, wire type 2 (bytes), length 32.
const TRAILER_TAG: [u8; 2] = [0x7a, 0x20];
/// Trailer length: tag, length, hash.
const TRAILER: usize = 34;

/// How many recent hashes the registry keeps in memory (older ones are read from the log).
pub const RECENT: usize = 8192;

/// The hash following `prev` over a change set's encoding.
pub fn next(prev: &Hash, change_set: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(change_set);
    h.finalize().into()
}

/// A log entry: `change_set` (an encoded ChangeSet) with `hash` as its trailer.
pub fn entry(mut change_set: Vec<u8>, hash: &Hash) -> Vec<u8> {
    change_set.reserve(TRAILER);
    change_set.extend_from_slice(&TRAILER_TAG);
    change_set.extend_from_slice(hash);
    change_set
}

/// Splits a log entry into the encoded ChangeSet and its stored hash (None: an entry written
/// before hashes existed).
pub fn split(entry: &[u8]) -> (&[u8], Option<Hash>) {
    if entry.len() >= TRAILER && entry[entry.len() - TRAILER..][..2] == TRAILER_TAG {
        let (cs, trailer) = entry.split_at(entry.len() - TRAILER);
        let mut h = ZERO;
        h.copy_from_slice(&trailer[2..]);
        (cs, Some(h))
    } else {
        (entry, None)
    }
}

/// Follows the chain over log entries: checks each stored hash against the one computed from
/// the previous, and returns the hash of the last entry. `entries` must be contiguous from
/// `start + 1`; `start_hash` is the hash at `start`.
pub fn verify<'a>(
    start: u64,
    start_hash: Hash,
    entries: impl IntoIterator<Item = (u64, &'a [u8])>,
) -> Result<Hash> {
    let mut prev = start_hash;
    for (expect, (rev, e)) in (start + 1..).zip(entries) {
        if rev != expect {
            return Err(Error::Corrupt(format!(
                "the change log jumps from revision {} to {rev}",
                expect - 1
            )));
        }
        let (cs, stored) = split(e);
        let h = next(&prev, cs);
        if let Some(s) = stored
            && s != h
        {
            return Err(Error::Corrupt(format!(
                "the history hash chain is broken at revision {rev}: the stored hash is {}, the \
                 chain gives {}",
                hex::encode(s),
                hex::encode(h)
            )));
        }
        prev = h;
    }
    Ok(prev)
}

/// Hashes of recent revisions, and of the compaction point, kept by the registry.
#[derive(Debug, Default)]
pub struct Recent {
    inner: Mutex<RecentInner>,
}

#[derive(Debug, Default)]
struct RecentInner {
    /// (revision, hash), contiguous, newest last.
    hashes: VecDeque<(u64, Hash)>,
}

impl Recent {
    /// Records the hash of `revision`, the next one after the newest recorded.
    pub fn push(&self, revision: u64, hash: Hash) {
        if let Ok(mut g) = self.inner.lock() {
            if g.hashes.back().is_some_and(|(r, _)| *r + 1 != revision) {
                g.hashes.clear();
            }
            g.hashes.push_back((revision, hash));
            while g.hashes.len() > RECENT {
                g.hashes.pop_front();
            }
        }
    }

    /// Forgets every hash above `revision` (the store went back to it).
    pub fn truncate_after(&self, revision: u64) {
        if let Ok(mut g) = self.inner.lock() {
            while g.hashes.back().is_some_and(|(r, _)| *r > revision) {
                g.hashes.pop_back();
            }
        }
    }

    /// The hash of `revision`, if it is among the recent ones.
    pub fn get(&self, revision: u64) -> Option<Hash> {
        let g = self.inner.lock().ok()?;
        let (first, _) = *g.hashes.front()?;
        let i = usize::try_from(revision.checked_sub(first)?).ok()?;
        g.hashes.get(i).map(|(_, h)| *h)
    }

    /// The newest (revision, hash).
    pub fn head(&self) -> Option<(u64, Hash)> {
        self.inner.lock().ok()?.hashes.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_plain_change_sets_have_no_hash() {
        let h = next(&ZERO, b"abc");
        let e = entry(b"abc".to_vec(), &h);
        assert_eq!(split(&e), (&b"abc"[..], Some(h)));
        assert_eq!(split(b"abc"), (&b"abc"[..], None));
        // A ChangeSet decoder ignores the trailer.
        use prost::Message;
        let cs = crate::pb::ChangeSet {
            principal: "p".into(),
            ..Default::default()
        };
        let e = entry(cs.encode_to_vec(), &h);
        assert_eq!(crate::pb::ChangeSet::decode(e.as_slice()).unwrap(), cs);
    }

    #[test]
    fn verify_follows_the_chain_and_names_the_broken_revision() {
        let h1 = next(&ZERO, b"one");
        let h2 = next(&h1, b"two");
        let e1 = entry(b"one".to_vec(), &h1);
        let e2 = entry(b"two".to_vec(), &h2);
        assert_eq!(
            verify(0, ZERO, [(1, e1.as_slice()), (2, e2.as_slice())]).unwrap(),
            h2
        );
        // Legacy entries without a trailer are chained, not checked.
        assert_eq!(
            verify(0, ZERO, [(1, &b"one"[..]), (2, e2.as_slice())]).unwrap(),
            h2
        );
        let bad = entry(b"two".to_vec(), &h1);
        let err = verify(0, ZERO, [(1, e1.as_slice()), (2, bad.as_slice())]).unwrap_err();
        assert!(err.to_string().contains("revision 2"), "{err}");
        let err = verify(0, ZERO, [(2, e2.as_slice())]).unwrap_err();
        assert!(err.to_string().contains("jumps"), "{err}");
    }

    #[test]
    fn recent_keeps_a_contiguous_window() {
        let r = Recent::default();
        r.push(5, [5; 32]);
        r.push(6, [6; 32]);
        assert_eq!(r.get(5), Some([5; 32]));
        assert_eq!(r.get(7), None);
        assert_eq!(r.get(4), None);
        r.truncate_after(5);
        assert_eq!(r.head(), Some((5, [5; 32])));
        r.push(9, [9; 32]);
        assert_eq!(r.get(5), None);
        assert_eq!(r.head(), Some((9, [9; 32])));
    }
}
