//! ChangeFeed.Watch end to end: the basics one by one, then concurrent writers and watchers
//! (slow, reconnecting, filtered, across a restart and compaction) validated by the history
//! checker ([`crate::history`]) against the reference log and the final state.
//!
//! Heavy tests scale with environment variables (defaults in parentheses):
//! `FEED_OPS_PER_WRITER` (2000, 8 writers), `FEED_RESTART_OPS` (800, 4 writers),
//! `FEED_COMPACTION_OPS` (2400, 4 writers), `FEED_SNAPSHOT_OPS` (600, 4 writers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mapreg::pb::watch_response::Kind;
use mapreg::pb::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch as channel;
use tonic::{Code, Status};

use crate::common::*;
use crate::history::*;
use crate::workload::*;

/// Seconds to wait for one watch message before calling the stream stalled.
const STEP: u64 = 20;

/// Runs a heavy test on its own multi-thread runtime (4 workers) and shuts the runtime down
/// with a bound even when the test failed: a server stuck in a blocking call must make the
/// test fail, not hang in the runtime's drop.
fn run_bounded(test: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test)));
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn kind_name(r: &WatchResponse) -> &'static str {
    match r.kind {
        Some(Kind::Snapshot(_)) => "snapshot",
        Some(Kind::SnapshotComplete(_)) => "snapshot_complete",
        Some(Kind::ChangeSet(_)) => "change_set",
        Some(Kind::Progress(_)) => "progress",
        None => "none",
    }
}

/// Reads a snapshot through snapshot_complete; returns (R0, resources, responses).
async fn read_snapshot(
    s: &mut tonic::Streaming<WatchResponse>,
) -> (u64, State, Vec<WatchResponse>) {
    let mut state = State::new();
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let m = next_message(s, STEP)
            .await
            .expect("snapshot message")
            .expect("stream open");
        all.push(m.clone());
        match m.kind {
            Some(Kind::Snapshot(chunk)) => {
                for r in chunk.resources {
                    state.insert(ResourceId::of(&r), r);
                }
            }
            Some(Kind::SnapshotComplete(_)) => {
                for r in &all {
                    assert_eq!(r.revision, m.revision, "every snapshot chunk is at R0");
                }
                return (m.revision, state, all);
            }
            other => panic!("unexpected {other:?} before snapshot_complete"),
        }
    }
    panic!("no snapshot_complete within 10000 messages");
}

/// The next message, which must be a change_set: (revision, events).
async fn next_change_set(s: &mut tonic::Streaming<WatchResponse>) -> (u64, Vec<Event>, String) {
    let m = next_message(s, STEP)
        .await
        .expect("watch message")
        .expect("stream open");
    match m.kind {
        Some(Kind::ChangeSet(cs)) => (m.revision, cs.events, m.store_id),
        other => panic!("expected a change_set, got {other:?} at {}", m.revision),
    }
}

fn put(r: Resource) -> Event {
    Event {
        r#type: EventType::Put as i32,
        resource: Some(r),
    }
}

/// Opens a watch and returns its first message or the error the call or stream ended with.
async fn first_item(c: &mut FeedClient, req: WatchRequest) -> Result<WatchResponse, Status> {
    let mut s = watch(c, req).await?;
    next_message(&mut s, STEP)
        .await?
        .ok_or_else(|| Status::internal("stream ended without a message"))
}

