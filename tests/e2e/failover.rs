//! Clients given several endpoints (`--endpoint a,b,c`, `MAPREG_ENDPOINT`,
//! `CacheOptions::endpoints`) move on to the next one as `mapreg::client::failover` says: every
//! command past an endpoint that refuses connections, reads (not writes) past one that answers
//! UNAVAILABLE; and `MappingCache` resumes its watch on the next endpoint with the same
//! store_id and revision, with no gap and no duplicate.
//!
//! There is no several-node store to test with yet; "another node" is the same data dir served
//! again on another port (the same store_id, revisions and history hashes), which is what a
//! second node of one store looks like to a client.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use mapreg::client::MappingCache;
use mapreg::pb::*;
use tokio::net::TcpListener;

use crate::cache::{assert_converged, options, populate};
use crate::cli::{run_env, unused_endpoint};
use crate::common::*;

/// A gRPC server whose `mapreg.v1.Registry` answers every call UNAVAILABLE (a node shutting
/// down, or one that lost its store), counting the calls it received.
#[derive(Clone)]
struct Unavailable(Arc<AtomicUsize>);

impl tonic::server::NamedService for Unavailable {
    const NAME: &'static str = "mapreg.v1.Registry";
}

impl tower::Service<http::Request<tonic::body::Body>> for Unavailable {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(
            tonic::Status::unavailable("this node is shutting down").into_http()
        ))
    }
}

/// Starts an [`Unavailable`] server; returns its endpoint and its call counter.
async fn unavailable_node() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = Unavailable(calls.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (endpoint, calls)
}

/// The API names the server holds.
async fn api_names(c: &mut Client) -> Vec<String> {
    c.get_apis(GetApisRequest::default())
        .await
        .expect("GetApis")
        .into_inner()
        .items
        .into_iter()
        .map(|a| a.name)
        .collect()
}

#[tokio::test]
async fn cli_reads_and_writes_skip_an_endpoint_that_refuses_connections() {
    let s = TestServer::start().await;
    let dead = unused_endpoint().await;
    let list = format!("{dead},{}", s.endpoint());
    // A write: the first endpoint refused the connection, so it was never sent there, and it
    // is sent to the next; exactly once.
    let created = run_env(
        &[
            "create-api",
            "--name",
            "failover",
            "--protocol-type",
            "HTTP",
            "--endpoint",
            &list,
            "--debug",
        ],
        &[],
    )
    .await;
    let api_id = created.json()["ApiId"].as_str().expect("ApiId").to_string();
    assert!(
        created.stderr.contains(&format!("DEBUG {dead} failed")),
        "{}",
        created.stderr
    );
    let mut c = s.client().await;
    assert_eq!(api_names(&mut c).await, vec!["failover"], "written once");
    // Reads, through MAPREG_ENDPOINT as well as --endpoint.
    let got = run_env(
        &["get-api", "--api-id", &api_id],
        &[("MAPREG_ENDPOINT", &list)],
    )
    .await;
    assert_eq!(got.json()["Name"], "failover");
    let listed = run_env(&["get-apis", "--endpoint", &list], &[]).await;
    assert_eq!(listed.json()["Items"][0]["ApiId"], api_id.as_str());
    // Commands outside the Registry service connect the same way.
    let gateways = run_env(&["get-gateways", "--endpoint", &list], &[]).await;
    assert_eq!(gateways.code, 0, "{gateways:?}");
}

