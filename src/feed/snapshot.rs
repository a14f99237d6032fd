//! An exact snapshot as of one revision, read while writes go on, without stopping them and
//! without holding the whole state in memory.
//!
//! sled has no point-in-time read across a long scan, so the snapshot is made exact this way:
//! a [`Recorder`] is registered with the writer thread between two writes, at revision `R0`.
//! From then on every write tells it, before committing, which records it touches and their
//! state before the write. The scan walks the records in key order:
//!
//! - a record nobody touched since `R0` has its `R0` state in the store: it is sent as read;
//! - a record touched after the scan passed it was already sent with its `R0` state;
//! - a record touched before the scan reached it is skipped by the scan, and its state before
//!   the first touch (its `R0` state, or nothing if it was created after `R0`) is sent at the
//!   end.
//!
//! Memory: one chunk of records, plus the records written during the scan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pb::Resource;
use crate::store::TouchObserver;

/// Records in one `snapshot` message at most.
pub const CHUNK_RECORDS: usize = 500;
/// Encoded bytes in one `snapshot` message, roughly at most.
pub const CHUNK_BYTES: usize = 512 * 1024;

#[derive(Default)]
struct State {
    /// The last record key the scan has dealt with.
    position: Option<Vec<u8>>,
    /// Records touched since `R0`. `Some(prev)`: not sent yet, and `prev` is its `R0` state to
    /// send at the end (None: it did not exist at `R0`). `None`: nothing left to do for it.
    touched: HashMap<Vec<u8>, Option<Option<Resource>>>,
}

/// Observes writes during a snapshot scan; see the module documentation.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl TouchObserver for Recorder {
    fn touched(&self, key: &[u8], prev: Option<&Resource>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.touched.contains_key(key) {
            return; // Only the first touch after R0 knows the R0 state.
        }
        let already_sent = s.position.as_deref().is_some_and(|p| key <= p);
        let entry = if already_sent {
            None
        } else {
            Some(prev.cloned())
        };
        s.touched.insert(key.to_vec(), entry);
    }
}

impl Recorder {
    /// Whether the scan should send the record at `key` it just read; moves the scan position.
    pub fn take(&self, key: &[u8]) -> Result<bool> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| Error::internal("snapshot recorder poisoned"))?;
        s.position = Some(key.to_vec());
        Ok(!s.touched.contains_key(key))
    }

    /// After the scan: the `R0` state of every record that was touched before the scan
    /// reached it and existed at `R0`.
    pub fn leftovers(&self) -> Result<Vec<Resource>> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| Error::internal("snapshot recorder poisoned"))?;
        // Everything is dealt with from here on: later touches must not add anything.
        s.position = Some(vec![0xff; 8]);
        Ok(s.touched
            .values_mut()
            .filter_map(|v| v.take().flatten())
            .collect())
    }
}

/// A lazily read record scan that can move between blocking tasks.
pub type Records = Box<dyn Iterator<Item = Result<(Vec<u8>, Resource)>> + Send>;

/// Reads the next chunk of records the filter `keep` accepts, on the calling (blocking)
/// thread. Returns the chunk and whether the scan is finished.
pub fn next_chunk(
    records: &mut Records,
    recorder: &Arc<Recorder>,
    keep: &dyn Fn(&Resource) -> bool,
) -> Result<(Vec<Resource>, bool)> {
    use prost::Message;
    let mut chunk = Vec::new();
    let mut bytes = 0;
    while chunk.len() < CHUNK_RECORDS && bytes < CHUNK_BYTES {
        match records.next() {
            None => return Ok((chunk, true)),
            Some(r) => {
                let (key, resource) = r?;
                if recorder.take(&key)? && keep(&resource) {
                    bytes += resource.encoded_len();
                    chunk.push(resource);
                }
            }
        }
    }
    Ok((chunk, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{Api, resource};

    fn api(id: &str, name: &str) -> Resource {
        Resource {
            resource: Some(resource::Resource::Api(Api {
                api_id: id.into(),
                name: name.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn touched_before_the_scan_is_sent_from_its_first_prev() {
        let r = Recorder::default();
        assert!(r.take(b"a").unwrap());
        // "c" is updated twice before the scan reaches it: the first prev is the R0 state.
        r.touched(b"c", Some(&api("c", "old")));
        r.touched(b"c", Some(&api("c", "newer")));
        // "b" is created after R0: nothing to send for it.
        r.touched(b"b", None);
        // "a" changes after the scan sent it: nothing more to send.
        r.touched(b"a", Some(&api("a", "x")));
        assert!(!r.take(b"b").unwrap());
        assert!(!r.take(b"c").unwrap());
        assert!(r.take(b"d").unwrap());
        let left = r.leftovers().unwrap();
        assert_eq!(left, vec![api("c", "old")]);
        // Touches after the end change nothing.
        r.touched(b"e", Some(&api("e", "x")));
        assert!(r.leftovers().unwrap().is_empty());
    }
}
