//! The durable high-water mark: the last acknowledged revision and its history hash, kept in a
//! small file beside the engine's files (`<data-dir>/mapreg-highwater`), so that a store that
//! comes back OLDER than what was acknowledged (a truncated file sled silently recovers from,
//! a disk snapshot rolled back under a running fleet) is refused at start instead of served.
//!
//! The file is rewritten (write to a temporary file, rename) after durable groups, without an
//! fsync of its own, by a [`Keeper`] thread off the write path: it holds only revisions already
//! durable, at most [`Keeper::INTERVAL`] behind the newest one while writes go on, and the
//! newest one once the server stops. It may lag the store (after a crash or power loss), never
//! run ahead of it, so it never refuses a good store. It names the store it belongs to; a file
//! of another store (a restored snapshot has a new `store_id`) is replaced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::history::Hash;
use crate::error::{Error, Result};

/// The file name inside the data dir.
pub const FILE: &str = "mapreg-highwater";

/// A recorded high-water mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The store it belongs to.
    pub store_id: String,
    /// The last acknowledged revision.
    pub revision: u64,
    /// Its history hash.
    pub hash: Hash,
}

/// Where the mark of the store in `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

impl Mark {
    /// The file's text: `store_id revision hash-hex`.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {}\n",
            self.store_id,
            self.revision,
            hex::encode(self.hash)
        )
    }

    /// Parses [`Mark::encode`]'s text.
    pub fn decode(text: &str) -> Option<Mark> {
        let mut parts = text.split_whitespace();
        let store_id = parts.next()?.to_string();
        let revision = parts.next()?.parse().ok()?;
        let hash = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        Some(Mark {
            store_id,
            revision,
            hash,
        })
    }
}

/// Reads the mark at `path`; None if there is none. An unreadable or garbled file is an error
/// (it is not for mapreg to guess what the store held).
pub fn read(path: &Path) -> Result<Option<Mark>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Mark::decode(&text).map(Some).ok_or_else(|| {
            Error::Corrupt(format!(
                "the high-water mark {} is garbled; delete it if the store is known good",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::internal(format!(
            "cannot read the high-water mark {}: {e}",
            path.display()
        ))),
    }
}

/// Replaces the mark at `path` (temporary file, then rename; no fsync, see the module docs).
pub fn write(path: &Path, mark: &Mark) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, mark.encode())?;
    std::fs::rename(&tmp, path)
}

/// Writes the marks of a running store on a thread of its own, so that the writer's groups do
/// not wait for a file's rewrite (a rename that makes ext4 start writing the file back: about a
/// fifth of the writer thread's time when it was done inline). Marks only move forward; the
/// newest one noted is written at the latest [`Keeper::INTERVAL`] after the one before it, and
/// at once by [`Keeper::sync`] and when the keeper is dropped.
pub struct Keeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while the file is written; the revision last written.
    written: Mutex<u64>,
}

#[derive(Default)]
struct Pending {
    mark: Option<Mark>,
    closed: bool,
}

impl Keeper {
    /// The longest the file stays behind the newest durable revision while writes go on.
    pub const INTERVAL: Duration = Duration::from_millis(20);

