//! `mapreg snapshot save` / `mapreg snapshot restore` (SPEC.md 8.3): a snapshot saved from a
//! running server under a workload restores into a new data dir (a new store_id, the same
//! revision) that serves exactly the saved state; a resume from the old store is told
//! STORE_CHANGED; damaged files and non-empty targets are refused.

use std::path::Path;
use std::process::Command;

use mapreg::config::Config;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::Code;

use crate::common::*;
use crate::workload::*;

/// Runs `mapreg args...` offline (no endpoint).
fn offline(args: &[&str]) -> CliRun {
    let out = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(args)
        .env_remove("MAPREG_DATA_DIR")
        .output()
        .expect("run mapreg");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Everything a client can read, Get by Get: the lists, and each record's Get.
async fn everything(c: &mut Client) -> (VisibleState, Vec<String>) {
    let state = visible_state(c).await;
    let mut gets = Vec::new();
    for a in &state.apis {
        let got = c
            .get_api(GetApiRequest {
                api_id: a.api_id.clone(),
                ..Default::default()
            })
            .await
            .expect("get api")
            .into_inner();
        gets.push(format!("{got:?}"));
    }
    for st in &state.stages {
        let got = c
            .get_stage(GetStageRequest {
                api_id: st.api_id.clone(),
                stage_name: st.stage_name.clone(),
                ..Default::default()
            })
            .await
            .expect("get stage")
            .into_inner();
        gets.push(format!("{got:?}"));
    }
    for d in &state.domains {
        let got = c
            .get_domain_name(GetDomainNameRequest {
                domain_name: d.domain_name.clone(),
                ..Default::default()
            })
            .await
            .expect("get domain")
            .into_inner();
        gets.push(format!("{got:?}"));
    }
    for m in &state.mappings {
        let got = c
            .get_api_mapping(GetApiMappingRequest {
                domain_name: m.domain_name.clone(),
                api_mapping_id: m.api_mapping_id.clone(),
                ..Default::default()
            })
            .await
            .expect("get mapping")
            .into_inner();
        gets.push(format!("{got:?}"));
    }
    (state, gets)
}

async fn revision(c: &mut Client) -> u64 {
    c.get_domain_names(GetDomainNamesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .revision
}

#[tokio::test]
async fn a_saved_snapshot_restores_into_a_new_store_serving_the_same_state() {
    let original = TestServer::start().await;
    let mut c = original.client().await;
    // A workload: creates, updates and deletes of every kind, refusals included.
    let pool = Pool::new("snap", 8);
    let mut rng = StdRng::seed_from_u64(0x5a5e);
    for _ in 0..300 {
        let op = {
            let p = pool.lock().expect("pool");
            choose(&mut rng, &p, "snap")
        };
        let result = perform(&mut c, &op).await;
        learn(&mut pool.lock().expect("pool"), &op, &result);
    }
    let at = revision(&mut c).await;
    assert!(at > 50, "the workload wrote ({at} revisions)");
    let before = everything(&mut c).await;
    assert!(!before.0.mappings.is_empty(), "the workload made mappings");

    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("registry.snapshot");
    let saved = mapreg_cli(&original, &["snapshot", "save", s(&file)]).await;
    let saved = saved.json();
    assert_eq!(saved["Revision"], at);
    assert!(!tmp.path().join("registry.snapshot.tmp").exists());
    let old_store = saved["StoreId"].as_str().expect("store id").to_string();

    // Restore into a new dir; it checks consistent.
    let dir = tmp.path().join("restored");
    let restored = offline(&["snapshot", "restore", s(&file), "--data-dir", s(&dir)]).json();
    assert_eq!(restored["Revision"], at);
    assert_eq!(restored["SavedStoreId"], old_store.as_str());
    assert_ne!(restored["StoreId"], old_store.as_str());
    let check = offline(&["check", "--data-dir", s(&dir)]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("consistent"), "{check:?}");

    // A restore over an existing store is refused, and leaves it alone.
    let again = offline(&["snapshot", "restore", s(&file), "--data-dir", s(&dir)]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("not empty"), "{again:?}");

    // A server on it serves exactly the saved state, at the same revision, as a new store.
    let copy = TestServer::start_with(Config {
        data_dir: dir.clone(),
        ..Config::default()
    })
    .await;
    let mut rc = copy.client().await;
    assert_eq!(revision(&mut rc).await, at);
    let after = everything(&mut rc).await;
    assert_eq!(after.0, before.0);
    assert_eq!(after.1, before.1);

    let mut feed = copy.feed_client(None).await;
    let mut snap = watch(&mut feed, WatchRequest::default())
        .await
        .expect("watch");
    let complete = loop {
        let m = next_message(&mut snap, 10)
            .await
            .expect("snapshot")
            .expect("open");
        if matches!(m.kind, Some(Kind::SnapshotComplete(_))) {
            break m;
        }
    };
    assert_eq!(complete.revision, at);
    assert_ne!(complete.store_id, old_store);
    assert_eq!(
        hex::encode(&complete.history_hash),
        saved["HistoryHash"].as_str().expect("hash")
    );
    // A gateway that followed the old store resumes: STORE_CHANGED.
    let resumed = watch(
        &mut feed,
        WatchRequest {
            start_revision: at + 1,
            store_id: old_store.clone(),
            ..Default::default()
        },
    )
    .await;
    let e = match resumed {
        Err(e) => e,
        Ok(mut stream) => next_message(&mut stream, 10)
            .await
            .expect_err("a resume from the old store fails"),
    };
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert_eq!(reason(&e), "STORE_CHANGED");
    // Writes go on from the saved revision.
    let d = create_domain(&mut rc, "after-restore.example.com").await;
    assert_eq!(d.mod_revision, at + 1);
    drop((rc, feed, snap, c));
    copy.stop().await;
    original.stop().await;
}

#[tokio::test]
async fn damaged_snapshots_are_refused_with_exit_2() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for i in 0..5 {
        create_domain(&mut c, &format!("d{i}.example.com")).await;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("snap");
    mapreg_cli(&server, &["snapshot", "save", s(&file)])
        .await
        .json();
    let good = std::fs::read(&file).expect("snapshot");
    let damaged = [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbled", {
            let mut g = good.clone();
            let mid = g.len() / 2;
            g[mid] ^= 0xff;
            g
        }),
        ("not a snapshot", b"hello, world".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damaged {
        let f = tmp.path().join("bad");
        std::fs::write(&f, bytes).expect("write");
        let dir = tmp
            .path()
            .join(format!("restored-{}", what.replace(' ', "-")));
        let r = offline(&["snapshot", "restore", s(&f), "--data-dir", s(&dir)]);
        assert_eq!(r.code, 2, "{what}: {r:?}");
        assert!(
            r.stderr.contains("is not an intact mapreg snapshot"),
            "{what}: {r:?}"
        );
        assert!(!dir.exists(), "{what}: nothing is left behind");
    }
    // A missing file: refused (1), saying which.
    let r = offline(&[
        "snapshot",
        "restore",
        s(&tmp.path().join("missing")),
        "--data-dir",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("missing"), "{r:?}");
    drop(c);
    server.stop().await;
}