/// Polls (bounded) until a Watch at `start` is refused as compacted with a compact_revision of
/// at least `at_least`; returns that compact_revision.
async fn wait_compacted(c: &mut FeedClient, start: u64, at_least: u64) -> u64 {
    for _ in 0..1500 {
        match first_item(
            c,
            WatchRequest {
                start_revision: start,
                progress_interval_seconds: 1,
                ..Default::default()
            },
        )
        .await
        {
            Err(s) if s.code() == Code::OutOfRange && reason(&s) == "REVISION_COMPACTED" => {
                let c: u64 = error_metadata(&s, "compact_revision")
                    .expect("compact_revision metadata")
                    .parse()
                    .expect("compact_revision is a number");
                if c >= at_least {
                    return c;
                }
            }
            Err(s) => panic!("unexpected error while waiting for compaction: {s:?}"),
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("revision {start} was not compacted up to {at_least} within the polling bound");
}

// ---- the checker itself ----------------------------------------------------------------------

fn api_at(id: &str, create: u64, modified: u64) -> Resource {
    api_resource(Api {
        api_id: id.into(),
        account_id: "000000000000".into(),
        create_revision: create,
        mod_revision: modified,
        ..Default::default()
    })
}

fn resp(revision: u64, kind: Kind) -> WatchResponse {
    WatchResponse {
        store_id: "s1".into(),
        revision,
        kind: Some(kind),
        ..Default::default()
    }
}

fn cs(revision: u64, events: Vec<Event>) -> WatchResponse {
    resp(
        revision,
        Kind::ChangeSet(ChangeSet {
            events,
            ..Default::default()
        }),
    )
}

fn del(r: Resource) -> Event {
    Event {
        r#type: EventType::Delete as i32,
        resource: Some(r),
    }
}

/// The history checker is not vacuous: each guarantee, broken on purpose, is reported.
#[test]
fn the_history_checker_reports_each_broken_guarantee() {
    // 1: create a; 2: create b; 3: update a; 4: delete b + create c (one revision, two events).
    let log = vec![
        cs(1, vec![put(api_at("a", 1, 1))]),
        cs(2, vec![put(api_at("b", 2, 2))]),
        cs(3, vec![put(api_at("a", 1, 3))]),
        cs(4, vec![del(api_at("b", 2, 2)), put(api_at("c", 4, 4))]),
    ];
    let reference = ReferenceLog::from_responses(&log, 4).expect("valid reference");
    assert_eq!(reference.final_state().len(), 2);
    let run = |name: &str, filter: WatchFilter, sessions: Vec<(u64, Vec<WatchResponse>)>| {
        let mut rec = WatchRecord::new(name, filter);
        for (start, responses) in sessions {
            rec.begin(WatchRequest {
                start_revision: start,
                ..Default::default()
            });
            for r in responses {
                rec.record(r);
            }
        }
        check(&rec, &reference)
    };
    let all = WatchFilter::all;
    let (sum, v) = run("good", all(), vec![(1, log.clone())]);
    assert!(v.is_empty(), "{v:#?}");
    assert_eq!(sum.model, Some(reference.final_state()));
    let snapshot = vec![
        resp(
            2,
            Kind::Snapshot(Snapshot {
                resources: vec![api_at("a", 1, 1), api_at("b", 2, 2)],
            }),
        ),
        resp(2, Kind::SnapshotComplete(SnapshotComplete {})),
        log[2].clone(),
        log[3].clone(),
    ];
    let (sum, v) = run("good-snapshot", all(), vec![(0, snapshot.clone())]);
    assert!(v.is_empty(), "{v:#?}");
    assert_eq!(sum.model, Some(reference.final_state()));
    let resumed = vec![(1, log[..2].to_vec()), (3, log[2..].to_vec())];
    let (_, v) = run("good-resume", all(), resumed);
    assert!(v.is_empty(), "{v:#?}");

    let expect = |label: &str, v: Vec<String>, needle: &str| {
        assert!(
            v.iter().any(|m| m.contains(needle)),
            "{label}: expected a violation containing {needle:?}, got {v:#?}"
        );
    };
    let (_, v) = run(
        "gap",
        all(),
        vec![(1, vec![log[0].clone(), log[1].clone(), log[3].clone()])],
    );
    expect("gap", v, "skipped (reliable)");
    let (_, v) = run(
        "dup",
        all(),
        vec![(1, vec![log[0].clone(), log[1].clone(), log[1].clone()])],
    );
    expect("duplicate", v, "ordered/unique");
    let split = vec![
        log[0].clone(),
        log[1].clone(),
        log[2].clone(),
        cs(4, vec![del(api_at("b", 2, 2))]),
        cs(5, vec![put(api_at("c", 4, 4))]),
    ];
    let (_, v) = run("split", all(), vec![(1, split)]);
    expect("split", v.clone(), "atomic");
    expect("split", v, "not in the log");
    let bookmark = vec![
        log[0].clone(),
        log[1].clone(),
        resp(3, Kind::Progress(Progress {})),
        log[2].clone(),
    ];
    let (_, v) = run("bookmark", all(), vec![(1, bookmark)]);
    expect("bookmark", v.clone(), "bookmarkable/reliable");
    expect("bookmark", v, "after a progress");
    let (_, v) = run(
        "resume",
        all(),
        vec![(1, log[..2].to_vec()), (4, log[3..].to_vec())],
    );
    expect("resume", v, "resumable");
    let mut other_store = log.clone();
    other_store[1].store_id = "s2".into();
    let (_, v) = run("store", all(), vec![(1, other_store)]);
    expect("store", v, "store_id");
    let stages_only = WatchFilter {
        kinds: vec![ResourceKind::Stage],
        ..WatchFilter::default()
    };
    let (_, v) = run("filter", stages_only, vec![(1, vec![log[0].clone()])]);
    expect("filter", v, "atomic/filters");
    let mut stale = snapshot.clone();
    stale[0] = resp(
        2,
        Kind::Snapshot(Snapshot {
            resources: vec![api_at("a", 1, 1)],
        }),
    );
    let (_, v) = run("snapshot", all(), vec![(0, stale)]);
    expect("snapshot", v, "snapshot differs");
    let other_account = WatchFilter::account("111122223333");
    let (_, v) = run("account", other_account, vec![(1, vec![log[0].clone()])]);
    expect("account", v, "atomic/filters");
}

// ---- basics ----------------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_then_live_changes() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_api(&mut c, "rest", ProtocolType::Rest).await;
    create_domain(&mut c, "snap.example.com").await;
    let m = create_mapping(&mut c, "snap.example.com", "v1", &api.api_id, "test").await;
    assert_eq!(m.mod_revision, 5);

    let mut f = server.feed_client(None).await;
    let mut s = watch(&mut f, WatchRequest::default()).await.expect("watch");
    let (r0, snap, msgs) = read_snapshot(&mut s).await;
    assert_eq!(r0, 5, "the snapshot is as of the last write");
    let store_id = msgs[0].store_id.clone();
    assert!(!store_id.is_empty(), "store_id is set");
    assert!(msgs.iter().all(|m| m.store_id == store_id));
    let listed = state_of(&visible_state(&mut c).await);
    assert_eq!(
        state_diff(&listed, &snap, 10),
        Vec::<String>::new(),
        "snapshot = listed state"
    );

    let api2 = create_api(&mut c, "live", ProtocolType::Http).await;
    let (rev, events, sid) = next_change_set(&mut s).await;
    assert_eq!(rev, 6);
    assert_eq!(sid, store_id);
    assert_eq!(events, vec![put(api_resource(api2))]);
    let d = c
        .delete_api_mapping(DeleteApiMappingRequest {
            domain_name: "snap.example.com".into(),
            api_mapping_id: m.api_mapping_id.clone(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete mapping")
        .into_inner();
    let (rev, events, _) = next_change_set(&mut s).await;
    assert_eq!(rev, d.revision);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].r#type, EventType::Delete as i32);
    assert_eq!(
        events[0].resource,
        Some(mapping_resource(m)),
        "a delete carries the last state"
    );
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn resume_from_a_revision() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut apis = Vec::new();
    for i in 0..10 {
        apis.push(create_api(&mut c, &format!("a{i}"), ProtocolType::Http).await);
    }
    let mut f = server.feed_client(None).await;
    let mut s = watch(
        &mut f,
        WatchRequest {
            start_revision: 5,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let mut store_id = String::new();
    for api in &apis[4..] {
        let (rev, events, sid) = next_change_set(&mut s).await;
        assert_eq!(rev, api.mod_revision);
        assert_eq!(events, vec![put(api_resource(api.clone()))]);
        if store_id.is_empty() {
            store_id = sid;
        } else {
            assert_eq!(sid, store_id);
        }
    }
    // Resuming with last + 1 and the store id continues exactly.
    drop(s);
    let api11 = create_api(&mut c, "a10", ProtocolType::Http).await;
    let mut s = watch(
        &mut f,
        WatchRequest {
            start_revision: 11,
            store_id: store_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("resume");
    let (rev, events, sid) = next_change_set(&mut s).await;
    assert_eq!((rev, sid), (11, store_id));
    assert_eq!(events, vec![put(api_resource(api11))]);
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn a_future_start_revision_waits_for_it() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_api(&mut c, "one", ProtocolType::Http).await;
    create_api(&mut c, "two", ProtocolType::Http).await;
    let mut f = server.feed_client(None).await;
    let mut s = watch(
        &mut f,
        WatchRequest {
            start_revision: 5,
            progress_interval_seconds: 3600,
            ..Default::default()
        },
    )
    .await
    .expect("a future start is accepted");
    create_api(&mut c, "three", ProtocolType::Http).await;
    create_api(&mut c, "four", ProtocolType::Http).await;
    let five = create_api(&mut c, "five", ProtocolType::Http).await;
    assert_eq!(five.mod_revision, 5);
    let (rev, events, _) = next_change_set(&mut s).await;
    assert_eq!(rev, 5, "revisions 3 and 4 are before the start");
    assert_eq!(events, vec![put(api_resource(five))]);
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn store_changed_when_the_data_dir_is_replaced() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_api(&mut c, "one", ProtocolType::Http).await;
    create_api(&mut c, "two", ProtocolType::Http).await;
    let mut f = server.feed_client(None).await;
    let first = first_item(&mut f, WatchRequest::default())
        .await
        .expect("watch");
    let store_id = first.store_id.clone();
    assert!(!store_id.is_empty());
    drop((c, f));

    // Same data dir: same store, the old id is accepted.
    let server = server.restart().await;
    let mut f = server.feed_client(None).await;
    let m = first_item(
        &mut f,
        WatchRequest {
            start_revision: 2,
            store_id: store_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("same store after a restart");
    assert_eq!((m.revision, m.store_id.as_str()), (2, store_id.as_str()));
    drop(f);

    // A new, empty data dir: STORE_CHANGED, whatever the start revision.
    let server = server.restart_fresh().await;
    let mut f = server.feed_client(None).await;
    for start in [0, 1, 3] {
        let r = f
            .watch(WatchRequest {
                start_revision: start,
                store_id: store_id.clone(),
                ..Default::default()
            })
            .await;
        let st = expect_err(r, Code::OutOfRange, "STORE_CHANGED");
        assert_eq!(
            error_metadata(&st, "compact_revision").as_deref(),
            Some("0"),
            "STORE_CHANGED carries compact_revision: {st:?}"
        );
    }
    let fresh = first_item(&mut f, WatchRequest::default())
        .await
        .expect("a watch without store_id starts over");
    assert!(matches!(fresh.kind, Some(Kind::SnapshotComplete(_))));
    assert_eq!(fresh.revision, 0);
    assert!(!fresh.store_id.is_empty());
    assert_ne!(
        fresh.store_id, store_id,
        "a new data dir has a new store_id"
    );
    // A made-up id is another store too.
    let r = f
        .watch(WatchRequest {
            store_id: "not-this-store".into(),
            ..Default::default()
        })
        .await;
    expect_err(r, Code::OutOfRange, "STORE_CHANGED");
    drop(f);
    server.stop().await;
}

#[tokio::test]
async fn revision_compacted_below_the_window() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let history = 4;
    let server = TestServer::start_with(mapreg::config::Config {
        data_dir: tmp.path().join("data"),
        watch_history: history,
        ..Default::default()
    })
    .await;
    let mut c = server.client().await;
    let mut apis = Vec::new();
    for i in 0..20 {
        apis.push(create_api(&mut c, &format!("a{i}"), ProtocolType::Http).await);
    }
    let last = 20;
    let slack = (history / 16).max(1);
    let mut f = server.feed_client(None).await;
    // Compaction runs in the background: poll until it settled below the window.
    let compact = wait_compacted(&mut f, 1, last - history - slack).await;
    assert!(
        compact <= last - history,
        "the last {history} revisions are kept: compact_revision {compact}, last {last}"
    );
    let r = f
        .watch(WatchRequest {
            start_revision: compact,
            ..Default::default()
        })
        .await;
    let st = expect_err(r, Code::OutOfRange, "REVISION_COMPACTED");
    assert_eq!(
        error_metadata(&st, "compact_revision"),
        Some(compact.to_string())
    );
    let mut s = watch(
        &mut f,
        WatchRequest {
            start_revision: compact + 1,
            ..Default::default()
        },
    )
    .await
    .expect("the first retained revision");
    for api in &apis[compact as usize..] {
        let (rev, events, _) = next_change_set(&mut s).await;
        assert_eq!(rev, api.mod_revision);
        assert_eq!(events, vec![put(api_resource(api.clone()))]);
    }
    drop(s);
    // A re-snapshot still works and has everything.
    let mut s = watch(&mut f, WatchRequest::default()).await.expect("watch");
    let (r0, snap, _) = read_snapshot(&mut s).await;
    assert_eq!(r0, last);
    assert_eq!(snap.len(), 20);
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn bad_watch_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut f = server.feed_client(None).await;
    let cases: Vec<(WatchRequest, &str, &str)> = vec![
        (
            WatchRequest {
                kinds: vec![0],
                ..Default::default()
            },
            "INVALID_KINDS",
            "kinds",
        ),
        (
            WatchRequest {
                kinds: vec![ResourceKind::Api as i32, 99],
                ..Default::default()
            },
            "INVALID_KINDS",
            "kinds",
        ),
        (
            WatchRequest {
                kinds: vec![-1],
                ..Default::default()
            },
            "INVALID_KINDS",
            "kinds",
        ),
        (
            WatchRequest {
                domain_names: vec!["not a domain".into()],
                ..Default::default()
            },
            "INVALID_DOMAIN_NAMES",
            "domain_names",
        ),
        (
            WatchRequest {
                domain_names: vec!["ok.example.com".into(), "under_score.example.com".into()],
                ..Default::default()
            },
            "INVALID_DOMAIN_NAMES",
            "domain_names",
        ),
        (
            WatchRequest {
                domain_names: vec![String::new()],
                ..Default::default()
            },
            "INVALID_DOMAIN_NAMES",
            "domain_names",
        ),
        (
            WatchRequest {
                progress_interval_seconds: 86_401,
                ..Default::default()
            },
            "INVALID_PROGRESS_INTERVAL_SECONDS",
            "progress_interval_seconds",
        ),
        (
            WatchRequest {
                progress_interval_seconds: u32::MAX,
                ..Default::default()
            },
            "INVALID_PROGRESS_INTERVAL_SECONDS",
            "progress_interval_seconds",
        ),
    ];
    for (req, reason_, field) in cases {
        let st = expect_err(f.watch(req.clone()).await, Code::InvalidArgument, reason_);
        assert_eq!(violated_fields(&st), vec![field.to_string()], "{req:?}");
        assert!(
            st.message().contains(field),
            "message names {field}: {st:?}"
        );
    }
    // The largest interval, upper-case domains and every kind are fine.
    let ok = first_item(
        &mut f,
        WatchRequest {
            kinds: vec![
                ResourceKind::Api as i32,
                ResourceKind::Stage as i32,
                ResourceKind::DomainName as i32,
                ResourceKind::ApiMapping as i32,
            ],
            domain_names: vec!["API.Example.COM".into(), "*.example.com".into()],
            progress_interval_seconds: 86_400,
            ..Default::default()
        },
    )
    .await
    .expect("valid request");
    assert!(matches!(ok.kind, Some(Kind::SnapshotComplete(_))));
    // The server is still fine.
    let mut c = server.client().await;
    create_api(&mut c, "still-up", ProtocolType::Http).await;
    drop(f);
    server.stop().await;
}

#[tokio::test]
async fn delete_domain_name_cascade_is_one_change_set() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    let domain = create_domain(&mut c, "cascade.example.com").await;
    let mut mappings = Vec::new();
    for key in ["", "a", "b", "c/d", "e"] {
        mappings
            .push(create_mapping(&mut c, "cascade.example.com", key, &api.api_id, "test").await);
    }
    let other = create_domain(&mut c, "other.example.com").await;
    let kept = create_mapping(&mut c, "other.example.com", "x", &api.api_id, "test").await;
    let current = kept.mod_revision;
    let mut f = server.feed_client(None).await;
    let mut s = watch(
        &mut f,
        WatchRequest {
            start_revision: current + 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let del = c
        .delete_domain_name(DeleteDomainNameRequest {
            domain_name: "cascade.example.com".into(),
            expected_revision: 0,
            ..Default::default()
        })
        .await
        .expect("delete domain")
        .into_inner();
    assert_eq!(del.revision, current + 1);
    let (rev, events, _) = next_change_set(&mut s).await;
    assert_eq!(rev, del.revision);
    assert_eq!(events.len(), mappings.len() + 1, "N mappings + the domain");
    assert!(events.iter().all(|e| e.r#type == EventType::Delete as i32));
    let got: BTreeSet<ResourceId> = events
        .iter()
        .map(|e| ResourceId::of(e.resource.as_ref().expect("resource")))
        .collect();
    let mut want: BTreeSet<ResourceId> = mappings
        .iter()
        .map(|m| ResourceId::of(&mapping_resource(m.clone())))
        .collect();
    want.insert(ResourceId::DomainName(domain.domain_name.clone()));
    assert_eq!(got, want);
    for e in &events {
        let r = e.resource.clone().expect("resource");
        let last = mappings
            .iter()
            .cloned()
            .map(mapping_resource)
            .chain([domain_resource(domain.clone())])
            .find(|m| ResourceId::of(m) == ResourceId::of(&r))
            .expect("known");
        assert_eq!(r, last, "a delete carries the last state");
    }
    // The next revision is a change_set of its own: nothing of the cascade was split off.
    let api2 = create_api(&mut c, "after", ProtocolType::Http).await;
    let (rev, events, _) = next_change_set(&mut s).await;
    assert_eq!(rev, del.revision + 1);
    assert_eq!(events, vec![put(api_resource(api2))]);
    assert_eq!(all_mappings(&mut c, &other.domain_name).await, vec![kept]);
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn progress_carries_the_current_revision_when_filters_hide_changes() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut f = server.feed_client(None).await;
    for (req, label) in [
        (
            WatchRequest {
                kinds: vec![ResourceKind::ApiMapping as i32],
                progress_interval_seconds: 1,
                ..Default::default()
            },
            "kinds",
        ),
        (
            WatchRequest {
                domain_names: vec!["watched.example.com".into()],
                kinds: vec![ResourceKind::DomainName as i32],
                progress_interval_seconds: 1,
                ..Default::default()
            },
            "domain_names",
        ),
    ] {
        let mut s = watch(&mut f, req).await.expect("watch");
        let (r0, snap, _) = read_snapshot(&mut s).await;
        assert!(snap.is_empty(), "{label}: nothing visible yet");
        // Hidden writes: APIs (kinds) and another domain (domain_names).
        create_api(&mut c, "hidden", ProtocolType::Http).await;
        let d = create_domain(
            &mut c,
            &format!("hidden-{}.example.com", label.replace('_', "-")),
        )
        .await;
        let last = d.mod_revision;
        assert!(last > r0);
        let mut reached = false;
        for _ in 0..30 {
            let m = next_message(&mut s, STEP)
                .await
                .expect("progress")
                .expect("open");
            assert!(
                matches!(m.kind, Some(Kind::Progress(_))),
                "{label}: only progress may arrive, got {} at {}",
                kind_name(&m),
                m.revision
            );
            assert!(m.revision <= last, "{label}: progress ahead of the store");
            assert!(!m.store_id.is_empty());
            if m.revision == last {
                reached = true;
                break;
            }
        }
        assert!(
            reached,
            "{label}: a progress at the current revision {last} arrived"
        );
        drop(s);
    }
    server.stop().await;
}

/// Hidden writes that never stop must not starve progress: a filtered watcher still learns
/// how far the store has come while writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_arrives_while_hidden_writes_go_on() {
    let server = TestServer::start().await;
    let mut f = server.feed_client(None).await;
    let mut s = watch(
        &mut f,
        WatchRequest {
            kinds: vec![ResourceKind::ApiMapping as i32],
            progress_interval_seconds: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    read_snapshot(&mut s).await;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (acked_tx, acked_rx) = channel::channel(0u64);
    let endpoint = server.endpoint();
    let writer = tokio::spawn(async move {
        let mut c = client_at(&endpoint, None).await.expect("connect");
        // Bounded: at most 20000 hidden writes, until the watcher saw its progress.
        for i in 0..20_000 {
            if stop_rx.try_recv().is_ok() {
                return i;
            }
            let a = create_api(&mut c, &format!("hidden-{i}"), ProtocolType::Http).await;
            acked_tx.send_replace(a.mod_revision);
        }
        20_000
    });
    // The first progress after some hidden writes were acknowledged.
    let mut seen = None;
    for _ in 0..1000 {
        let Ok(Some(m)) = next_message(&mut s, 30).await else {
            panic!("the stream ended");
        };
        assert!(
            matches!(m.kind, Some(Kind::Progress(_))),
            "only progress may arrive, got {}",
            kind_name(&m)
        );
        let acked = *acked_rx.borrow();
        assert!(
            m.revision <= acked + 1,
            "progress at {} is ahead of the acknowledged {acked}",
            m.revision
        );
        if m.revision >= 10 {
            seen = Some(m.revision);
            break;
        }
    }
    let _ = stop_tx.send(());
    let writes = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("writer stops")
        .expect("writer task");
    let revision = seen.expect("a progress past revision 10 arrived");
    assert!(
        writes < 20_000,
        "the progress at {revision} arrived while the hidden writes were going on"
    );
    drop(s);
    server.stop().await;
}

#[tokio::test]
async fn reader_sees_its_account_gateway_sees_all() {
    let server = TestServer::start_with_tokens().await;
    let mut a = server.client_with("admin-a").await;
    let mut b = server.client_with("admin-b").await;
    let api_a = create_api(&mut a, "a", ProtocolType::Http).await;
    let api_b = create_api(&mut b, "b", ProtocolType::Http).await;

    let mut streams = Vec::new();
    for token in ["reader-a", "gateway", "admin-b"] {
        let mut f = server.feed_client(Some(token)).await;
        let mut s = watch(
            &mut f,
            WatchRequest {
                progress_interval_seconds: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{token} may watch: {e:?}"));
        let (r0, snap, _) = read_snapshot(&mut s).await;
        assert_eq!(r0, 2);
        let ids: BTreeSet<ResourceId> = snap.keys().cloned().collect();
        let want: BTreeSet<ResourceId> = match token {
            "reader-a" => [ResourceId::Api(api_a.api_id.clone())].into(),
            "gateway" => [
                ResourceId::Api(api_a.api_id.clone()),
                ResourceId::Api(api_b.api_id.clone()),
            ]
            .into(),
            _ => [ResourceId::Api(api_b.api_id.clone())].into(),
        };
        assert_eq!(ids, want, "{token}'s snapshot");
        streams.push((token, f, s));
    }
    let dom_b = create_domain(&mut b, "b-only.example.com").await; // 3
    let stage_a = create_stage(&mut a, &api_a.api_id, "test").await; // 4
    let api_b2 = create_api(&mut b, "b2", ProtocolType::Rest).await; // 5
    for (token, _f, s) in &mut streams {
        let want: Vec<(u64, Vec<Event>)> = match *token {
            "reader-a" => vec![(4, vec![put(stage_resource(stage_a.clone()))])],
            "gateway" => vec![
                (3, vec![put(domain_resource(dom_b.clone()))]),
                (4, vec![put(stage_resource(stage_a.clone()))]),
                (5, vec![put(api_resource(api_b2.clone()))]),
            ],
            _ => vec![
                (3, vec![put(domain_resource(dom_b.clone()))]),
                (5, vec![put(api_resource(api_b2.clone()))]),
            ],
        };
        let mut got = Vec::new();
        // Read until a progress says revision 5 was dealt with.
        for _ in 0..30 {
            let m = next_message(s, STEP).await.expect("message").expect("open");
            match m.kind {
                Some(Kind::ChangeSet(cs)) => got.push((m.revision, cs.events)),
                Some(Kind::Progress(_)) if m.revision >= 5 => break,
                Some(Kind::Progress(_)) => {}
                other => panic!("{token}: unexpected {other:?}"),
            }
        }
        assert_eq!(got, want, "{token}'s change sets");
    }
    drop(streams);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_watch_streams_with_unavailable() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    create_api(&mut c, "one", ProtocolType::Http).await;
    let mut f = server.feed_client(None).await;
    // One stream live after its snapshot, one waiting for a future revision, one whose
    // client does not read until the end (its queue fills up).
    let mut idle = watch(&mut f, WatchRequest::default()).await.expect("watch");
    read_snapshot(&mut idle).await;
    let mut future = watch(
        &mut f,
        WatchRequest {
            start_revision: 1000,
            progress_interval_seconds: 3600,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    let mut f2 = server.feed_client(None).await;
    let mut stuck = watch(
        &mut f2,
        WatchRequest {
            start_revision: 1,
            ..Default::default()
        },
    )
    .await
    .expect("watch");
    for i in 0..150 {
        create_api(&mut c, &format!("fill{i}"), ProtocolType::Http).await;
    }
    drop(c);
    let stop = tokio::spawn(server.stop());
    // Each stream delivers what it still holds, in order, then ends with UNAVAILABLE.
    for (label, s) in [
        ("idle", &mut idle),
        ("future", &mut future),
        ("stuck", &mut stuck),
    ] {
        let mut last = 0;
        let mut ended = None;
        for _ in 0..1000 {
            match next_message(s, 30).await {
                Ok(Some(m)) => {
                    assert!(
                        matches!(m.kind, Some(Kind::ChangeSet(_))),
                        "{label}: {}",
                        kind_name(&m)
                    );
                    assert!(m.revision > last, "{label}: ordered");
                    assert!(
                        m.revision <= 151,
                        "{label}: no revision beyond the last write"
                    );
                    last = m.revision;
                }
                Ok(None) => break,
                Err(st) => {
                    ended = Some(st);
                    break;
                }
            }
        }
        let st = ended.unwrap_or_else(|| panic!("{label}: the stream ends with an error"));
        assert_eq!(st.code(), Code::Unavailable, "{label}: {st:?}");
        assert_eq!(reason(&st), "SHUTTING_DOWN", "{label}: {st:?}");
        if label == "future" {
            assert_eq!(last, 0, "future: nothing before its start revision");
        }
    }
    tokio::time::timeout(Duration::from_secs(60), stop)
        .await
        .expect("the server stops although watch streams were open")
        .expect("stop task");
}

/// Writes while Watch(start_revision 0) snapshots are being read: every write completes (a
/// write must never wait for a snapshot) and every snapshot is the exact state at its R0.
#[test]
fn writes_during_snapshots_complete_and_snapshots_are_exact() {
    run_bounded(writes_during_snapshots_complete_and_snapshots_are_exact_body());
}

async fn writes_during_snapshots_complete_and_snapshots_are_exact_body() {
    let server = TestServer::start().await;
    // Enough records for several snapshot chunks.
    let mut preload = Vec::new();
    for t in 0..8 {
        let endpoint = server.endpoint();
        preload.push(tokio::spawn(async move {
            let mut c = client_at(&endpoint, None).await.expect("connect");
            for i in 0..150 {
                create_api(&mut c, &format!("pre-{t}-{i}"), ProtocolType::Http).await;
            }
        }));
    }
    for t in preload {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("preload within 120 s")
            .expect("preload task");
    }
    let mut writers = Vec::new();
    for t in 0..4 {
        let endpoint = server.endpoint();
        writers.push(tokio::spawn(async move {
            let mut c = client_at(&endpoint, None).await.expect("connect");
            for i in 0..150 {
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    c.create_api(CreateApiRequest {
                        name: format!("during-{t}-{i}"),
                        protocol_type: ProtocolType::Http as i32,
                        ..Default::default()
                    }),
                )
                .await;
                match r {
                    Ok(r) => {
                        r.expect("create api during snapshots");
                    }
                    Err(_) => panic!(
                        "write {t}/{i} did not complete within 10 s while a snapshot was being read (the writer is stuck)"
                    ),
                }
            }
        }));
    }
    let mut f = server.feed_client(None).await;
    let mut snapshots = Vec::new();
    for _ in 0..10 {
        let mut s = watch(&mut f, WatchRequest::default()).await.expect("watch");
        let (r0, snap, _) = read_snapshot(&mut s).await;
        snapshots.push((r0, snap));
    }
    for t in writers {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("writers finish within 120 s")
            .expect("writer task (see its panic)");
    }
    let mut c = server.client().await;
    let last = create_api(&mut c, "last", ProtocolType::Http)
        .await
        .mod_revision;
    let reference = read_reference(&server.endpoint(), None, last).await;
    for (r0, snap) in &snapshots {
        let diff = state_diff(&reference.state_at(*r0), snap, 10);
        assert!(
            diff.is_empty(),
            "snapshot at {r0} differs from the log: {diff:#?}"
        );
    }
    server.stop().await;
}

// ---- concurrent writers and watchers (the writes: crate::workload) -------------------------

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What writers and watchers of one heavy test share.
struct Shared {
    /// The current server's endpoint (changes on a restart).
    endpoint: channel::Sender<String>,
    /// The final revision once the writes are done (0 until then).
    target: channel::Sender<u64>,
    /// The highest acknowledged revision.
    acked: channel::Sender<u64>,
    /// Operations done by all writers.
    ops_done: channel::Sender<usize>,
    /// Whether a restart may happen (UNAVAILABLE is expected then).
    restarts: bool,
    /// One pool per account.
    pools: Vec<Mutex<Pool>>,
}

impl Shared {
    fn new(endpoint: String, restarts: bool, pools: Vec<Mutex<Pool>>) -> Arc<Shared> {
        Arc::new(Shared {
            endpoint: channel::Sender::new(endpoint),
            target: channel::Sender::new(0),
            acked: channel::Sender::new(0),
            ops_done: channel::Sender::new(0),
            restarts,
            pools,
        })
    }

    fn ack(&self, revision: u64) {
        self.acked.send_modify(|a| *a = (*a).max(revision));
    }
}

/// Waits (bounded) until the endpoint differs from `old`.
async fn new_endpoint(shared: &Shared, old: &str) -> Result<String, String> {
    let mut rx = shared.endpoint.subscribe();
    match tokio::time::timeout(Duration::from_secs(90), rx.wait_for(|e| e != old)).await {
        Ok(Ok(e)) => Ok(e.clone()),
        _ => Err(format!("no new server endpoint after {old} within 90 s")),
    }
}

struct WriterSpec {
    id: usize,
    token: Option<&'static str>,
    pool: usize,
    ops: usize,
}

#[derive(Default)]
struct WriterOut {
    acks: Vec<Ack>,
    refused: BTreeMap<String, usize>,
    ambiguous: usize,
    unexpected: Vec<String>,
}

/// Whether `st` says the connection failed under the request rather than the server
/// answering it.
fn is_transport(st: &Status) -> bool {
    matches!(
        st.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    )
        // A request racing the server's GOAWAY at shutdown fails in the client's own h2, which
        // tonic reports as INTERNAL "h2 protocol error: ..." (the server never answered it).
        || (st.code() == Code::Internal && st.message().starts_with("h2 protocol error"))
}

async fn writer(shared: Arc<Shared>, spec: WriterSpec) -> WriterOut {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + spec.id as u64);
    let mut out = WriterOut::default();
    let mut endpoint = shared.endpoint.borrow().clone();
    let mut client = client_at(&endpoint, spec.token).await.ok();
    for i in 0..spec.ops {
        let tag = format!("w{}-{i}", spec.id);
        let Some(c) = client.as_mut() else {
            // Not connected: wait for the next server.
            match new_endpoint(&shared, &endpoint).await {
                Ok(e) => {
                    endpoint = e;
                    client = client_at(&endpoint, spec.token).await.ok();
                }
                Err(e) => {
                    out.unexpected.push(format!("writer {}: {e}", spec.id));
                    return out;
                }
            }
            continue;
        };
        let op = {
            let pool = shared.pools[spec.pool].lock().expect("pool");
            choose(&mut rng, &pool, &tag)
        };
        let result = match tokio::time::timeout(Duration::from_secs(60), perform(c, &op)).await {
            Ok(r) => r,
            Err(_) => {
                out.unexpected
                    .push(format!("writer {}: {op:?} took over 60 s", spec.id));
                return out;
            }
        };
        learn(
            &mut shared.pools[spec.pool].lock().expect("pool"),
            &op,
            &result,
        );
        match result {
            Ok(ack) => {
                shared.ack(ack.revision);
                out.acks.push(ack);
            }
            Err(st) if is_transport(&st) && shared.restarts => {
                out.ambiguous += 1;
                let current = shared.endpoint.borrow().clone();
                if current == endpoint {
                    match new_endpoint(&shared, &endpoint).await {
                        Ok(e) => endpoint = e,
                        Err(e) => {
                            out.unexpected.push(format!("writer {}: {e}", spec.id));
                            return out;
                        }
                    }
                } else {
                    endpoint = current;
                }
                client = client_at(&endpoint, spec.token).await.ok();
            }
            Err(st) => {
                let r = reason(&st);
                let expected = matches!(
                    st.code(),
                    Code::NotFound
                        | Code::AlreadyExists
                        | Code::FailedPrecondition
                        | Code::Aborted
                        | Code::ResourceExhausted
                ) || (st.code() == Code::InvalidArgument
                    && (r == "INVALID_API_MAPPING_KEY" || r == "MULTI_LEVEL_KEY_NOT_SUPPORTED"));
                if expected {
                    *out.refused.entry(r).or_default() += 1;
                } else {
                    out.unexpected
                        .push(format!("writer {}: {op:?} -> {st:?}", spec.id));
                }
            }
        }
        shared.ops_done.send_modify(|n| *n += 1);
    }
    out
}

#[derive(Clone)]
struct WatcherSpec {
    name: String,
    token: Option<&'static str>,
    filter: WatchFilter,
    /// 0: snapshot first; N: from revision N.
    start: u64,
    /// Sleep after each message.
    delay: Option<Duration>,
    /// Sleep only while in a snapshot.
    delay_in_snapshot_only: bool,
    /// Drop the stream and resume after this many messages of a session.
    reconnect_every: Option<usize>,
    /// Reconnect with a new snapshot (start_revision 0) instead of resuming.
    resnapshot: bool,
    /// After this many messages, disconnect and wait until the position is compacted.
    pause_until_compacted_after: Option<usize>,
    /// Start only once the writers did this many operations.
    begin_after_ops: usize,
    /// Once live, stop reading (stream open) until the writers are this many revisions
    /// ahead (or done): the server's queue and ring overflow and it must serve this
    /// watcher from the log.
    stall_until_lag: Option<u64>,
}

impl WatcherSpec {
    fn new(name: &str, token: Option<&'static str>, filter: WatchFilter, start: u64) -> Self {
        WatcherSpec {
            name: name.into(),
            token,
            filter,
            start,
            delay: None,
            delay_in_snapshot_only: false,
            reconnect_every: None,
            resnapshot: false,
            pause_until_compacted_after: None,
            begin_after_ops: 0,
            stall_until_lag: None,
        }
    }
    fn slow(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    fn reconnecting(mut self, every: usize) -> Self {
        self.reconnect_every = Some(every);
        self
    }
    fn stalled(mut self, lag: u64) -> Self {
        self.stall_until_lag = Some(lag);
        self
    }
    fn after(mut self, ops: usize) -> Self {
        self.begin_after_ops = ops;
        self
    }
}

struct WatcherOut {
    record: WatchRecord,
    max_lag: u64,
    reconnects: usize,
    unavailable: usize,
    compacted: usize,
    paused_compacted: bool,
    snapshot_revisions: Vec<u64>,
}

/// A ChangeFeed client whose HTTP/2 stream window is the protocol default (64 KiB, not
/// hyper's 2 MiB), so that a client that does not read stops the server's sends after a few
/// hundred messages instead of megabytes: the server's per-watcher queue then fills and its
/// ring overtakes the watcher. (The connection window stays large: h2 derives its budget for
/// buffered small DATA frames from it, and one tiny frame per message would exhaust a 64 KiB
/// one's, ending the connection with ENHANCE_YOUR_CALM "too_many_data_frames".)
async fn narrow_feed_client(
    endpoint: &str,
    token: Option<&str>,
) -> Result<FeedClient, tonic::transport::Error> {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(4 << 20)
        .connect()
        .await?;
    Ok(
        mapreg::pb::change_feed_client::ChangeFeedClient::with_interceptor(
            ch,
            Bearer(token.map(str::to_string)),
        ),
    )
}

/// Runs one watcher until it dealt with the final revision; every session is recorded.
async fn watcher(shared: Arc<Shared>, spec: WatcherSpec) -> Result<WatcherOut, String> {
    let name = spec.name.clone();
    let mut out = WatcherOut {
        record: WatchRecord::new(&name, spec.filter.clone()),
        max_lag: 0,
        reconnects: 0,
        unavailable: 0,
        compacted: 0,
        paused_compacted: false,
        snapshot_revisions: Vec::new(),
    };
    if spec.begin_after_ops > 0 {
        let mut ops = shared.ops_done.subscribe();
        tokio::time::timeout(
            Duration::from_secs(300),
            ops.wait_for(|n| *n >= spec.begin_after_ops),
        )
        .await
        .map_err(|_| {
            format!(
                "{name}: {} operations not done within 300 s",
                spec.begin_after_ops
            )
        })?
        .map_err(|e| e.to_string())?;
    }
    let mut target_rx = shared.target.subscribe();
    let done = |rec: &WatchRecord, target: u64| {
        target > 0 && !rec.in_snapshot() && rec.position().is_some_and(|p| p >= target)
    };
    let mut store_id = String::new();
    let mut need_snapshot = spec.start == 0;
    let mut started = false;
    let mut paused = false;
    let mut stalled = false;
    for _session in 0..20_000 {
        if done(&out.record, *target_rx.borrow_and_update()) {
            return Ok(out);
        }
        let endpoint = shared.endpoint.borrow().clone();
        let start = if need_snapshot {
            0
        } else if !started {
            spec.start
        } else {
            out.record.position().expect("a position after a snapshot") + 1
        };
        let req = spec.filter.request(start, &store_id, 1);
        let mut client = match narrow_feed_client(&endpoint, spec.token).await {
            Ok(c) => c,
            // The server is restarting: wait for the next one.
            Err(_) if shared.restarts => {
                new_endpoint(&shared, &endpoint).await?;
                continue;
            }
            Err(e) => return Err(format!("{name}: cannot connect: {e}")),
        };
        started = true;
        out.record.begin(req.clone());
        let ended: Option<Status> = match client.watch(req).await {
            Err(st) => Some(st),
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut n = 0usize;
                loop {
                    let msg = tokio::select! {
                        m = tokio::time::timeout(Duration::from_secs(STEP), stream.message()) => match m {
                            Ok(m) => m,
                            Err(_) => return Err(format!(
                                "{name}: no message for {STEP} s at position {:?}", out.record.position()
                            )),
                        },
                        _ = target_rx.changed() => {
                            if done(&out.record, *target_rx.borrow_and_update()) {
                                return Ok(out);
                            }
                            continue;
                        }
                    };
                    match msg {
                        Err(st) => break Some(st),
                        Ok(None) => {
                            return Err(format!(
                                "{name}: the stream ended without a status at {:?}",
                                out.record.position()
                            ));
                        }
                        Ok(Some(resp)) => {
                            if store_id.is_empty() {
                                store_id = resp.store_id.clone();
                            }
                            let acked = *shared.acked.borrow();
                            out.max_lag = out.max_lag.max(acked.saturating_sub(resp.revision));
                            if matches!(resp.kind, Some(Kind::SnapshotComplete(_))) {
                                need_snapshot = false;
                                out.snapshot_revisions.push(resp.revision);
                            }
                            out.record.record(resp);
                            n += 1;
                            if let Some(d) = spec.delay
                                && (!spec.delay_in_snapshot_only || out.record.in_snapshot())
                            {
                                tokio::time::sleep(d).await;
                            }
                            if done(&out.record, *target_rx.borrow_and_update()) {
                                return Ok(out);
                            }
                            if out.record.in_snapshot() || out.record.position().is_none() {
                                continue;
                            }
                            if let Some(lag) = spec.stall_until_lag
                                && !stalled
                            {
                                stalled = true;
                                let until = out.record.position().unwrap_or(0) + lag;
                                let mut acked = shared.acked.subscribe();
                                let mut target = shared.target.subscribe();
                                let waited =
                                    tokio::time::timeout(Duration::from_secs(300), async {
                                        tokio::select! {
                                            _ = acked.wait_for(|a| *a >= until) => {}
                                            _ = target.wait_for(|t| *t > 0) => {}
                                        }
                                    })
                                    .await;
                                if waited.is_err() {
                                    return Err(format!("{name}: stalled for over 300 s"));
                                }
                            }
                            if spec.reconnect_every.is_some_and(|k| n >= k) {
                                out.reconnects += 1;
                                need_snapshot = spec.resnapshot;
                                break None;
                            }
                            if let Some(k) = spec.pause_until_compacted_after
                                && !paused
                                && n >= k
                            {
                                paused = true;
                                drop(stream);
                                let probe = req_for(&spec, &out.record, &store_id);
                                if pause_until_compacted(&shared, &mut client, &mut out, &probe)
                                    .await?
                                {
                                    need_snapshot = true;
                                }
                                break None;
                            }
                        }
                    }
                }
            }
        };
        if let Some(st) = ended {
            out.record.end(&st);
            match (st.code(), reason(&st).as_str()) {
                (Code::Unavailable, _) if shared.restarts => {
                    out.unavailable += 1;
                    if *shared.endpoint.borrow() == endpoint {
                        new_endpoint(&shared, &endpoint).await?;
                    }
                }
                (Code::OutOfRange, "REVISION_COMPACTED") => {
                    out.compacted += 1;
                    need_snapshot = true;
                }
                _ => {
                    return Err(format!(
                        "{name}: the stream ended with {st:?} at {:?}",
                        out.record.position()
                    ));
                }
            }
        }
    }
    Err(format!("{name}: more than 20000 sessions"))
}

fn req_for(spec: &WatcherSpec, rec: &WatchRecord, store_id: &str) -> WatchRequest {
    spec.filter
        .request(rec.position().expect("position") + 1, store_id, 1)
}

/// Polls (bounded) with `req` until the server refuses it as compacted (recorded as a session);
/// false if the writes ended first.
async fn pause_until_compacted(
    shared: &Shared,
    client: &mut FeedClient,
    out: &mut WatcherOut,
    req: &WatchRequest,
) -> Result<bool, String> {
    for _ in 0..6000 {
        match client.watch(req.clone()).await {
            Err(st) if st.code() == Code::OutOfRange && reason(&st) == "REVISION_COMPACTED" => {
                out.record.begin(req.clone());
                out.record.end(&st);
                out.compacted += 1;
                out.paused_compacted = true;
                return Ok(true);
            }
            Err(st) => return Err(format!("{}: probe failed: {st:?}", out.record.name)),
            Ok(s) => drop(s),
        }
        if *shared.target.borrow() > 0 {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

/// Reads the whole log with an unfiltered watch from revision 1 up to `last`.
async fn read_reference(endpoint: &str, token: Option<&str>, last: u64) -> ReferenceLog {
    let mut c = feed_client_at(endpoint, token).await.expect("connect");
    let mut s = watch(&mut c, WatchFilter::all().request(1, "", 0))
        .await
        .expect("reference watch");
    let mut responses = Vec::new();
    let read = async {
        loop {
            let m = s
                .message()
                .await
                .expect("reference stream")
                .expect("reference stream open");
            let at_end = matches!(m.kind, Some(Kind::ChangeSet(_))) && m.revision >= last;
            responses.push(m);
            if at_end {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("the reference log is read within 120 s");
    ReferenceLog::from_responses(&responses, last)
        .unwrap_or_else(|e| panic!("the reference log is not a valid log:\n{e}"))
}

/// A finished workload.
struct Outcome {
    writers: Vec<WriterOut>,
    watchers: Vec<WatcherOut>,
    last: u64,
    ambiguous: usize,
}

/// Runs writers and watchers; `during` runs after half the operations (e.g. a restart) and
/// returns the server to use afterwards. One last write (an API) marks the final revision.
async fn run_workload<F, Fut>(
    server: TestServer,
    shared: Arc<Shared>,
    writers: Vec<WriterSpec>,
    watchers: Vec<WatcherSpec>,
    final_token: Option<&'static str>,
    during: F,
) -> (TestServer, Outcome)
where
    F: FnOnce(TestServer) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    let total: usize = writers.iter().map(|w| w.ops).sum();
    let watcher_tasks: Vec<_> = watchers
        .into_iter()
        .map(|w| tokio::spawn(watcher(shared.clone(), w)))
        .collect();
    let writer_tasks: Vec<_> = writers
        .into_iter()
        .map(|w| tokio::spawn(writer(shared.clone(), w)))
        .collect();
    let mut ops = shared.ops_done.subscribe();
    // (The guard wait_for returns must not outlive the statement: writers update the value.)
    let halfway = tokio::time::timeout(Duration::from_secs(300), ops.wait_for(|n| *n >= total / 2))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(halfway, "half of the writes done within 300 s");
    eprintln!("workload: half of the {total} operations done");
    let server = during(server).await;
    shared.endpoint.send_replace(server.endpoint());
    let mut outs = Vec::new();
    for t in writer_tasks {
        let out = tokio::time::timeout(Duration::from_secs(600), t)
            .await
            .expect("writers finish within 600 s")
            .expect("writer task");
        outs.push(out);
    }
    eprintln!("workload: writers done");
    let unexpected: Vec<&String> = outs.iter().flat_map(|o| o.unexpected.iter()).collect();
    assert!(
        unexpected.is_empty(),
        "unexpected write errors: {unexpected:#?}"
    );
    let mut c = client_at(&server.endpoint(), final_token)
        .await
        .expect("connect");
    let fin = create_api(&mut c, "final", ProtocolType::Http).await;
    let last = fin.mod_revision;
    shared.ack(last);
    outs.push(WriterOut {
        acks: vec![Ack {
            revision: last,
            kind: AckKind::Put(api_resource(fin)),
        }],
        ..WriterOut::default()
    });
    shared.target.send_replace(last);
    let mut watchers = Vec::new();
    let mut failures = Vec::new();
    for t in watcher_tasks {
        match tokio::time::timeout(Duration::from_secs(600), t).await {
            Err(_) => failures.push("a watcher did not finish within 600 s".to_string()),
            Ok(Err(e)) => failures.push(format!("watcher task: {e}")),
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Ok(Ok(w))) => watchers.push(w),
        }
    }
    assert!(
        failures.is_empty(),
        "watchers failed:\n{}",
        failures.join("\n")
    );
    let ambiguous = outs.iter().map(|o| o.ambiguous).sum();
    (
        server,
        Outcome {
            writers: outs,
            watchers,
            last,
            ambiguous,
        },
    )
}

/// Checks everything: the reference against the acknowledgements and the final state, and
/// every watcher against the reference (history guarantees and snapshot model).
async fn verify(server: &TestServer, token: Option<&str>, outcome: &Outcome) -> ReferenceLog {
    let reference = read_reference(&server.endpoint(), token, outcome.last).await;
    verify_against(server, token, outcome, &reference).await;
    reference
}

async fn verify_against(
    server: &TestServer,
    token: Option<&str>,
    outcome: &Outcome,
    reference: &ReferenceLog,
) {
    let mut problems = Vec::new();
    let acks: Vec<Ack> = outcome
        .writers
        .iter()
        .flat_map(|w| w.acks.iter().cloned())
        .collect();
    for p in reference.check_acks(&acks, outcome.ambiguous == 0) {
        problems.push(format!("acks: {p}"));
    }
    let mut c = client_at(&server.endpoint(), token).await.expect("connect");
    let final_state = state_of(&visible_state(&mut c).await);
    for d in state_diff(&final_state, &reference.final_state(), 10) {
        problems.push(format!("reference log replayed vs listed final state: {d}"));
    }
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for w in &outcome.writers {
        for (r, n) in &w.refused {
            *refused.entry(r.clone()).or_default() += n;
        }
    }
    eprintln!(
        "workload: {} revisions, {} acknowledged writes, {} ambiguous, refused {refused:?}, final state {} records",
        outcome.last,
        acks.len(),
        outcome.ambiguous,
        final_state.len()
    );
    for w in &outcome.watchers {
        let (sum, violations) = check(&w.record, reference);
        eprintln!(
            "  {:<28} sessions {:>4} snapshots {:>2} change_sets {:>6} events {:>6} progress {:>4} reconnects {:>3} unavailable {:>2} compacted {:>2} max lag {:>6} snapshot at {:?}",
            w.record.name,
            sum.sessions,
            sum.snapshots,
            sum.change_sets,
            sum.events,
            sum.progress,
            w.reconnects,
            w.unavailable,
            w.compacted,
            w.max_lag,
            w.snapshot_revisions
        );
        for v in violations.iter().take(20) {
            problems.push(v.clone());
        }
        if violations.len() > 20 {
            problems.push(format!(
                "{}: {} violations in all",
                w.record.name,
                violations.len()
            ));
        }
        if sum.position.is_none_or(|p| p < outcome.last) {
            problems.push(format!(
                "{}: ended at {:?}, before the last revision {}",
                w.record.name, sum.position, outcome.last
            ));
        }
        if let Some(model) = &sum.model {
            let want = w.record.filter.state(&final_state);
            for d in state_diff(&want, model, 10) {
                problems.push(format!(
                    "{}: snapshot model vs final state: {d}",
                    w.record.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn scope(account: &str, kinds: &[ResourceKind], domains: &[&str]) -> WatchFilter {
    WatchFilter {
        kinds: kinds.to_vec(),
        domain_names: domains.iter().map(|d| d.to_string()).collect(),
        account: (!account.is_empty()).then(|| account.to_string()),
    }
}

/// A lag (revisions) that surely overflows the server's ring of 4096 revisions, even though
/// the client's queue (64) and HTTP/2 window (64 KiB) hold a few hundred more.
const RING_OVERFLOW: u64 = 4096 + 1500;

const ACCOUNT_A: &str = "111122223333";
const ACCOUNT_B: &str = "444455556666";

/// 8 writers (two accounts) x FEED_OPS_PER_WRITER operations against 16 watchers: fast, slow
/// (far behind the client queue and the ring), reconnecting, filtered, account-scoped.
#[test]
fn concurrent_writers_and_sixteen_watchers() {
    run_bounded(concurrent_writers_and_sixteen_watchers_body());
}

async fn concurrent_writers_and_sixteen_watchers_body() {
    let started = Instant::now();
    let ops = env_or("FEED_OPS_PER_WRITER", 2000);
    let server = TestServer::start_with_tokens().await;
    let shared = Shared::new(
        server.endpoint(),
        false,
        vec![Pool::new("a", 16), Pool::new("b", 16)],
    );
    let writers: Vec<WriterSpec> = (0..8)
        .map(|id| WriterSpec {
            id,
            token: Some(if id < 4 { "admin-a" } else { "admin-b" }),
            pool: usize::from(id >= 4),
            ops,
        })
        .collect();
    let gw = Some("gateway");
    let ra = Some("reader-a");
    let slow = Duration::from_millis(1);
    let all = WatchFilter::all;
    let watchers = vec![
        WatcherSpec::new("gw-snapshot", gw, all(), 0),
        WatcherSpec::new("gw-snapshot-late", gw, all(), 0).after(ops * 8 / 4),
        WatcherSpec::new("gw-from-1", gw, all(), 1),
        WatcherSpec::new("gw-from-1-reconnect", gw, all(), 1).reconnecting(500),
        WatcherSpec::new("gw-snapshot-reconnect", gw, all(), 0).reconnecting(300),
        WatcherSpec::new("gw-slow-snapshot", gw, all(), 0)
            .slow(slow)
            .stalled(RING_OVERFLOW),
        WatcherSpec::new("gw-slow-from-1", gw, all(), 1)
            .slow(slow)
            .stalled(RING_OVERFLOW + 500),
        WatcherSpec::new("gw-slow-reconnect", gw, all(), 0)
            .slow(slow)
            .reconnecting(1000),
        WatcherSpec::new("reader-a", ra, WatchFilter::account(ACCOUNT_A), 0),
        WatcherSpec::new(
            "reader-a-slow-reconnect",
            ra,
            WatchFilter::account(ACCOUNT_A),
            0,
        )
        .slow(slow)
        .stalled(RING_OVERFLOW)
        .reconnecting(700),
        WatcherSpec::new(
            "admin-b-from-1",
            Some("admin-b"),
            WatchFilter::account(ACCOUNT_B),
            1,
        ),
        WatcherSpec::new(
            "gw-mappings",
            gw,
            scope("", &[ResourceKind::ApiMapping], &[]),
            0,
        ),
        WatcherSpec::new(
            "gw-apis-stages-reconnect",
            gw,
            scope("", &[ResourceKind::Api, ResourceKind::Stage], &[]),
            0,
        )
        .reconnecting(400),
        WatcherSpec::new(
            "gw-domains",
            gw,
            scope(
                "",
                &[],
                &["d0.a.example.com", "D1.B.example.com", "*.a.example.com"],
            ),
            0,
        ),
        WatcherSpec::new(
            "reader-a-domain-slow",
            ra,
            scope(
                ACCOUNT_A,
                &[ResourceKind::ApiMapping, ResourceKind::DomainName],
                &["d2.a.example.com", "d3.b.example.com"],
            ),
            0,
        )
        .slow(slow),
        WatcherSpec::new(
            "gw-slow-filtered-reconnect",
            gw,
            scope(
                "",
                &[ResourceKind::DomainName, ResourceKind::ApiMapping],
                &[],
            ),
            1,
        )
        .slow(Duration::from_millis(2))
        .stalled(RING_OVERFLOW)
        .reconnecting(250),
    ];
    let (server, outcome) = run_workload(
        server,
        shared,
        writers,
        watchers,
        Some("admin-a"),
        |s| async move { s },
    )
    .await;
    let writes_done = started.elapsed();
    verify(&server, gw, &outcome).await;
    let slow_lag = outcome
        .watchers
        .iter()
        .filter(|w| w.record.name.contains("slow"))
        .map(|w| w.max_lag)
        .max()
        .unwrap_or(0);
    eprintln!(
        "concurrent_writers_and_sixteen_watchers: {} ops/writer, workload {writes_done:?}, total {:?}, max lag of slow watchers {slow_lag} revisions",
        ops,
        started.elapsed()
    );
    server.stop().await;
}

/// Writers and watchers across a server restart: every stream ends with UNAVAILABLE and every
/// watcher resumes (start_revision = last + 1, same store_id) on the restarted server.
#[test]
fn restart_mid_stream_every_watcher_resumes() {
    run_bounded(restart_mid_stream_every_watcher_resumes_body());
}

async fn restart_mid_stream_every_watcher_resumes_body() {
    let started = Instant::now();
    let ops = env_or("FEED_RESTART_OPS", 800);
    let server = TestServer::start().await;
    let shared = Shared::new(server.endpoint(), true, vec![Pool::new("dev", 16)]);
    let writers = (0..4)
        .map(|id| WriterSpec {
            id,
            token: None,
            pool: 0,
            ops,
        })
        .collect();
    let all = WatchFilter::all;
    let watchers = vec![
        WatcherSpec::new("snapshot", None, all(), 0),
        WatcherSpec::new("from-1", None, all(), 1),
        WatcherSpec::new("slow-snapshot", None, all(), 0).slow(Duration::from_millis(1)),
        WatcherSpec::new("reconnect", None, all(), 0).reconnecting(300),
        WatcherSpec::new(
            "mappings",
            None,
            scope("", &[ResourceKind::ApiMapping], &[]),
            0,
        ),
        WatcherSpec::new(
            "domains-slow",
            None,
            scope("", &[], &["d1.dev.example.com", "*.dev.example.com"]),
            1,
        )
        .slow(Duration::from_millis(1)),
    ];
    let (server, outcome) = run_workload(server, shared, writers, watchers, None, |s| async move {
        s.restart().await
    })
    .await;
    for w in &outcome.watchers {
        assert!(
            w.unavailable >= 1,
            "{}: its stream ended with UNAVAILABLE at the restart",
            w.record.name
        );
    }
    verify(&server, None, &outcome).await;
    eprintln!(
        "restart_mid_stream_every_watcher_resumes: {} ops/writer, {:?}",
        ops,
        started.elapsed()
    );
    server.stop().await;
}

/// A small watch_history while watchers run: a watcher that falls below the window gets
/// REVISION_COMPACTED, re-snapshots, and its model still converges to the final state.
#[test]
fn compaction_while_watchers_run() {
    run_bounded(compaction_while_watchers_run_body());
}

async fn compaction_while_watchers_run_body() {
    let started = Instant::now();
    let ops = env_or("FEED_COMPACTION_OPS", 2400);
    let history = 64;
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(mapreg::config::Config {
        data_dir: tmp.path().join("data"),
        watch_history: history,
        ..Default::default()
    })
    .await;
    let shared = Shared::new(server.endpoint(), false, vec![Pool::new("dev", 16)]);
    let writers = (0..4)
        .map(|id| WriterSpec {
            id,
            token: None,
            pool: 0,
            ops,
        })
        .collect();
    let all = WatchFilter::all;
    let mut paused = WatcherSpec::new("paused-snapshot", None, all(), 0);
    paused.pause_until_compacted_after = Some(20);
    let mut paused_filtered = WatcherSpec::new(
        "paused-from-1-filtered",
        None,
        scope(
            "",
            &[ResourceKind::DomainName, ResourceKind::ApiMapping],
            &[],
        ),
        1,
    );
    paused_filtered.pause_until_compacted_after = Some(10);
    let watchers = vec![
        // The reference: fast, from revision 1, started before any write.
        WatcherSpec::new("reference", None, all(), 1),
        paused,
        paused_filtered,
        WatcherSpec::new("slow-snapshot", None, all(), 0).slow(Duration::from_millis(2)),
        WatcherSpec::new("reconnect", None, all(), 0).reconnecting(100),
        // Stops reading with its stream open until it is more than the ring (4096) behind:
        // the server must end its stream with REVISION_COMPACTED (its next revision left
        // the 64-revision window long ago), and it re-snapshots.
        WatcherSpec::new("stalled-in-stream", None, all(), 0).stalled(RING_OVERFLOW),
    ];
    let (server, outcome) = run_workload(
        server,
        shared,
        writers,
        watchers,
        None,
        |s| async move { s },
    )
    .await;
    let reference_rec = &outcome.watchers[0].record;
    assert_eq!(
        reference_rec.sessions.len(),
        1,
        "the reference watcher kept its one stream (it never fell below the window)"
    );
    let responses: Vec<WatchResponse> = reference_rec.responses().cloned().collect();
    let reference = ReferenceLog::from_responses(&responses, outcome.last)
        .unwrap_or_else(|e| panic!("the reference watcher's log is not valid:\n{e}"));
    verify_against(&server, None, &outcome, &reference).await;
    for w in &outcome.watchers[1..3] {
        assert!(
            w.paused_compacted,
            "{}: got REVISION_COMPACTED after pausing",
            w.record.name
        );
        let resnapshot = w
            .record
            .sessions
            .iter()
            .skip_while(|s| {
                s.end
                    .as_ref()
                    .is_none_or(|e| e.reason != "REVISION_COMPACTED")
            })
            .skip(1)
            .any(|s| s.request.start_revision == 0);
        assert!(resnapshot, "{}: re-snapshotted", w.record.name);
    }
    let stalled = &outcome.watchers[5];
    if outcome.last > RING_OVERFLOW + 100 {
        let in_stream = stalled.record.sessions.iter().any(|s| {
            !s.responses.is_empty()
                && s.end
                    .as_ref()
                    .is_some_and(|e| e.reason == "REVISION_COMPACTED")
        });
        assert!(
            in_stream,
            "stalled-in-stream: its open stream ended with REVISION_COMPACTED"
        );
    } else {
        eprintln!(
            "compaction_while_watchers_run: too few revisions for the stalled watcher to fall behind the ring"
        );
    }
    // The window: the last `history` revisions are kept.
    let mut f = server.feed_client(None).await;
    let slack = (history / 16).max(1);
    let compact = wait_compacted(&mut f, 1, outcome.last - history - slack).await;
    assert!(
        compact <= outcome.last - history,
        "compact_revision {compact} keeps the last {history} of {}",
        outcome.last
    );
    let m = first_item(
        &mut f,
        WatchRequest {
            start_revision: compact + 1,
            ..Default::default()
        },
    )
    .await
    .expect("the first retained revision");
    assert_eq!(m.revision, compact + 1);
    eprintln!(
        "compaction_while_watchers_run: {} ops/writer, compact_revision {compact}, {:?}",
        ops,
        started.elapsed()
    );
    drop(f);
    server.stop().await;
}

/// Watchers started with start_revision 0 while writes are under way, some reading their
/// snapshot slowly over many chunks: snapshot + later change_sets == the final state, and each
/// snapshot == the reference state at its revision.
#[test]
fn snapshot_during_writes_is_exact() {
    run_bounded(snapshot_during_writes_is_exact_body());
}

async fn snapshot_during_writes_is_exact_body() {
    let started = Instant::now();
    let ops = env_or("FEED_SNAPSHOT_OPS", 600);
    let server = TestServer::start().await;
    // Enough records for several snapshot chunks (500 records each), all in the writers' pool
    // so that writes touch records before and after the scan position.
    let preload = 1600usize;
    let mut pool = Pool {
        suffix: "dev".into(),
        cap: 4000,
        ..Pool::default()
    };
    let mut tasks = Vec::new();
    for t in 0..8 {
        let endpoint = server.endpoint();
        tasks.push(tokio::spawn(async move {
            let mut c = client_at(&endpoint, None).await.expect("connect");
            let mut ids = Vec::new();
            let mut acks = Vec::new();
            for i in 0..preload / 8 {
                let a = create_api(&mut c, &format!("pre-{t}-{i}"), ProtocolType::Http).await;
                if i % 4 == 0 {
                    let s = create_stage(&mut c, &a.api_id, "test").await;
                    acks.push(Ack {
                        revision: s.mod_revision,
                        kind: AckKind::Put(stage_resource(s)),
                    });
                }
                ids.push(a.api_id.clone());
                acks.push(Ack {
                    revision: a.mod_revision,
                    kind: AckKind::Put(api_resource(a)),
                });
            }
            (ids, acks)
        }));
    }
    let mut preload_acks = Vec::new();
    for t in tasks {
        let (ids, acks) = tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("preload within 300 s")
            .expect("preload task");
        preload_acks.extend(acks);
        for (i, id) in ids.into_iter().enumerate() {
            if i % 4 == 0 {
                pool.stages.push((id.clone(), "test".into()));
            }
            pool.apis.push(id);
        }
    }
    let base = (preload + preload / 4) as u64;
    let shared = Shared::new(server.endpoint(), false, vec![Mutex::new(pool)]);
    let writers = (0..4)
        .map(|id| WriterSpec {
            id,
            token: None,
            pool: 0,
            ops,
        })
        .collect();
    let all = WatchFilter::all;
    let step = ops * 4 / 6;
    let mut slow_snapshot = WatcherSpec::new("slow-snapshot-early", None, all(), 0)
        .after(1)
        .slow(Duration::from_millis(30));
    slow_snapshot.delay_in_snapshot_only = true;
    let mut slow_snapshot2 = WatcherSpec::new("slow-snapshot-mid", None, all(), 0)
        .after(2 * step)
        .slow(Duration::from_millis(30));
    slow_snapshot2.delay_in_snapshot_only = true;
    let mut resnapshots = WatcherSpec::new("resnapshot-every-40", None, all(), 0)
        .after(1)
        .reconnecting(40);
    resnapshots.resnapshot = true;
    let watchers = vec![
        WatcherSpec::new("snapshot-0", None, all(), 0).after(1),
        WatcherSpec::new("snapshot-1", None, all(), 0).after(step),
        WatcherSpec::new("snapshot-2", None, all(), 0).after(2 * step),
        WatcherSpec::new("snapshot-3", None, all(), 0).after(3 * step),
        WatcherSpec::new("snapshot-4", None, all(), 0).after(4 * step),
        WatcherSpec::new(
            "snapshot-mappings",
            None,
            scope("", &[ResourceKind::ApiMapping], &[]),
            0,
        )
        .after(step),
        WatcherSpec::new(
            "snapshot-stages-slow",
            None,
            scope("", &[ResourceKind::Stage, ResourceKind::Api], &[]),
            0,
        )
        .after(3 * step)
        .slow(Duration::from_millis(20)),
        slow_snapshot,
        slow_snapshot2,
        resnapshots,
    ];
    let (server, mut outcome) = run_workload(
        server,
        shared,
        writers,
        watchers,
        None,
        |s| async move { s },
    )
    .await;
    outcome.writers.push(WriterOut {
        acks: preload_acks,
        ..WriterOut::default()
    });
    verify(&server, None, &outcome).await;
    let snapshots: usize = outcome
        .watchers
        .iter()
        .map(|w| w.snapshot_revisions.len())
        .sum();
    eprintln!(
        "snapshot_during_writes_is_exact: preload {} records, {} ops/writer, {snapshots} snapshots checked, {:?}",
        base,
        ops,
        started.elapsed()
    );
    server.stop().await;
}