    /// Writes `first` at `path` now (a failure is logged, as every later one is), then keeps
    /// the file from a thread of its own.
    pub fn start(path: PathBuf, first: Option<&Mark>) -> std::io::Result<Keeper> {
        let shared = Arc::new(Shared {
            path,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Mutex::new(0),
        });
        if let Some(m) = first {
            shared.put(m);
        }
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("mapreg-highwater".into())
                .spawn(move || shared.run())?
        };
        Ok(Keeper {
            shared,
            thread: Some(thread),
        })
    }

    /// Notes a newly durable mark; it is written soon, off the caller's thread. Never blocks
    /// on the file.
    pub fn note(&self, mark: Mark) {
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if p.mark.as_ref().is_none_or(|m| m.revision < mark.revision) {
            p.mark = Some(mark);
            self.shared.wake.notify_one();
        }
    }

    /// Writes the newest noted mark now, on the caller's thread (at a clean stop).
    pub fn sync(&self) {
        let mark = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mark
            .take();
        if let Some(m) = mark {
            self.shared.put(&m);
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn run(&self) {
        loop {
            let (mark, closed) = {
                let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                while p.mark.is_none() && !p.closed {
                    p = self.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                (p.mark.take(), p.closed)
            };
            if let Some(m) = mark {
                self.put(&m);
            }
            if closed {
                return;
            }
            // Marks noted meanwhile are folded into one write.
            std::thread::sleep(Keeper::INTERVAL);
        }
    }

    /// Writes `mark` unless a newer one was already written.
    fn put(&self, mark: &Mark) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if mark.revision < *written {
            return;
        }
        match write(&self.path, mark) {
            Ok(()) => *written = mark.revision,
            Err(e) => tracing::warn!(
                error = %e,
                path = %self.path.display(),
                "cannot write the high-water mark"
            ),
        }
    }
}

/// Why a store must not be served under its mark, if it must not: the store (at `revision`,
/// with `hash_at` giving its history hash at a revision) is behind the mark, or has another
/// history at the mark's revision.
pub fn refusal(
    mark: &Mark,
    store_id: &str,
    revision: u64,
    hash_at: impl Fn(u64) -> Result<Option<Hash>>,
) -> Result<Option<String>> {
    if mark.store_id != store_id {
        return Ok(None);
    }
    if mark.revision > revision {
        return Ok(Some(format!(
            "the store is at revision {revision}, but revision {} was acknowledged to clients \
             (high-water mark): the data dir was rolled back or truncated",
            mark.revision
        )));
    }
    match hash_at(mark.revision)? {
        Some(h) if h != mark.hash => Ok(Some(format!(
            "the store's history hash at revision {} is {}, but {} was acknowledged \
             (high-water mark): the data dir holds another history",
            mark.revision,
            hex::encode(h),
            hex::encode(mark.hash)
        ))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_refuse_rollbacks_only() {
        let m = Mark {
            store_id: "s1".into(),
            revision: 300,
            hash: [7; 32],
        };
        assert_eq!(Mark::decode(&m.encode()), Some(m.clone()));
        assert_eq!(Mark::decode("s1 x"), None);
        let same = |_| Ok(Some([7; 32]));
        assert!(
            refusal(&m, "s1", 155, same)
                .unwrap()
                .unwrap()
                .contains("155")
        );
        assert_eq!(refusal(&m, "s1", 300, same).unwrap(), None);
        assert_eq!(refusal(&m, "s1", 400, same).unwrap(), None);
        assert!(
            refusal(&m, "s1", 300, |_| Ok(Some([8; 32])))
                .unwrap()
                .unwrap()
                .contains("another history")
        );
        // Compacted past the mark: nothing to compare.
        assert_eq!(refusal(&m, "s1", 400, |_| Ok(None)).unwrap(), None);
        // Another store's mark says nothing about this one.
        assert_eq!(refusal(&m, "s2", 1, same).unwrap(), None);
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(read(&p).unwrap(), None);
        let m = Mark {
            store_id: "s".into(),
            revision: 3,
            hash: [1; 32],
        };
        write(&p, &m).unwrap();
        assert_eq!(read(&p).unwrap(), Some(m));
        std::fs::write(&p, "junk").unwrap();
        assert!(matches!(read(&p), Err(Error::Corrupt(_))));
    }

    fn mark(revision: u64) -> Mark {
        Mark {
            store_id: "s".into(),
            revision,
            hash: [revision as u8; 32],
        }
    }

    #[test]
    fn the_keeper_writes_the_newest_mark_soon_never_an_older_one_and_the_last_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let k = Keeper::start(p.clone(), Some(&mark(1))).unwrap();
        // The first mark is in the file when `start` returns.
        assert_eq!(read(&p).unwrap(), Some(mark(1)));
        for r in 2..=200 {
            k.note(mark(r));
        }
        // Written from the keeper's thread, within a few intervals.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read(&p).unwrap() != Some(mark(200)) {
            assert!(std::time::Instant::now() < deadline, "{:?}", read(&p));
            std::thread::sleep(Duration::from_millis(5));
        }
        // An older mark noted late never replaces a newer one.
        k.note(mark(150));
        k.sync();
        assert_eq!(read(&p).unwrap(), Some(mark(200)));
        k.note(mark(201));
        k.sync();
        assert_eq!(read(&p).unwrap(), Some(mark(201)));
        // The last mark noted is written when the keeper stops.
        k.note(mark(202));
        drop(k);
        assert_eq!(read(&p).unwrap(), Some(mark(202)));
    }
}
