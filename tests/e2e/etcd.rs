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

/// `mapreg serve` on `url` as a child process, its stderr (the log) read line by line.
struct Node {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Node {
    fn start(url: &str, wait_seconds: u64) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mapreg"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", url])
            .env("MAPREG_STORE_WAIT_SECONDS", wait_seconds.to_string())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start mapreg serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits up to `within` for a log line containing `text`; returns it.
    fn wait_for_line(&mut self, text: &str, within: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {text:?} within {within:?}; the log:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Waits up to `within` for the process to exit: its code and the rest of its log.
    fn wait_for_exit(&mut self, within: std::time::Duration) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(2)) {
                    self.log.push(line);
                }
                return (status.code(), self.log.join("\n"));
            }
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after {within:?}; the log:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node started before its etcd waits for it, as Kubernetes' apiserver does: each failed
/// attempt is logged at warn with its reason, and the node serves once etcd is up.
#[test]
fn a_node_started_before_etcd_waits_for_it() {
    if !testkit::available("a_node_started_before_etcd_waits_for_it") {
        return;
    }
    let mut cluster = EtcdCluster::start(1).expect("start etcd");
    let url = cluster.fresh_url().to_string();
    cluster.stop(0);
    let mut node = Node::start(&url, 60);
    let line = node.wait_for_line(
        "cannot load the store yet; waiting for it",
        std::time::Duration::from_secs(20),
    );
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("etcd is unreachable at 127.0.0.1:"), "{line}");
    assert!(
        node.child.try_wait().expect("try_wait").is_none(),
        "the node waits"
    );
    cluster.restart(0).expect("restart etcd");
    cluster
        .wait_healthy(std::time::Duration::from_secs(30))
        .expect("etcd up");
    node.wait_for_line("mapreg serving", std::time::Duration::from_secs(30));
    assert!(
        node.log
            .iter()
            .any(|l| l.contains("the store is reachable again: loaded")),
        "{}",
        node.log.join("\n")
    );
    assert!(node.child.try_wait().expect("try_wait").is_none());
}

/// A node whose etcd never comes gives up after its bound (`--store-wait-seconds`, here 8 s
/// through MAPREG_STORE_WAIT_SECONDS) and exits non-zero saying why.
#[test]
fn a_node_whose_etcd_never_comes_exits_with_a_clear_error_within_its_bound() {
    if !testkit::available(
        "a_node_whose_etcd_never_comes_exits_with_a_clear_error_within_its_bound",
    ) {
        return;
    }
    let mut cluster = EtcdCluster::start(1).expect("start etcd");
    let url = cluster.fresh_url().to_string();
    cluster.stop(0);
    let started = std::time::Instant::now();
    let mut node = Node::start(&url, 8);
    let (code, log) = node.wait_for_exit(std::time::Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        took >= std::time::Duration::from_secs(8) && took < std::time::Duration::from_secs(12),
        "gave up after {took:?}: {log}"
    );
    assert!(
        log.contains("cannot load the store yet; waiting for it"),
        "{log}"
    );
    assert!(log.contains(&format!("cannot open store {url}")), "{log}");
    assert!(
        log.contains("gave up after waiting") && log.contains("--store-wait-seconds"),
        "{log}"
    );
    assert!(log.contains("etcd is unreachable at 127.0.0.1:"), "{log}");
    eprintln!("{log}");
}
