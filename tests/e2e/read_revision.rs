//! Reads and revisions (SPEC.md 8.2, on one node), through real gRPC: every read answers with
//! the revision it reflects (lists and ResolveRoute in the response, Get* as `mapreg-revision`
//! metadata); a read's `min_revision` waits for that revision, up to the call's deadline, and
//! then answers UNAVAILABLE `REVISION_NOT_YET_AVAILABLE`.

use std::time::{Duration, Instant};

use mapreg::pb::*;
use tonic::{Code, Request};

use crate::common::*;

/// The `mapreg-revision` metadata of a response.
fn meta_revision<T>(r: &tonic::Response<T>) -> u64 {
    r.metadata()
        .get("mapreg-revision")
        .expect("mapreg-revision metadata")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number")
}

/// Every read at `min_revision`; the revision each reports.
async fn revisions_of_every_read(
    c: &mut Client,
    api: &Api,
    m: &ApiMapping,
    min_revision: u64,
) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    let r = c
        .get_api(GetApiRequest {
            api_id: api.api_id.clone(),
            min_revision,
        })
        .await
        .expect("GetApi");
    out.push(("GetApi", meta_revision(&r)));
    let r = c
        .get_apis(GetApisRequest {
            min_revision,
            ..Default::default()
        })
        .await
        .expect("GetApis");
    assert_eq!(meta_revision(&r), r.get_ref().revision);
    out.push(("GetApis", r.into_inner().revision));
    let r = c
        .get_stage(GetStageRequest {
            api_id: api.api_id.clone(),
            stage_name: "test".into(),
            min_revision,
        })
        .await
        .expect("GetStage");
    out.push(("GetStage", meta_revision(&r)));
    let r = c
        .get_stages(GetStagesRequest {
            api_id: api.api_id.clone(),
            min_revision,
            ..Default::default()
        })
        .await
        .expect("GetStages");
    out.push(("GetStages", r.into_inner().revision));
    let r = c
        .get_domain_name(GetDomainNameRequest {
            domain_name: m.domain_name.clone(),
            min_revision,
        })
        .await
        .expect("GetDomainName");
    out.push(("GetDomainName", meta_revision(&r)));
    let r = c
        .get_domain_names(GetDomainNamesRequest {
            min_revision,
            ..Default::default()
        })
        .await
        .expect("GetDomainNames");
    out.push(("GetDomainNames", r.into_inner().revision));
    let r = c
        .get_api_mapping(GetApiMappingRequest {
            domain_name: m.domain_name.clone(),
            api_mapping_id: m.api_mapping_id.clone(),
            min_revision,
        })
        .await
        .expect("GetApiMapping");
    out.push(("GetApiMapping", meta_revision(&r)));
    let r = c
        .get_api_mappings(GetApiMappingsRequest {
            domain_name: m.domain_name.clone(),
            min_revision,
            ..Default::default()
        })
        .await
        .expect("GetApiMappings");
    out.push(("GetApiMappings", r.into_inner().revision));
    let r = c
        .resolve_route(ResolveRouteRequest {
            host: m.domain_name.clone(),
            path: "/orders/1".into(),
            min_revision,
        })
        .await
        .expect("ResolveRoute");
    assert_eq!(meta_revision(&r), r.get_ref().revision);
    out.push(("ResolveRoute", r.into_inner().revision));
    out
}

#[tokio::test]
async fn every_read_reports_the_revision_it_reflects() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let api = api_with_stage(&mut c, ProtocolType::Http).await;
    create_domain(&mut c, "a.example.com").await;
    let m = create_mapping(&mut c, "a.example.com", "orders", &api.api_id, "test").await;
    for (read, rev) in revisions_of_every_read(&mut c, &api, &m, 0).await {
        assert_eq!(rev, m.mod_revision, "{read} after the mapping's write");
    }
    // A later write by another client: every read reflects it (and min_revision = it is met).
    let mut other = s.client().await;
    let d = create_domain(&mut other, "b.example.com").await;
    for (read, rev) in revisions_of_every_read(&mut c, &api, &m, d.mod_revision).await {
        assert_eq!(rev, d.mod_revision, "{read} after the second write");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_future_min_revision_answers_unavailable_before_the_deadline() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let d = create_domain(&mut c, "a.example.com").await;
    let future = d.mod_revision + 100;

    let mut req = Request::new(GetDomainNameRequest {
        domain_name: "a.example.com".into(),
        min_revision: future,
    });
    req.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let st = expect_err(
        c.get_domain_name(req).await,
        Code::Unavailable,
        "REVISION_NOT_YET_AVAILABLE",
    );
    let took = started.elapsed();
    assert!(st.message().contains("min_revision"), "{}", st.message());
    assert!(
        took >= Duration::from_millis(250),
        "answered after {took:?}: it did not wait"
    );
    assert!(
        took < Duration::from_millis(400),
        "answered after {took:?}: past the deadline"
    );

    // Lists and ResolveRoute wait the same way.
    let mut req = Request::new(GetApisRequest {
        min_revision: future,
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(200));
    expect_err(
        c.get_apis(req).await,
        Code::Unavailable,
        "REVISION_NOT_YET_AVAILABLE",
    );
    let mut req = Request::new(ResolveRouteRequest {
        host: "a.example.com".into(),
        path: "/".into(),
        min_revision: future,
    });
    req.set_timeout(Duration::from_millis(200));
    expect_err(
        c.resolve_route(req).await,
        Code::Unavailable,
        "REVISION_NOT_YET_AVAILABLE",
    );
    // A revision the node has answers at once.
    let r = c
        .get_domain_name(GetDomainNameRequest {
            domain_name: "a.example.com".into(),
            min_revision: d.mod_revision,
        })
        .await
        .expect("a revision the node has");
    assert_eq!(meta_revision(&r), d.mod_revision);
    s.stop().await;
}

#[tokio::test]
async fn a_write_from_another_client_unblocks_a_waiting_read() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let d = create_domain(&mut c, "a.example.com").await;
    let next = d.mod_revision + 1;

    let mut reader = s.client().await;
    let waiting = tokio::spawn(async move {
        let mut req = Request::new(GetDomainNamesRequest {
            min_revision: next,
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(5));
        let started = Instant::now();
        let r = reader.get_domain_names(req).await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the read answered before its revision existed"
    );
    let b = create_domain(&mut c, "b.example.com").await;
    assert_eq!(b.mod_revision, next);
    let (r, took) = waiting.await.expect("reader task");
    let page = r.expect("the read, once its revision exists").into_inner();
    assert_eq!(page.revision, next);
    assert!(page.items.iter().any(|x| x.domain_name == "b.example.com"));
    assert!(took < Duration::from_secs(4), "woken late: {took:?}");
    s.stop().await;
}
