//! One conformance suite for every [`Engine`]: commit, conditional commit (conflict), log
//! ranges, compaction, record scans, and reopening. Each test is written once against the
//! trait and instantiated per engine, as garage's `db` crate tests its adapters.
//!
//! The etcd engine runs the suite on a real single-member etcd shared by the test binary, a
//! fresh key prefix per test; without `/usr/bin/etcd` its tests print a skip message (and fail
//! when `CI` is set). Tests only an engine shared by several nodes needs follow the suite.

use std::sync::Arc;

use super::etcd::testkit::{self, EtcdCluster};
use super::etcd::{EtcdEngine, EtcdUrl};
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
        // sled's flusher thread lets go of the directory's lock a moment after the last
        // handle is dropped: wait for it (up to 5 s) rather than fail on a busy lock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match SledEngine::open(self.0.path()) {
                Ok(e) => return Arc::new(e),
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopen sled: {e:?}"),
            }
        }
    }
}

/// A fresh prefix on the shared etcd; reopening opens a new engine on the same prefix.
struct Etcd(EtcdUrl);

impl Etcd {
    fn new(test: &str) -> Option<Etcd> {
        if !testkit::available(test) {
            return None;
        }
        let cluster = EtcdCluster::shared().expect("start etcd");
        Some(Etcd(cluster.fresh_url()))
    }
}

impl Harness for Etcd {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(EtcdEngine::open(&self.0).expect("open etcd engine"))
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
        cleared: Vec::new(),
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

/// A domain's 300 mappings (more than etcd's 128 operations per transaction) go with one
/// cleared prefix in one batch, atomically and at one revision; records beside the prefix
/// (another domain's mappings, whose name extends this one's, and the domain record itself)
/// stay unless the batch removes them.
fn clears_a_prefix_in_one_batch(h: &dyn Harness) {
    let e = h.engine();
    let mut recs: Vec<(String, Option<&str>)> = vec![
        ("d\0d.com".into(), Some("domain")),
        ("d\0d.com.x".into(), Some("other")),
        ("m\0d.com.x\0aaaaaa".into(), Some("kept")),
        ("m\0d.comm\0bbbbbb".into(), Some("kept")),
    ];
    let mut base = 0;
    for chunk in recs.chunks(100) {
        let r: Vec<_> = chunk.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        e.commit(&batch(base, 1, &r)).unwrap();
        base += 1;
    }
    recs.clear();
    let mappings: Vec<String> = (0..300).map(|i| format!("m\0d.com\0{i:06}")).collect();
    for chunk in mappings.chunks(100) {
        let r: Vec<_> = chunk
            .iter()
            .map(|k| (k.as_str(), Some("mapping")))
            .collect();
        e.commit(&batch(base, 1, &r)).unwrap();
        base += 1;
    }
    assert_eq!(records(e.as_ref()).len(), 304);
    let mut delete = batch(base, 1, &[("d\0d.com", None)]);
    delete.cleared = vec![b"m\0d.com\0".to_vec()];
    // Built on another revision: nothing is cleared.
    let mut stale = delete.clone();
    stale.base -= 1;
    stale.revision -= 1;
    assert!(matches!(
        e.commit(&stale),
        Err(CommitError::Conflict { current }) if current == base
    ));
    assert_eq!(records(e.as_ref()).len(), 304);
    e.commit(&delete).unwrap();
    e.flush().unwrap();
    let left = vec![
        ("d\0d.com.x".to_string(), "other".to_string()),
        ("m\0d.com.x\0aaaaaa".into(), "kept".into()),
        ("m\0d.comm\0bbbbbb".into(), "kept".into()),
    ];
    assert_eq!(records(e.as_ref()), left);
    assert_eq!(e.revision().unwrap(), base + 1);
    // A later batch may write under a prefix cleared before.
    e.commit(&batch(base + 1, 1, &[("m\0d.com\0again", Some("new"))]))
        .unwrap();
    let e = h.reopen(e);
    assert_eq!(records(e.as_ref()).len(), 4);
    assert_eq!(e.revision().unwrap(), base + 2);
}

/// One module of tests per engine: each test of the suite above, on a fresh harness (None:
/// the engine is not available here, the test passes without running).
macro_rules! suite {
    ($name:ident, $harness:expr) => {
        suite!(
            @tests $name,
            $harness,
            commits_atomically_and_in_order,
            refuses_a_batch_built_on_another_revision,
            reads_log_ranges,
            compacts_up_to_a_point,
            clears_a_prefix_in_one_batch,
            survives_a_reopen
        );
    };
    (@tests $name:ident, $harness:expr, $($test:ident),*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $test() {
                    if let Some(h) = $harness {
                        super::$test(&h);
                    }
                }
            )*
        }
    };
}

suite!(memory, Some(MemoryKeep(MemoryEngine::new())));
suite!(sled, Some(Sled(tempfile::tempdir().expect("tempdir"))));
suite!(etcd, Etcd::new(module_path!()));

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

