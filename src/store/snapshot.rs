//! Snapshot files (SPEC.md 8.3): the state of a store at one revision, as `mapreg snapshot
//! save` writes it from a Watch snapshot, and [`restore`] makes a NEW store from it offline.
//!
//! # Format, version 1
//!
//! | bytes                 | what                                                           |
//! |-----------------------|----------------------------------------------------------------|
//! | 16                    | magic `mapreg-snapshot\n`                                      |
//! | 4                     | format version, big-endian u32: `1`                            |
//! | frames                | each: 1 tag byte, a protobuf varint length, that many bytes    |
//! | 32                    | SHA-256 of every byte before it                                |
//!
//! Frames: tag `1` is one record, a `mapreg.v1.Resource` (change_feed.proto) exactly as the
//! Watch snapshot sent it (revisions included); tag `2` is the [`Footer`], the last frame,
//! which names the store, the revision and its history hash and counts the records. Anything
//! else (an unknown tag, a frame after the footer, a missing footer, a count that differs, a
//! checksum that differs) makes the file refused as damaged: a snapshot is restored whole or
//! not at all. A later format gets a new version number; version 1 readers refuse it.
//!
//! # Restoring
//!
//! [`restore`] verifies the file, then checks the records against every rule exactly as
//! `mapreg check` checks a data dir (on a store built in memory first), and only then writes a
//! sled store: every record with its revisions, the store's revision and compaction point at
//! the snapshot's revision with its history hash (the log before it is gone, so a watcher
//! can only start from a snapshot), a new random `store_id` (a gateway that followed the old
//! store is told `STORE_CHANGED`) and the high-water mark. The store is built in a sibling
//! directory and renamed into place, so a failed restore leaves no half store behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use super::history::{self, Hash};
use super::{Batch, CommitError, Engine, check, codec, highwater, keys, registry};
use crate::error::Error;
use crate::pb::{Resource, resource};

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 16] = b"mapreg-snapshot\n";

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

const TAG_RECORD: u8 = 1;
const TAG_FOOTER: u8 = 2;

/// The last frame of a snapshot file: what the records are the state of.
#[derive(Clone, PartialEq, Message)]
pub struct Footer {
    /// The `store_id` of the store that was saved.
    #[prost(string, tag = "1")]
    pub store_id: String,
    /// The revision the records are the state at.
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    /// The history hash at `revision` (32 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub history_hash: Vec<u8>,
    /// How many record frames come before it.
    #[prost(uint64, tag = "4")]
    pub records: u64,
}

/// Why a snapshot could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file is not a complete, intact snapshot (truncated, garbled, another format).
    #[error("{path} is not an intact mapreg snapshot: {why}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The records break rules of the registry (the snapshot was not made by mapreg, or by a
    /// caller that could not see every record the saved ones refer to).
    #[error("the snapshot's records break the registry's rules: {0}")]
    Invalid(String),
    /// The target already holds a store or other files.
    #[error(
        "{0} is not empty (it holds a store or other files); restore into a new or empty \
         directory"
    )]
    TargetNotEmpty(PathBuf),
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The new store could not be written.
    #[error("cannot write the new store: {0}")]
    Store(#[from] Error),
}

/// A snapshot read from a file and verified.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What the records are the state of.
    pub footer: Footer,
    /// Every record, in file order.
    pub records: Vec<resource::Resource>,
}

/// Writes snapshot files frame by frame, hashing as it goes.
pub struct Writer<W: std::io::Write> {
    out: W,
    sha: Sha256,
    records: u64,
}

impl<W: std::io::Write> Writer<W> {
    /// Starts a file: writes the magic and the version.
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut w = Writer {
            out,
            sha: Sha256::new(),
            records: 0,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sha.update(bytes);
        self.out.write_all(bytes)
    }

    fn frame(&mut self, tag: u8, m: &impl Message) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(m.encoded_len() + 11);
        buf.push(tag);
        m.encode_length_delimited(&mut buf)
            .map_err(std::io::Error::other)?;
        self.put(&buf)
    }

    /// Adds one record.
    pub fn record(&mut self, r: &Resource) -> std::io::Result<()> {
        self.records += 1;
        self.frame(TAG_RECORD, r)
    }

    /// Ends the file with the footer (its `records` is set to the count written) and the
    /// checksum; returns the output and the footer.
    pub fn finish(mut self, mut footer: Footer) -> std::io::Result<(W, Footer)> {
        footer.records = self.records;
        self.frame(TAG_FOOTER, &footer)?;
        let sum = self.sha.clone().finalize();
        self.out.write_all(&sum)?;
        self.out.flush()?;
        Ok((self.out, footer))
    }
}

