//! Bounded watchers (SPEC.md 8.7): a principal holds at most `max_watches_per_principal`
//! streams; a watcher holds at most `watch_buffer_bytes` queued for its client, and a slow
//! client under that budget still gets every record and revision, in order.

use std::time::Duration;

use mapreg::config::Config;
use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use tonic::Code;

use crate::common::*;

async fn open(
    s: &TestServer,
    token: &str,
) -> Result<tonic::Streaming<WatchResponse>, tonic::Status> {
    let mut feed = s.feed_client(Some(token)).await;
    let mut st = watch(
        &mut feed,
        WatchRequest {
            start_revision: 0,
            ..Default::default()
        },
    )
    .await?;
    // The first message (snapshot_complete of an empty store) or the refusal.
    match next_message(&mut st, 10).await? {
        Some(_) => Ok(st),
        None => Err(tonic::Status::internal("stream ended")),
    }
}

#[tokio::test]
async fn a_principal_holds_at_most_max_watches_per_principal_streams() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config {
        max_watches_per_principal: 3,
        ..token_config(&tmp.path().join("data"))
    };
    let s = TestServer::start_with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&s, "admin-a").await.expect("within the limit"));
    }
    let e = open(&s, "admin-a").await.expect_err("over the limit");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e), "TOO_MANY_WATCHES");
    assert!(
        e.message().contains("max_watches_per_principal"),
        "{}",
        e.message()
    );
    // Another principal of the same account has its own count.
    let other = open(&s, "reader-a").await.expect("another principal");
    // Closing a stream frees its slot (once the server sees the client leave).
    held.pop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        match open(&s, "admin-a").await {
            Ok(st) => break st,
            Err(e) => {
                assert_eq!(reason(&e), "TOO_MANY_WATCHES");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed stream's slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    drop((again, other, held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_under_a_small_buffer_gets_everything_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: tmp.path().join("data"),
        watch_buffer_bytes: 64 * 1024,
        ..Config::default()
    };
    let s = TestServer::start_with(config).await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let domains = 20;
    let per_domain = 30;
    for d in 0..domains {
        let domain = format!("slow{d}.example.com");
        create_domain(&mut c, &domain).await;
        for k in 0..per_domain {
            create_mapping(&mut c, &domain, &format!("key{k}"), &api.api_id, "test").await;
        }
    }
    let mut feed = s.feed_client(None).await;
    let mut st = watch(
        &mut feed,
        WatchRequest {
            start_revision: 0,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    // Writes go on while the client reads slowly.
    let writer = {
        let mut c = s.client().await;
        let api_id = api.api_id.clone();
        tokio::spawn(async move {
            for k in 0..50 {
                create_mapping(
                    &mut c,
                    "slow0.example.com",
                    &format!("late{k}"),
                    &api_id,
                    "test",
                )
                .await;
            }
        })
    };
    let mut snapshot_mappings = 0;
    let mut r0 = None;
    let mut last = 0;
    let before = 2 + domains as u64 * (1 + per_domain as u64);
    let end = before + 50;
    while last < end {
        let m = next_message(&mut st, 20)
            .await
            .expect("message")
            .expect("stream open");
        match m.kind {
            Some(Kind::Snapshot(s)) => {
                assert!(r0.is_none());
                snapshot_mappings += s
                    .resources
                    .iter()
                    .filter(|r| matches!(r.resource, Some(resource::Resource::ApiMapping(_))))
                    .count();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(Kind::SnapshotComplete(_)) => {
                r0 = Some(m.revision);
                last = m.revision;
            }
            Some(Kind::ChangeSet(_)) => {
                assert!(r0.is_some(), "a change set before the snapshot completed");
                assert_eq!(m.revision, last + 1, "gap or duplicate");
                last = m.revision;
            }
            _ => {}
        }
    }
    writer.await.expect("writer");
    let r0 = r0.expect("snapshot completed");
    // The snapshot held every mapping written before it, plus the late ones it included.
    assert_eq!(
        snapshot_mappings as u64,
        (domains * per_domain) as u64 + (r0 - before)
    );
}
