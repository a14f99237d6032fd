//! One conformance suite for every [`Engine`]: commit, conditional commit (conflict), log
//! ranges, compaction, record scans, and reopening. Each test is written once against the
//! trait and instantiated per engine, as garage's `db` crate tests its adapters.

use std::sync::Arc;

use super::memory::MemoryEngine;
use super::sled::SledEngine;
use super::{Batch, CommitError, Engine};

/// Makes a fresh engine, and reopens it (a restart) on what the old one left.
trait Harness {
    fn engine(&self) -> Arc<dyn Engine>;
    fn reopen(&self, old: Arc<dyn Engine>) -> Arc<dyn Engine>;
}

/// The memory engine keeps its contents in the harness, so a reopen finds them.
struct MemoryKeep(MemoryEngine);

impl Harness for MemoryKeep {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(self.0.clone())
    }
    fn reopen(&self, old: Arc<dyn Engine>) -> Arc<dyn Engine> {
        drop(old);
        Arc::new(self.0.reopen())
    }
}

struct Sled(tempfile::TempDir);

impl Harness for Sled {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(SledEngine::open(self.0.path()).expect("open sled"))
    }
    fn reopen(&self, old: Arc<dyn Engine>) -> Arc<dyn Engine> {
        old.flush().expect("flush");
        drop(old);
        self.engine()
    }
}

fn batch(base: u64, revs: u64, records: &[(&str, Option<&str>)]) -> Batch {
    Batch {
        base,
        revision: base + revs,
        records: records
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect(),
        log: (base + 1..=base + revs)
            .map(|r| (r, format!("cs{r}").into_bytes()))
            .collect(),
    }
}

fn records(e: &dyn Engine) -> Vec<(String, String)> {
    e.scan_records()
        .map(|kv| {
            let (k, v) = kv.expect("scan");
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

fn commits_atomically_and_in_order(h: &dyn Harness) {
    let e = h.engine();
    assert_eq!(e.revision().unwrap(), 0);
    e.commit(&batch(
        0,
        2,
        &[
            ("a\0x", Some("1")),
            ("m\0d\0y", Some("2")),
            ("a\0x", Some("3")),
        ],
    ))
    .unwrap();
    e.flush().unwrap();
    assert_eq!(e.revision().unwrap(), 2);
    // A later entry for the same key wins; scans are in key order.
    assert_eq!(
        records(e.as_ref()),
        vec![("a\0x".into(), "3".into()), ("m\0d\0y".into(), "2".into())]
    );
    e.commit(&batch(2, 1, &[("a\0x", None)])).unwrap();
    assert_eq!(records(e.as_ref()), vec![("m\0d\0y".into(), "2".into())]);
}

fn refuses_a_batch_built_on_another_revision(h: &dyn Harness) {
    let e = h.engine();
    e.commit(&batch(0, 1, &[("a\0x", Some("1"))])).unwrap();
    match e.commit(&batch(0, 1, &[("a\0y", Some("2"))])) {
        Err(CommitError::Conflict { current }) => assert_eq!(current, 1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of the refused batch is there.
    assert_eq!(e.revision().unwrap(), 1);
    assert_eq!(records(e.as_ref()).len(), 1);
    assert_eq!(e.read_log(2, 2, 10).unwrap(), vec![]);
}

fn reads_log_ranges(h: &dyn Harness) {
    let e = h.engine();
    e.commit(&batch(0, 5, &[])).unwrap();
    e.commit(&batch(5, 5, &[])).unwrap();
    let revs = |from, to, max| -> Vec<u64> {
        e.read_log(from, to, max)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    };
    assert_eq!(revs(1, 10, 100), (1..=10).collect::<Vec<_>>());
    assert_eq!(revs(4, 6, 100), vec![4, 5, 6]);
    assert_eq!(revs(4, 10, 2), vec![4, 5]);
    assert_eq!(revs(7, 6, 100), Vec::<u64>::new());
    assert_eq!(revs(11, 20, 100), Vec::<u64>::new());
    assert_eq!(e.read_log(3, 3, 1).unwrap(), vec![(3, b"cs3".to_vec())]);
}

fn compacts_up_to_a_point(h: &dyn Harness) {
    let e = h.engine();
    e.commit(&batch(0, 10, &[])).unwrap();
    assert_eq!(e.compact_revision().unwrap(), 0);
    assert_eq!(e.compact_hash().unwrap(), [0; 32]);
    assert_eq!(e.compact(4, &[4; 32]).unwrap(), 4);
    assert_eq!(e.compact_revision().unwrap(), 4);
    assert_eq!(e.compact_hash().unwrap(), [4; 32]);
    // Lower or equal points change nothing.
    assert_eq!(e.compact(3, &[3; 32]).unwrap(), 0);
    assert_eq!(e.compact_hash().unwrap(), [4; 32]);
    let first = e.read_log(1, 10, 100).unwrap();
    assert_eq!(first.first().map(|(r, _)| *r), Some(5));
    assert_eq!(first.len(), 6);
    // Commits go on after compaction.
    e.commit(&batch(10, 1, &[])).unwrap();
    assert_eq!(e.read_log(11, 11, 1).unwrap().len(), 1);
}

fn survives_a_reopen(h: &dyn Harness) {
    let e = h.engine();
    let id = e.store_id(&|| "first".to_string()).unwrap();
    assert_eq!(id, "first");
    // Set once: a second fresh id does not replace it.
    assert_eq!(e.store_id(&|| "second".to_string()).unwrap(), "first");
    e.commit(&batch(0, 3, &[("d\0a.com", Some("x"))])).unwrap();
    e.compact(1, &[1; 32]).unwrap();
    e.flush().unwrap();
    let e = h.reopen(e);
    assert_eq!(e.store_id(&|| "third".to_string()).unwrap(), "first");
    assert_eq!(e.revision().unwrap(), 3);
    assert_eq!(e.compact_revision().unwrap(), 1);
    assert_eq!(e.compact_hash().unwrap(), [1; 32]);
    assert_eq!(records(e.as_ref()), vec![("d\0a.com".into(), "x".into())]);
    assert_eq!(e.read_log(1, 3, 10).unwrap().len(), 2);
    e.commit(&batch(3, 1, &[])).unwrap();
}

macro_rules! suite {
    ($name:ident, $harness:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn commits_atomically_and_in_order() {
                super::commits_atomically_and_in_order(&$harness);
            }
            #[test]
            fn refuses_a_batch_built_on_another_revision() {
                super::refuses_a_batch_built_on_another_revision(&$harness);
            }
            #[test]
            fn reads_log_ranges() {
                super::reads_log_ranges(&$harness);
            }
            #[test]
            fn compacts_up_to_a_point() {
                super::compacts_up_to_a_point(&$harness);
            }
            #[test]
            fn survives_a_reopen() {
                super::survives_a_reopen(&$harness);
            }
        }
    };
}

suite!(memory, MemoryKeep(MemoryEngine::new()));
suite!(sled, Sled(tempfile::tempdir().expect("tempdir")));

#[test]
fn sled_drops_the_indexes_of_an_old_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = ::sled::open(dir.path()).expect("open");
        let data = db.open_tree("data").expect("tree");
        data.insert(b"a\0x", b"api".to_vec()).expect("insert");
        data.insert(b"k\0d.com\0v1", b"id".to_vec())
            .expect("insert");
        data.insert(b"dc\0d.com", b"counters".to_vec())
            .expect("insert");
        db.flush().expect("flush");
    }
    let e = SledEngine::open(dir.path()).expect("open");
    assert_eq!(records(&e), vec![("a\0x".into(), "api".into())]);
}