/// Parses and verifies the bytes of a snapshot file (`path` only names it in errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let damaged = |why: String| SnapshotError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(damaged(
            "it does not start like one (wrong magic bytes)".into(),
        ));
    }
    if bytes.len() < MAGIC.len() + 4 + 32 {
        return Err(damaged(format!("it is truncated ({} bytes)", bytes.len())));
    }
    let version = u32::from_be_bytes(
        bytes[MAGIC.len()..MAGIC.len() + 4]
            .try_into()
            .map_err(|_| damaged("no version".into()))?,
    );
    if version != VERSION {
        return Err(damaged(format!(
            "format version {version}; this mapreg reads version {VERSION}"
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(damaged(
            "its checksum does not match (the file is truncated or was changed)".into(),
        ));
    }
    let mut rest = &body[MAGIC.len() + 4..];
    let mut records = Vec::new();
    let mut footer = None;
    while !rest.is_empty() {
        if footer.is_some() {
            return Err(damaged("data after the footer".into()));
        }
        let tag = rest[0];
        rest = &rest[1..];
        let len = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| damaged(format!("a frame length does not decode: {e}")))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= rest.len())
            .ok_or_else(|| damaged("a frame runs past the end of the file".into()))?;
        let (frame, after) = rest.split_at(len);
        rest = after;
        match tag {
            TAG_RECORD => {
                let r = Resource::decode(frame).map_err(|e| {
                    damaged(format!("record {} does not decode: {e}", records.len()))
                })?;
                let r = r
                    .resource
                    .ok_or_else(|| damaged(format!("record {} is empty", records.len())))?;
                records.push(r);
            }
            TAG_FOOTER => {
                footer = Some(
                    Footer::decode(frame)
                        .map_err(|e| damaged(format!("the footer does not decode: {e}")))?,
                );
            }
            other => return Err(damaged(format!("unknown frame tag {other}"))),
        }
    }
    let footer = footer.ok_or_else(|| damaged("it has no footer".into()))?;
    if footer.records != records.len() as u64 {
        return Err(damaged(format!(
            "the footer counts {} records, the file holds {}",
            footer.records,
            records.len()
        )));
    }
    if footer.history_hash.len() != 32 {
        return Err(damaged("the history hash is not 32 bytes".into()));
    }
    Ok(Snapshot { footer, records })
}

/// Reads and verifies the snapshot file at `path`.
pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let bytes = std::fs::read(path).map_err(|source| SnapshotError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &bytes)
}

impl Snapshot {
    /// The history hash at the snapshot's revision.
    pub fn hash(&self) -> Hash {
        let mut h = history::ZERO;
        h.copy_from_slice(&self.footer.history_hash);
        h
    }

    /// Writes the snapshot into an empty store `engine`: its records at the snapshot's
    /// revision, the compaction point there with the snapshot's history hash.
    fn write_into(&self, engine: &dyn Engine) -> Result<(), SnapshotError> {
        let revision = self.footer.revision;
        for r in &self.records {
            let m = registry::mod_revision(r);
            if m > revision || m == 0 {
                return Err(SnapshotError::Invalid(format!(
                    "record {} has mod_revision {m}, not in 1..={revision}",
                    String::from_utf8_lossy(&keys::of(r)).replace('\0', "/")
                )));
            }
        }
        let batch = Batch {
            base: 0,
            revision,
            cleared: Vec::new(),
            records: self
                .records
                .iter()
                .map(|r| (keys::of(r), Some(codec::encode_record(r))))
                .collect(),
            log: Vec::new(),
        };
        engine.commit(&batch).map_err(|e| match e {
            CommitError::Failed(e) => SnapshotError::Store(e),
            CommitError::Conflict { current } => SnapshotError::Store(Error::internal(format!(
                "the new store is at revision {current}, not empty"
            ))),
        })?;
        engine.compact(revision, &self.hash())?;
        engine.flush()?;
        Ok(())
    }

    /// Checks the records against every rule (`mapreg check`'s checks, on a store built in
    /// memory); the problems, if any, as one sentence.
    pub fn verify(&self) -> Result<(), SnapshotError> {
        let memory = super::memory::MemoryEngine::new();
        self.write_into(&memory)?;
        let report = check::check(&memory).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        if report.ok() {
            Ok(())
        } else {
            Err(SnapshotError::Invalid(format!(
                "{} ({} problem(s))",
                crate::error::listed(&report.problems),
                report.problems.len()
            )))
        }
    }
}

/// What [`restore`] made.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The new store's id.
    pub store_id: String,
    /// The saved store's id.
    pub old_store_id: String,
    /// The revision it is at.
    pub revision: u64,
    /// Records written.
    pub records: usize,
}

