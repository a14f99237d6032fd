//! mapreg over etcd (SPEC.md 8.2): a server on a 3-member etcd cluster is stopped and replaced
//! by a new one on the same prefix, which serves everything that was written with the same
//! `store_id` and revision; `mapreg check --store etcd://...` agrees. Skipped (with a message)
//! when etcd is not installed, failed when `CI` is set.

use std::process::Command;

use mapreg::config::{Config, Store};
use mapreg::pb::*;
use mapreg::store::Engine;
use mapreg::store::etcd::EtcdEngine;
use mapreg::store::etcd::testkit::{self, EtcdCluster};

use crate::common::*;

/// The store id and revision a server on `s` announces on a Watch.
async fn announced(s: &TestServer) -> (String, u64) {
    let mut feed = s.feed_client(None).await;
    let mut stream = watch(&mut feed, WatchRequest::default())
        .await
        .expect("watch");
    let first = next_message(&mut stream, 10)
        .await
        .expect("watch message")
        .expect("a first message");
    (first.store_id, first.revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_server_on_the_same_etcd_prefix_serves_everything() {
    if !testkit::available("a_replacement_server_on_the_same_etcd_prefix_serves_everything") {
        return;
    }
    let cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
        .await
        .expect("join")
        .expect("start a 3-member etcd cluster");
    let url = cluster.fresh_url();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: tmp.path().join("unused"),
        store: Store::Etcd(url.clone()),
        ..Config::default()
    };

    let server = TestServer::start_with(config.clone()).await;
    let mut c = server.client().await;
    let (api, m) = api_domain_and_mapping(&mut c).await;
    assert_eq!(m.create_revision, 4);
    let (store_id, revision) = announced(&server).await;
    assert_eq!(revision, 4);
    drop(c);
    server.stop().await;
    assert!(
        !tmp.path().join("unused").exists(),
        "a server on etcd opens no data dir"
    );

    // The store itself, as etcd holds it.
    let (stored_id, stored_revision) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let e = EtcdEngine::open(&url).expect("open");
            (
                e.existing_store_id().expect("id"),
                e.revision().expect("rev"),
            )
        })
        .await
        .expect("join")
    };
    assert_eq!(stored_id.as_deref(), Some(store_id.as_str()));
    assert_eq!(stored_revision, 4);

    let server = TestServer::start_with(config).await;
    assert_eq!(announced(&server).await, (store_id.clone(), 4));
    let mut c = server.client().await;
    let got = get_mapping(&mut c, "api.example.com", &m.api_mapping_id)
        .await
        .expect("mapping survives");
    assert_eq!(got, m);
    let state = visible_state(&mut c).await;
    assert_eq!(state.apis, vec![api.clone()]);
    assert_eq!(state.stages.len(), 1);
    assert_eq!(state.domains.len(), 1);
    assert_eq!(state.mappings, vec![m]);
    let next = create_api(&mut c, "second", ProtocolType::Rest).await;
    assert_eq!(
        next.create_revision, 5,
        "revisions continue on the new server"
    );
    drop(c);
    server.stop().await;

    // `mapreg check --store` runs the data-dir checks on the etcd store.
    let out = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(["check", "--store", &url.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mapreg check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("store {store_id} at revision 5")),
        "{stdout}"
    );
    assert!(stdout.contains("consistent"), "{stdout}");
    // An empty prefix is not a store.
    let empty = cluster.fresh_url().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mapreg"))
        .args(["check", "--store", &empty])
        .output()
        .expect("run mapreg check");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a mapreg store"));
}
