//! Several nodes, one writer (SPEC.md 8.2; `mapreg::cluster`): the nodes of a shared etcd
//! store elect one node to commit every node's writes, the others forward theirs to it. Every
//! process on 127.0.0.1; the shared 3-member etcd cluster of the test binary, a fresh prefix.
//!
//! What is asserted, through gRPC and real scrapes of `/metrics`:
//! - exactly one node is the writer; writes sent to the others are forwarded (counted) and
//!   answered with the writer's answer, errors included, with no conflicting commits;
//! - a node answers a forwarded write only once its own version has it (read-your-writes on
//!   the node written to, without `min_revision`);
//! - when the writer stops, the others keep writing (committing themselves until a new writer
//!   is elected), and a new one is elected.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use mapreg::config::{Config, Store};
use mapreg::pb::*;
use mapreg::store::etcd::testkit::{self, EtcdCluster};
use tonic::Code;

use crate::common::*;
use crate::metrics::{sample, scrape};

struct Node {
    server: TestServer,
    metrics: SocketAddr,
    client: Client,
}

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, _, body) = scrape(addr).await;
    sample(&body, name, &[])
}

/// Waits (up to `within`) until every one of `nodes` knows the writer and exactly one of them
/// reports itself the writer; its index.
async fn elected(nodes: &[&Node], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut writers = Vec::new();
        let mut known = 0;
        for (i, n) in nodes.iter().enumerate() {
            match metric(n.metrics, "mapreg_writer_elected").await {
                Some(1.0) => {
                    known += 1;
                    writers.push(i);
                }
                Some(_) => known += 1,
                None => {}
            }
        }
        if writers.len() == 1 && known == nodes.len() {
            return writers[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single writer node within {within:?}: {writers:?} say they are"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_every_node_are_committed_by_one_elected_writer() {
    let test = "writes_through_every_node_are_committed_by_one_elected_writer";
    if !testkit::available(test) {
        return;
    }
    // The election's and the forwarders' decisions, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mapreg::cluster=info,mapreg::store::etcd::election=debug")
        .with_test_writer()
        .try_init();
    let cluster = tokio::task::spawn_blocking(EtcdCluster::shared_three)
        .await
        .expect("join")
        .expect("start the shared 3-member etcd cluster");
    let url = cluster.fresh_url();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = Config {
            data_dir: tmp.path().join(format!("unused-{i}")),
            store: Store::Etcd(url.clone()),
            ..Config::default()
        };
        let (server, metrics) = TestServer::start_with_metrics(config).await;
        let client = server.client().await;
        nodes.push(Node {
            server,
            metrics,
            client,
        });
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let writer = elected(&all, Duration::from_secs(10)).await;

    // 3 nodes x 8 writers x 6 creates, each read back at once on the node it was sent to.
    let tasks = (0..24).map(|t| {
        let mut c = nodes[t % 3].client.clone();
        async move {
            for k in 0..6 {
                let api = c
                    .create_api(CreateApiRequest {
                        name: format!("api-{t}-{k}"),
                        protocol_type: ProtocolType::Http as i32,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("create on node {}: {e:?}", t % 3))
                    .into_inner();
                let got = c
                    .get_api(GetApiRequest {
                        api_id: api.api_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| {
                        panic!("node {} does not show its own write at once: {e:?}", t % 3)
                    })
                    .into_inner();
                assert_eq!(got.mod_revision, api.mod_revision);
            }
        }
    });
    join_all(tasks).await;
    for (i, n) in nodes.iter().enumerate() {
        let forwarded = metric(n.metrics, "mapreg_writes_forwarded_total")
            .await
            .expect("forwarded counter");
        let conflicts = metric(n.metrics, "mapreg_write_conflicts_total")
            .await
            .expect("conflicts counter");
        if i == writer {
            assert_eq!(forwarded, 0.0, "the writer forwards nothing");
        } else {
            assert_eq!(
                forwarded, 48.0,
                "node {i} forwards every write it got (the writer is node {writer})"
            );
        }
        assert_eq!(conflicts, 0.0, "node {i}: no commit raced another node's");
    }

    // An error on the writer comes back through the forwarding node as it was: code, reason.
    let follower = (writer + 1) % 3;
    let mut c = nodes[follower].client.clone();
    let refused = c
        .create_stage(CreateStageRequest {
            api_id: "nosuchapi1".into(),
            stage_name: "prod".into(),
            ..Default::default()
        })
        .await
        .expect_err("a stage of a missing API is refused");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(reason(&refused), "API_NOT_FOUND");

    // A write that depends on one just acknowledged by another node is checked against a
    // version that has it, whichever node each goes to (refusals are not answered from an
    // old version either).
    for round in 0..30 {
        let (mut a, mut b) = (
            nodes[round % 3].client.clone(),
            nodes[(round + 1) % 3].client.clone(),
        );
        let api = create_api(&mut a, &format!("dep-{round}"), ProtocolType::Http).await;
        b.create_stage(CreateStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "prod".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: the stage of a just created API: {e:?}"));
        let again = a
            .create_stage(CreateStageRequest {
                api_id: api.api_id.clone(),
                stage_name: "prod".into(),
                ..Default::default()
            })
            .await
            .expect_err("the stage exists");
        assert_eq!(
            again.code(),
            Code::AlreadyExists,
            "round {round}: {again:?}"
        );
    }

    // The writer stops: the others keep writing, and elect a new writer.
    let stopped = nodes.remove(writer);
    stopped.server.stop().await;
    for i in 0..10 {
        for n in &nodes {
            n.client
                .clone()
                .create_api(CreateApiRequest {
                    name: format!("after-{i}"),
                    protocol_type: ProtocolType::Http as i32,
                    ..Default::default()
                })
                .await
                .expect("writes go on after the writer node stopped");
        }
    }
    let rest: Vec<&Node> = nodes.iter().collect();
    elected(
        &rest,
        Duration::from_secs(5 + mapreg::store::etcd::LEASE_TTL as u64),
    )
    .await;
    for n in nodes {
        n.server.stop().await;
    }
}