/// Tests of what only an engine shared by several nodes must do, on etcd.
mod etcd_shared {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::error::Error;

    fn url(test: &str) -> Option<EtcdUrl> {
        Etcd::new(test).map(|h| h.0)
    }

    fn open(url: &EtcdUrl) -> EtcdEngine {
        EtcdEngine::open(url).expect("open etcd engine")
    }

    fn wait_for(rx: &tokio::sync::watch::Receiver<u64>, revision: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while *rx.borrow() < revision {
            assert!(
                Instant::now() < deadline,
                "follow() shows {} after {within:?}, not {revision}",
                *rx.borrow()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn two_handles_conflict_and_exactly_one_wins() {
        let Some(url) = url("two_handles_conflict_and_exactly_one_wins") else {
            return;
        };
        let (a, b) = (open(&url), open(&url));
        a.commit(&batch(0, 1, &[("a\0x", Some("1"))])).unwrap();
        match b.commit(&batch(0, 1, &[("a\0y", Some("2"))])) {
            Err(CommitError::Conflict { current }) => assert_eq!(current, 1),
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Racing from the same base: one wins, the other learns where the store is.
        let results: Vec<_> = std::thread::scope(|s| {
            let ha = s.spawn(|| a.commit(&batch(1, 2, &[("a\0x", Some("a"))])));
            let hb = s.spawn(|| b.commit(&batch(1, 1, &[("a\0x", Some("b"))])));
            vec![ha.join().unwrap(), hb.join().unwrap()]
        });
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "{results:?}");
        let current = a.revision().unwrap();
        assert!(current == 2 || current == 3);
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, CommitError::Conflict { current: c } if *c == current),
                    "{e:?}"
                );
            }
        }
        assert_eq!(b.read_log(1, 10, 10).unwrap().len() as u64, current);
    }

    #[test]
    fn follow_sees_another_handles_commits() {
        let Some(url) = url("follow_sees_another_handles_commits") else {
            return;
        };
        let (a, b) = (open(&url), open(&url));
        let rx = a.follow().expect("etcd follows");
        b.commit(&batch(0, 3, &[])).unwrap();
        wait_for(&rx, 3, Duration::from_secs(5));
        b.commit(&batch(3, 2, &[])).unwrap();
        wait_for(&rx, 5, Duration::from_secs(5));
        // A handle opened later starts at the store's revision.
        let c = open(&url);
        wait_for(&c.follow().expect("follows"), 5, Duration::from_secs(5));
    }

    #[test]
    fn refuses_a_batch_over_the_limits() {
        let Some(url) = url("refuses_a_batch_over_the_limits") else {
            return;
        };
        let e = open(&url);
        assert_eq!(e.batch_limits().max_ops, 128);
        let keys: Vec<String> = (0..200).map(|i| format!("a\0{i}")).collect();
        let many: Vec<(&str, Option<&str>)> =
            keys.iter().map(|k| (k.as_str(), Some("v"))).collect();
        let big = "x".repeat(1100 * 1024);
        for b in [batch(0, 1, &many), batch(0, 1, &[("a\0big", Some(&big))])] {
            match e.commit(&b) {
                Err(CommitError::Failed(Error::ResourceExhausted { reason, .. })) => {
                    assert_eq!(reason, "STORE_BATCH_TOO_LARGE")
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(e.revision().unwrap(), 0);
        assert_eq!(records(&e), vec![]);
        // At the limit exactly: 126 records, one log entry, the revision.
        let fits: Vec<_> = many[..126].to_vec();
        e.commit(&batch(0, 1, &fits)).unwrap();
        assert_eq!(records(&e).len(), 126);
    }

    #[test]
    fn two_handles_compacting_at_once() {
        let Some(url) = url("two_handles_compacting_at_once") else {
            return;
        };
        let (a, b) = (open(&url), open(&url));
        a.commit(&batch(0, 20, &[])).unwrap();
        // Both at once, each to its own point (hash = [point; 32]): what both removed.
        let both = |pa: u64, pb: u64| {
            std::thread::scope(|s| {
                let ha = s.spawn(|| a.compact(pa, &[pa as u8; 32]).unwrap());
                let hb = s.spawn(|| b.compact(pb, &[pb as u8; 32]).unwrap());
                ha.join().unwrap() + hb.join().unwrap()
            })
        };
        assert_eq!(both(10, 15), 15);
        assert_eq!(a.compact_revision().unwrap(), 15);
        assert_eq!(b.compact_hash().unwrap(), [15; 32]);
        assert_eq!(
            a.read_log(1, 20, 100).unwrap().first().map(|e| e.0),
            Some(16)
        );
        // The same point from both: the entries go once.
        assert_eq!(both(18, 18), 3);
        assert_eq!(b.compact_revision().unwrap(), 18);
    }

    #[test]
    fn a_scan_is_one_snapshot_across_pages() {
        let Some(url) = url("a_scan_is_one_snapshot_across_pages") else {
            return;
        };
        let e = open(&url);
        let keys: Vec<String> = (0..2_500).map(|i| format!("a\0{i:05}")).collect();
        let mut base = 0;
        for chunk in keys.chunks(120) {
            let recs: Vec<_> = chunk.iter().map(|k| (k.as_str(), Some("old"))).collect();
            e.commit(&batch(base, 1, &recs)).unwrap();
            base += 1;
        }
        let mut scan = e.scan_records();
        let first = scan.next().unwrap().unwrap();
        assert_eq!(
            first,
            (b"a\0\x30\x30\x30\x30\x30".to_vec(), b"old".to_vec())
        );
        // Written after the first page: not in this scan.
        e.commit(&batch(
            base,
            1,
            &[("a\x0002499", Some("new")), ("z", Some("new"))],
        ))
        .unwrap();
        let rest: Vec<_> = scan.map(|kv| kv.unwrap()).collect();
        assert_eq!(rest.len(), 2_499);
        assert!(rest.iter().all(|(_, v)| v == b"old"));
        assert_eq!(records(&e).len(), 2_501);
    }

    /// A cluster of `members` of the calling test's own (it stops members), a fresh prefix on it, and
    /// an engine there that follows the store and has committed revision 1; None where etcd is
    /// not available.
    #[allow(clippy::type_complexity)]
    fn own_cluster(
        members: usize,
    ) -> Option<(
        EtcdCluster,
        EtcdUrl,
        EtcdEngine,
        tokio::sync::watch::Receiver<u64>,
    )> {
        // The test harness names each test's thread after the test.
        let thread = std::thread::current();
        if !testkit::available(thread.name().unwrap_or("an etcd outage test")) {
            return None;
        }
        let cluster = EtcdCluster::start(members).expect("start etcd");
        let url = cluster.fresh_url();
        let e = open(&url);
        let rx = e.follow().expect("follows");
        e.commit(&batch(0, 1, &[])).unwrap();
        Some((cluster, url, e, rx))
    }

    /// Commits a batch on `base`, which must fail `STORE_UNAVAILABLE` within the engine's
    /// commit timeout (and 2 s); its message.
    #[track_caller]
    fn commit_unavailable(e: &EtcdEngine, base: u64) -> String {
        let started = Instant::now();
        let message = match e.commit(&batch(base, 1, &[])) {
            Err(CommitError::Failed(Error::Unavailable { reason, message })) => {
                assert_eq!(reason, "STORE_UNAVAILABLE");
                message
            }
            other => panic!("expected STORE_UNAVAILABLE, got {other:?}"),
        };
        let took = started.elapsed();
        eprintln!("commit refused: {message} after {took:?}");
        assert!(took < super::super::etcd::COMMIT_TIMEOUT + Duration::from_secs(2));
        message
    }

    #[test]
    fn unreachable_etcd_is_store_unavailable_and_recovers() {
        let Some((mut cluster, url, e, rx)) = own_cluster(1) else {
            return;
        };
        let other = open(&url);
        wait_for(&rx, 1, Duration::from_secs(5));
        cluster.stop(0);
        let message = commit_unavailable(&e, 1);
        assert!(
            message.contains("etcd is unreachable at 127.0.0.1:"),
            "{message}"
        );
        let started = Instant::now();
        match e.revision() {
            Err(Error::Unavailable { reason, .. }) => assert_eq!(reason, "STORE_UNAVAILABLE"),
            other => panic!("expected STORE_UNAVAILABLE, got {other:?}"),
        }
        match e.scan_records().next() {
            Some(Err(Error::Unavailable { .. })) => {}
            other => panic!("expected STORE_UNAVAILABLE, got {other:?}"),
        }
        eprintln!("reads with etcd down failed after {:?}", started.elapsed());
        cluster.restart(0).expect("restart etcd");
        cluster
            .wait_healthy(Duration::from_secs(30))
            .expect("etcd back");
        // Everything recovers by itself: commits, and the follower's watch.
        let deadline = Instant::now() + Duration::from_secs(10);
        while other.commit(&batch(1, 1, &[])).is_err() {
            assert!(Instant::now() < deadline, "commits did not recover");
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for(&rx, 2, Duration::from_secs(10));
        e.commit(&batch(2, 1, &[])).unwrap();
    }

    #[test]
    fn losing_the_quorum_is_store_unavailable_and_recovers() {
        let Some((mut cluster, _, e, rx)) = own_cluster(3) else {
            return;
        };
        cluster.stop(1);
        cluster.stop(2);
        commit_unavailable(&e, 1);
        cluster.restart(1).expect("restart");
        cluster.restart(2).expect("restart");
        cluster
            .wait_healthy(Duration::from_secs(30))
            .expect("etcd back");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match e.commit(&batch(1, 1, &[])) {
                Ok(()) => break,
                // The unanswered commit may have been applied after all.
                Err(CommitError::Conflict { current: 2 }) => break,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "commits did not recover: {err:?}"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        wait_for(&rx, 2, Duration::from_secs(10));
    }
}
