//! History continuity (SPEC.md 8.3) and damaged data dirs (8.7): history hashes on the feed,
//! resumes checked against them, a store behind its high-water mark refused at start (and
//! accepted with `--accept-rollback`), a truncated data dir refused with exit 2 and no panic.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mapreg::config::Config;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

/// Reads the stream until a message satisfying `f`; returns it.
async fn until(
    s: &mut tonic::Streaming<WatchResponse>,
    f: impl Fn(&WatchResponse) -> bool,
) -> WatchResponse {
    loop {
        let m = next_message(s, 10)
            .await
            .expect("watch message")
            .expect("stream open");
        if f(&m) {
            return m;
        }
    }
}

fn watch_from(start: u64, hash: Vec<u8>) -> WatchRequest {
    WatchRequest {
        start_revision: start,
        resume_history_hash: hash,
        progress_interval_seconds: 1,
        ..Default::default()
    }
}

/// The (revision, history hash) of `n` writes seen on a watch from revision 1.
async fn hashes_of_writes(s: &TestServer, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut c = s.client().await;
    let mut feed = s.feed_client(None).await;
    let mut stream = watch(&mut feed, watch_from(1, Vec::new()))
        .await
        .expect("watch");
    for i in 0..n {
        create_domain(&mut c, &format!("d{i}.example.com")).await;
    }
    let mut out = Vec::new();
    while out.len() < n {
        let m = until(&mut stream, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
        out.push((m.revision, m.history_hash));
    }
    out
}

#[tokio::test]
async fn every_revision_carries_a_history_hash_and_resumes_are_checked() {
    let s = TestServer::start().await;
    let writes = hashes_of_writes(&s, 3).await;
    for (i, (rev, h)) in writes.iter().enumerate() {
        assert_eq!(*rev, i as u64 + 1);
        assert_eq!(h.len(), 32, "revision {rev} has a SHA-256 history hash");
        assert_ne!(h, &vec![0u8; 32]);
    }
    assert_ne!(writes[0].1, writes[1].1);

    // A snapshot ends with the hash at its revision; progress carries the hash too.
    let mut feed = s.feed_client(None).await;
    let mut stream = watch(&mut feed, watch_from(0, Vec::new()))
        .await
        .expect("watch");
    let done = until(&mut stream, |m| {
        matches!(m.kind, Some(Kind::SnapshotComplete(_)))
    })
    .await;
    assert_eq!((done.revision, &done.history_hash), (3, &writes[2].1));
    let progress = until(&mut stream, |m| matches!(m.kind, Some(Kind::Progress(_)))).await;
    assert_eq!(
        (progress.revision, &progress.history_hash),
        (3, &writes[2].1)
    );

    // Resuming at 3 with the hash of 2 works and delivers revision 3 with its hash.
    let mut ok = watch(&mut feed, watch_from(3, writes[1].1.clone()))
        .await
        .expect("watch");
    let m = until(&mut ok, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
    assert_eq!((m.revision, &m.history_hash), (3, &writes[2].1));
    // From revision 1 the client holds the hash of revision 0: 32 zero bytes.
    let mut zero = watch(&mut feed, watch_from(1, vec![0u8; 32]))
        .await
        .expect("watch");
    let m = until(&mut zero, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
    assert_eq!(m.revision, 1);

    // Another history's hash, or a store below the resume point: STORE_CHANGED.
    for req in [
        watch_from(3, writes[0].1.clone()),
        watch_from(10, writes[2].1.clone()),
    ] {
        let e = match watch(&mut feed, req).await {
            Err(e) => e,
            Ok(mut st) => next_message(&mut st, 10).await.expect_err("refused"),
        };
        assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
        assert_eq!(reason(&e), "STORE_CHANGED", "{e:?}");
        assert!(e.message().contains("start_revision 0"), "{}", e.message());
    }
    // A hash that is not a SHA-256, or a hash without a resume, is bad input.
    for req in [watch_from(2, vec![1; 31]), watch_from(0, vec![1; 32])] {
        let e = match watch(&mut feed, req).await {
            Err(e) => e,
            Ok(mut st) => next_message(&mut st, 10).await.expect_err("refused"),
        };
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert_eq!(violated_fields(&e), vec!["resume_history_hash".to_string()]);
    }

    // The hashes are durable: after a restart the same resume is accepted.
    let s = s.restart().await;
    let mut feed = s.feed_client(None).await;
    let mut ok = watch(&mut feed, watch_from(3, writes[1].1.clone()))
        .await
        .expect("watch");
    let m = until(&mut ok, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
    assert_eq!((m.revision, &m.history_hash), (3, &writes[2].1));
}

#[tokio::test]
async fn compaction_keeps_the_hash_at_the_compaction_point() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: tmp.path().join("data"),
        watch_history: 4,
        ..Config::default()
    };
    let s = TestServer::start_with(config).await;
    let writes = hashes_of_writes(&s, 12).await;
    // Compaction runs in the background (history 4, slack 1): once at revision 12 it settles
    // at 7 or 8; wait for that.
    let mut feed = s.feed_client(None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let compact = loop {
        let first = match watch(&mut feed, watch_from(1, Vec::new())).await {
            Err(e) => Err(e),
            Ok(mut st) => next_message(&mut st, 10).await,
        };
        match first {
            Err(e) if reason(&e) == "REVISION_COMPACTED" => {
                let c = error_metadata(&e, "compact_revision")
                    .and_then(|c| c.parse::<u64>().ok())
                    .expect("compact_revision metadata");
                if c >= 7 {
                    break c;
                }
            }
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log never compacted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!((7..=8).contains(&compact), "{compact}");
    // Resuming right after the compaction point is checked against the kept hash.
    let held = writes[compact as usize - 1].1.clone();
    let mut ok = watch(&mut feed, watch_from(compact + 1, held))
        .await
        .expect("watch");
    let m = until(&mut ok, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
    assert_eq!(m.revision, compact + 1);
    let wrong = writes[compact as usize].1.clone();
    let e = match watch(&mut feed, watch_from(compact + 1, wrong)).await {
        Err(e) => e,
        Ok(mut st) => next_message(&mut st, 10).await.expect_err("refused"),
    };
    assert_eq!(reason(&e), "STORE_CHANGED");
    let s = s.restart().await;
    let mut feed = s.feed_client(None).await;
    let held = writes[compact as usize - 1].1.clone();
    let mut ok = watch(&mut feed, watch_from(compact + 1, held))
        .await
        .expect("watch after restart");
    let m = until(&mut ok, |m| matches!(m.kind, Some(Kind::ChangeSet(_)))).await;
    assert_eq!(m.revision, compact + 1);
}

fn mapreg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mapreg")
}

/// `mapreg serve` on `dir`: its exit code and stderr, or None if it is still running after
/// 5 s (it served: killed).
fn serve_outcome(dir: &Path) -> Option<(i32, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return Some((
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_store_behind_its_high_water_mark_is_refused_unless_accepted() {
    let backup = tempfile::tempdir().expect("tempdir");
    let old = backup.path().join("old");
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for i in 0..3 {
        create_domain(&mut c, &format!("a{i}.example.com")).await;
    }
    let s = s.restart_after(|d| copy_dir(d, &old)).await;
    let mut c = s.client().await;
    for i in 0..3 {
        create_domain(&mut c, &format!("b{i}.example.com")).await;
    }
    // The engine's files go back to the copy at revision 3; the mark (revision 6) stays.
    let config = s.config.clone();
    let _tmp = s.stop().await;
    let dir = config.data_dir.clone();
    let mark = std::fs::read(dir.join("mapreg-highwater")).expect("high-water mark");
    std::fs::remove_dir_all(&dir).expect("rm");
    copy_dir(&old, &dir);
    std::fs::write(dir.join("mapreg-highwater"), &mark).expect("put mark back");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let e = mapreg::server::run(config.clone(), listener, async {})
        .await
        .expect_err("a rolled-back store is refused");
    let text = e.to_string();
    assert!(
        text.contains("revision 3") && text.contains("revision 6"),
        "{text}"
    );
    assert!(text.contains("--accept-rollback"), "{text}");

    // The binary: serve exits 2 naming the problem (no panic); check reports it.
    let (code, stderr) = serve_outcome(&dir).expect("serve refuses to start");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = mapreg(&["check", "--data-dir", dir.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("rolled back"), "{stdout}");

    // Accepted on purpose: it serves revision 3, and the mark follows the store again.
    let accepted = Config {
        accept_rollback: true,
        ..config.clone()
    };
    let s = TestServer::start_with(accepted).await;
    let mut c = s.client().await;
    let d = create_domain(&mut c, "c.example.com").await;
    assert_eq!(d.mod_revision, 4);
    let _ = s.stop().await;
    let s = TestServer::start_with(config).await;
    let mut c = s.client().await;
    create_domain(&mut c, "d.example.com").await;
    let _ = s.stop().await;
}

#[tokio::test]
async fn a_truncated_data_dir_is_refused_with_exit_2_and_no_panic() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    for d in 0..20 {
        let domain = format!("t{d}.example.com");
        create_domain(&mut c, &domain).await;
        for k in 0..5 {
            create_mapping(&mut c, &domain, &format!("k{k}"), &api.api_id, "test").await;
        }
    }
    let config = s.config.clone();
    let _tmp = s.stop().await;
    let dir = config.data_dir.clone();
    // Cut the biggest file of the store in half.
    let biggest = std::fs::read_dir(&dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a file");
    let len = biggest.metadata().expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(biggest.path())
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");

    let (code, stderr) = serve_outcome(&dir).expect("serve refuses a truncated store");
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("corrupt") || stderr.contains("rolled back"),
        "{stderr}"
    );
    let out = mapreg(&["check", "--data-dir", dir.to_str().expect("utf-8 path")]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("is a server still running"), "{all}");
    assert!(
        all.contains("corrupt") || all.contains("rolled back"),
        "{all}"
    );
}