/// `mapreg snapshot restore FILE --data-dir DIR`: verifies the snapshot at `file` (checksum,
/// format, every rule) and makes a new store in `dir` at its state, with a new `store_id`
/// (see the module documentation). `dir` must not exist or be empty; on any failure nothing
/// is left in it.
pub fn restore(file: &Path, dir: &Path) -> Result<Restored, SnapshotError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { what, path, source }
    };
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io("cannot read", dir)(e)),
    };
    if !empty {
        return Err(SnapshotError::TargetNotEmpty(dir.to_path_buf()));
    }
    let snapshot = read(file)?;
    snapshot.verify()?;

    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let building = dir.with_file_name(format!(".{name}.restoring"));
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(io("cannot remove", &building))?;
    }
    let made = build(&snapshot, &building);
    let made = made.and_then(|restored| {
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(io("cannot replace", dir))?;
        }
        std::fs::rename(&building, dir).map_err(io("cannot move the new store to", dir))?;
        Ok(restored)
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    made
}

/// Writes the store of `snapshot` into the new directory `dir`.
fn build(snapshot: &Snapshot, dir: &Path) -> Result<Restored, SnapshotError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| SnapshotError::Io {
            what: "cannot create",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let engine: Arc<dyn Engine> = Arc::new(super::sled::SledEngine::open(dir)?);
    let old = &snapshot.footer.store_id;
    let store_id = engine.store_id(&|| loop {
        let id = crate::domain::ids::store_id();
        if &id != old {
            return id;
        }
    })?;
    snapshot.write_into(engine.as_ref())?;
    let mark = highwater::Mark {
        store_id: store_id.clone(),
        revision: snapshot.footer.revision,
        hash: snapshot.hash(),
    };
    let mark_path = highwater::path(dir);
    highwater::write(&mark_path, &mark).map_err(|source| SnapshotError::Io {
        what: "cannot write the high-water mark",
        path: mark_path,
        source,
    })?;
    drop(engine);
    Ok(Restored {
        store_id,
        old_store_id: old.clone(),
        revision: snapshot.footer.revision,
        records: snapshot.records.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, rev: u64) -> Resource {
        Resource {
            resource: Some(resource::Resource::DomainName(crate::pb::DomainName {
                domain_name: name.into(),
                create_revision: rev,
                mod_revision: rev,
                ..Default::default()
            })),
        }
    }

    fn file(records: &[Resource], revision: u64) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).unwrap();
        for r in records {
            w.record(r).unwrap();
        }
        let (bytes, footer) = w
            .finish(Footer {
                store_id: "old".into(),
                revision,
                history_hash: vec![7; 32],
                records: 0,
            })
            .unwrap();
        assert_eq!(footer.records, records.len() as u64);
        bytes
    }

    #[test]
    fn files_round_trip_and_any_damage_is_refused() {
        let bytes = file(&[domain("a.com", 1), domain("b.com", 2)], 3);
        let s = parse(Path::new("f"), &bytes).unwrap();
        assert_eq!((s.footer.revision, s.records.len()), (3, 2));
        assert_eq!(s.hash(), [7; 32]);
        s.verify().unwrap();
        // Truncated anywhere, a flipped byte anywhere, trailing junk: refused.
        for cut in [0, 10, 20, bytes.len() / 2, bytes.len() - 1] {
            let e = parse(Path::new("f"), &bytes[..cut]).unwrap_err();
            assert!(matches!(e, SnapshotError::Damaged { .. }), "{e}");
        }
        for at in [3, 17, 25, bytes.len() - 40, bytes.len() - 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            let e = parse(Path::new("f"), &bad).unwrap_err();
            assert!(matches!(e, SnapshotError::Damaged { .. }), "{e}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(parse(Path::new("f"), &long).is_err());
    }

    #[test]
    fn records_above_the_revision_or_breaking_rules_are_refused() {
        let s = parse(Path::new("f"), &file(&[domain("a.com", 5)], 3)).unwrap();
        assert!(matches!(s.verify(), Err(SnapshotError::Invalid(_))));
        let mapping = Resource {
            resource: Some(check::tests::dangling_mapping()),
        };
        let s = parse(Path::new("f"), &file(&[mapping], 1)).unwrap();
        let e = s.verify().unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn restores_into_a_new_store_at_the_revision_and_nowhere_else() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("snap");
        std::fs::write(&f, file(&[domain("a.com", 1), domain("b.com", 2)], 4)).unwrap();
        let dir = tmp.path().join("data");
        let r = restore(&f, &dir).unwrap();
        assert_eq!((r.revision, r.records), (4, 2));
        assert_ne!(r.store_id, "old");
        let e: Arc<dyn Engine> = Arc::new(super::super::sled::SledEngine::open(&dir).unwrap());
        assert_eq!(e.revision().unwrap(), 4);
        assert_eq!(e.compact_revision().unwrap(), 4);
        assert_eq!(e.compact_hash().unwrap(), [7; 32]);
        assert!(check::check(e.as_ref()).unwrap().ok());
        drop(e);
        // Over an existing store: refused, untouched.
        let again = restore(&f, &dir).unwrap_err();
        assert!(matches!(again, SnapshotError::TargetNotEmpty(_)), "{again}");
    }
}