#[tokio::test]
async fn cli_moves_reads_past_unavailable_but_never_resends_a_write() {
    let s = TestServer::start().await;
    let (down, calls) = unavailable_node().await;
    let list = format!("{down},{}", s.endpoint());
    let mut c = s.client().await;

    // A write that reached a node answering UNAVAILABLE may have been applied there: it is
    // not sent again, and the error is that node's.
    let write = run_env(
        &[
            "create-api",
            "--name",
            "once",
            "--protocol-type",
            "HTTP",
            "--endpoint",
            &list,
        ],
        &[],
    )
    .await;
    assert_eq!(write.code, 254, "{write:?}");
    assert!(
        write.stderr.contains("ServiceUnavailableException"),
        "{write:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(api_names(&mut c).await.is_empty(), "not sent to the next");

    // A dry run changes nothing: it moves on like a read.
    let dry = run_env(
        &[
            "create-api",
            "--name",
            "dry",
            "--protocol-type",
            "HTTP",
            "--validate-only",
            "--endpoint",
            &list,
        ],
        &[],
    )
    .await;
    assert_eq!(dry.json()["Name"], "dry");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(api_names(&mut c).await.is_empty());

    // Reads move on.
    create_api(&mut c, "real", ProtocolType::Http).await;
    let listed = run_env(&["get-apis", "--endpoint", &list], &[]).await;
    assert_eq!(listed.json()["Items"][0]["Name"], "real");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn cli_names_every_endpoint_when_all_are_down() {
    let (a, b) = (unused_endpoint().await, unused_endpoint().await);
    let (unavailable, _) = unavailable_node().await;
    let list = format!("{a},{b}");
    for args in [
        vec!["get-apis", "--endpoint", &list],
        vec![
            "create-api",
            "--name",
            "x",
            "--protocol-type",
            "HTTP",
            "--endpoint",
            &list,
        ],
        vec!["get-gateways", "--endpoint", &list],
    ] {
        let run = run_env(&args, &[]).await;
        assert_eq!(run.code, 255, "{run:?}");
        assert!(
            run.stderr.contains("any of the 2 endpoints"),
            "{}",
            run.stderr
        );
        for e in [&a, &b] {
            assert!(
                run.stderr.contains(&format!("{e}: could not connect")),
                "{e} named: {}",
                run.stderr
            );
        }
    }
    // A read that got UNAVAILABLE from the last one: every endpoint is still named, and the
    // exit code is that of the last failure (the service's).
    let list = format!("{a},{unavailable}");
    let run = run_env(&["get-apis", "--endpoint", &list], &[]).await;
    assert_eq!(run.code, 254, "{run:?}");
    assert!(run.stderr.contains(&format!("{a}: could not connect")));
    assert!(
        run.stderr.contains(&format!(
            "{unavailable}: An error occurred (ServiceUnavailableException)"
        )),
        "{}",
        run.stderr
    );
}

/// The first endpoint's server stops while the cache follows it; the same data dir (the same
/// store_id) comes up on the second endpoint's port. The cache resumes there: no re-snapshot,
/// every change made meanwhile applied, its revision never going back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_fails_over_and_resumes_the_watch_on_the_next_endpoint() {
    let a = TestServer::start().await;
    let mut c = a.client().await;
    let api = populate(&mut c, "api.example.com", 3).await;
    let b_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let b_endpoint = format!("http://{}", b_listener.local_addr().expect("addr"));
    let cache = MappingCache::start(options(format!("{},{b_endpoint}", a.endpoint())));
    assert_converged(&cache, &mut c).await;
    let before = cache.status();
    assert_eq!(before.endpoint, a.endpoint());

    // Every revision the cache reports, to check it never goes back.
    let mut rx = cache.subscribe();
    let seen = tokio::spawn(async move {
        let mut revisions = Vec::new();
        while rx.changed().await.is_ok() {
            let r = rx.borrow_and_update().revision;
            if revisions.last() != Some(&r) {
                revisions.push(r);
            }
        }
        revisions
    });

    // Mid-stream: changes the cache follows live, then the node goes away.
    for i in 0..5 {
        create_mapping(
            &mut c,
            "api.example.com",
            &format!("a{i}"),
            &api.api_id,
            "test",
        )
        .await;
    }
    let b = a.restart_on(b_listener).await;
    let mut c = b.client().await;
    for i in 0..5 {
        create_mapping(
            &mut c,
            "api.example.com",
            &format!("b{i}"),
            &api.api_id,
            "test",
        )
        .await;
    }
    assert_converged(&cache, &mut c).await;
    let after = cache.status();
    assert_eq!(after.endpoint, b_endpoint, "follows the second endpoint");
    assert_eq!(after.store_id, before.store_id);
    assert_eq!(after.resnapshots, 0, "resumed, not re-snapshotted");
    assert!(after.reconnects >= 1);
    assert!(cache.resolve("api.example.com", "/a4").is_ok());
    assert!(cache.resolve("api.example.com", "/b4").is_ok());

    drop(cache);
    let revisions = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("status sender closed")
        .expect("collector");
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "the revision never goes back: {revisions:?}"
    );
    assert_eq!(revisions.last(), Some(&after.revision));
}
