//! A full disk (SPEC.md 8.7): writes get RESOURCE_EXHAUSTED / STORAGE_FULL, reads, Watch and
//! health keep answering, and writes work again by themselves once space returns, with no
//! acknowledged write lost, no refused one visible and a gap-free change feed.
//!
//! The disk is a real one: a small tmpfs mounted for the test (the machine must let the test
//! mount; CI containers often do not). Where mounting is refused, the same test runs against
//! the sled engine's failpoint (a marker file in the data dir) and says so.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mapreg::config::Config;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use mapreg::store::sled::{FAILPOINT_FULL, FAILPOINTS};
use tonic::Code;

use crate::common::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a `mib` MiB tmpfs on `dir`; None if this machine does not allow it (or
/// `MAPREG_TEST_NO_MOUNT=1` asks for the failpoint path).
fn mount_tmpfs(dir: &Path, mib: u32) -> Option<Mounted> {
    if std::env::var_os("MAPREG_TEST_NO_MOUNT").is_some_and(|v| v == "1") {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}M"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mounted(dir.to_path_buf()))
}

/// The disk is filled (a big file beside the data dir) or, without a mount, the failpoint set.
enum Disk {
    Real { filler: PathBuf, _mount: Mounted },
    Failpoint { data_dir: PathBuf },
}

impl Disk {
    fn fill(&self) {
        match self {
            Disk::Real { filler, .. } => {
                let mut f = std::fs::File::create(filler).expect("filler");
                let chunk = vec![0x5au8; 1 << 20];
                // Until the file system refuses: then it is full.
                while f.write_all(&chunk).is_ok() {}
                let small = [0u8; 512];
                while f.write_all(&small).is_ok() {}
            }
            Disk::Failpoint { data_dir } => {
                std::fs::write(data_dir.join(FAILPOINT_FULL), b"").expect("failpoint")
            }
        }
    }

    fn free(&self) {
        match self {
            Disk::Real { filler, .. } => std::fs::remove_file(filler).expect("remove filler"),
            Disk::Failpoint { data_dir } => {
                std::fs::remove_file(data_dir.join(FAILPOINT_FULL)).expect("failpoint")
            }
        }
    }
}

fn is_storage_full(s: &tonic::Status) -> bool {
    s.code() == Code::ResourceExhausted && reason(s) == "STORAGE_FULL"
}

async fn try_create(c: &mut Client, name: &str) -> Result<u64, tonic::Status> {
    c.create_domain_name(CreateDomainNameRequest {
        domain_name: name.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().mod_revision)
}

/// Every change-set revision a Watch from revision 1 sees, with the domains it created.
async fn follow(
    mut stream: tonic::Streaming<WatchResponse>,
    tx: tokio::sync::mpsc::UnboundedSender<(u64, Vec<String>)>,
) {
    while let Ok(Some(m)) = stream.message().await {
        if let Some(Kind::ChangeSet(cs)) = m.kind {
            let names = cs
                .events
                .iter()
                .filter_map(|e| match e.resource.as_ref()?.resource.as_ref()? {
                    resource::Resource::DomainName(d) => Some(d.domain_name.clone()),
                    _ => None,
                })
                .collect();
            if tx.send((m.revision, names)).is_err() {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_cleanly_and_they_resume_by_themselves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fs = tmp.path().join("fs");
    let (disk, data_dir) = match mount_tmpfs(&fs, 48) {
        Some(m) => {
            eprintln!("disk_full: a real 48 MiB tmpfs");
            let data_dir = fs.join("data");
            (
                Disk::Real {
                    filler: fs.join("filler"),
                    _mount: m,
                },
                data_dir,
            )
        }
        None => {
            eprintln!(
                "disk_full: no tmpfs (mounting refused, or MAPREG_TEST_NO_MOUNT=1); using the sled \
                 engine's failpoint instead"
            );
            let data_dir = tmp.path().join("data");
            std::fs::create_dir_all(&data_dir).expect("data dir");
            std::fs::write(data_dir.join(FAILPOINTS), b"").expect("failpoints");
            (
                Disk::Failpoint {
                    data_dir: data_dir.clone(),
                },
                data_dir,
            )
        }
    };
    let server = TestServer::start_with(Config {
        data_dir: data_dir.clone(),
        ..Config::default()
    })
    .await;
    let mut c = server.client().await;
    let mut feed = server.feed_client(None).await;
    let stream = watch(
        &mut feed,
        WatchRequest {
            start_revision: 1,
            progress_interval_seconds: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(follow(stream, tx));

    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    for i in 0..20 {
        let name = format!("before{i}.example.com");
        try_create(&mut c, &name).await.expect("write before full");
        acked.insert(name);
    }

    disk.fill();
    // A few writes may still fit in what the file system had left; then they are refused,
    // each with STORAGE_FULL.
    let mut i = 0;
    let mut refusals = 0;
    while refusals < 5 {
        i += 1;
        assert!(i < 2000, "writes never failed on a full disk");
        let name = format!("full{i}.example.com");
        match try_create(&mut c, &name).await {
            Ok(_) => {
                assert_eq!(
                    refusals, 0,
                    "a write worked between refusals on a full disk"
                );
                acked.insert(name);
            }
            Err(s) => {
                assert!(is_storage_full(&s), "{s:?}");
                assert!(s.message().contains("full"), "{}", s.message());
                refusals += 1;
                refused.insert(name);
            }
        }
    }

    // Reads, a new Watch (snapshot) and health answer meanwhile.
    let some = acked.iter().next().expect("acked").clone();
    c.get_domain_name(GetDomainNameRequest {
        domain_name: some,
        ..Default::default()
    })
    .await
    .expect("get on a full disk");
    c.get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("list on a full disk");
    let mut snap = watch(&mut feed, WatchRequest::default())
        .await
        .expect("watch on a full disk");
    loop {
        let m = next_message(&mut snap, 10)
            .await
            .expect("snapshot on a full disk")
            .expect("open");
        if matches!(m.kind, Some(Kind::SnapshotComplete(_))) {
            break;
        }
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health on a full disk")
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Space returns: writes work again by themselves, within a bounded time.
    disk.free();
    let freed = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let name = format!("after{tries}.example.com");
        match try_create(&mut c, &name).await {
            Ok(_) => {
                acked.insert(name);
                break;
            }
            Err(s) => {
                // Still full for a moment, or the one group that finds the store reopened.
                assert!(
                    is_storage_full(&s)
                        || (s.code() == Code::Unavailable && reason(&s) == "STORE_REOPENED"),
                    "{s:?}"
                );
                refused.insert(name);
            }
        }
        assert!(
            freed.elapsed() < Duration::from_secs(60),
            "writes did not resume within 60 s of space returning"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "disk_full: writes worked again {:?} after space returned ({tries} tries)",
        freed.elapsed()
    );
    for i in 0..10 {
        let name = format!("later{i}.example.com");
        try_create(&mut c, &name)
            .await
            .expect("write after recovery");
        acked.insert(name);
    }

    // Every acknowledged write is there, no refused one is.
    let visible: BTreeSet<String> = all_domains(&mut c).await;
    for a in &acked {
        assert!(visible.contains(a), "acknowledged {a} was lost");
    }
    for r in &refused {
        assert!(!visible.contains(r), "refused {r} is visible");
    }
    assert_eq!(visible, acked);

    // The Watch saw every revision once, in order, and exactly the acknowledged writes.
    let head = c
        .get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .revision;
    let mut watched = BTreeSet::new();
    let mut next = 1;
    while next <= head {
        let (rev, names) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the watch keeps up")
            .expect("the watch is open");
        assert_eq!(rev, next, "the watch skipped or repeated a revision");
        watched.extend(names);
        next += 1;
    }
    assert_eq!(watched, acked);
    drop(c);
    server.stop().await;
}

async fn all_domains(c: &mut Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let r = c
            .get_domain_names(GetDomainNamesRequest {
                next_token: token,
                max_results: 500,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        out.extend(r.items.into_iter().map(|d| d.domain_name));
        if r.next_token.is_empty() {
            return out;
        }
        token = r.next_token;
    }
}
